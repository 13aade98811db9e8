/// Hugging Face tokenizers through Microsoft.ML.Tokenizers, checked against Hugging Face's own reference
/// encodings in the fixtures.
module Jet.Core.Tests.TokenizerTests

open System.IO
open System.Text
open System.Text.Json
open Expecto
open Jet.Core
open Jet.Core.Models
open Jet.Core.Tests.TestKit
open Jet.Core.Tests.TestCheckpoints

let private fixtures = Jet.Tests.Fixtures.directory.Value
let private fixture (parts: string list) = Path.Combine(fixtures :: parts |> Array.ofList)

/// text, reference ids and reference vocabulary strings of a swift-transformers reference file.
let private reference (path: string) =
    use doc = JsonDocument.Parse(File.ReadAllText path)
    let root = doc.RootElement
    let strings (key: string) = [| for x in root.GetProperty(key).EnumerateArray() -> x.GetString() |]
    root.GetProperty("text").GetString(),
    [| for x in root.GetProperty("token_ids").EnumerateArray() -> x.GetInt32() |],
    strings "bpe_tokens",
    root.GetProperty("decoded_text").GetString()

let private gpt2Fixture () =
    HfTokenizer.fromVocabAndMerges
        (fixture [ "gpt2-tokenizer"; "vocab.json" ])
        (fixture [ "gpt2-tokenizer"; "merges.txt" ])
        TokenizerSettings.Empty

let private llamaFixture () =
    let dir = tempDir ()
    File.Copy(fixture [ "llama2-tokenizer-json"; "llama_tokenizer.json" ], Path.Combine(dir, "tokenizer.json"))
    File.Copy(
        fixture [ "llama2-tokenizer-json"; "llama_tokenizer_config.json" ],
        Path.Combine(dir, "tokenizer_config.json")
    )
    dir

let gpt2Tests =
    testList
        "GPT-2 byte-level BPE"
        [
            test "gpt2-tokenizer: \"Hello world\" is [15496, 995] and <|endoftext|> is special" {
                let t = gpt2Fixture ()
                let it = t :> ITokenizer
                Expect.equal (it.Encode "Hello world") [| 15496; 995 |] "Hello world"
                Expect.equal (t.Tokens "Hello world") [| "Hello"; "Ġworld" |] "vocabulary strings"
                Expect.equal (it.Encode "<|endoftext|>") [| 50256 |] "the end-of-text token is not split"
                Expect.equal (it.Decode [| 15496; 995 |]) "Hello world" "decode"
                Expect.equal (it.Piece 995) "␣world" "readable piece"
                Expect.equal (it.Piece 198) "\\n" "newline piece"
                Expect.equal it.VocabSize 50257 "vocabulary"
            }
            test "swift-transformers reference encoding, from vocab.json + merges.txt" {
                let text, ids, tokens, decoded =
                    reference (fixture [ "swift-transformers-gpt2-tokenizer"; "gpt2_encoded_tokens.json" ])
                let t =
                    HfTokenizer.fromVocabAndMerges
                        (fixture [ "swift-transformers-gpt2-tokenizer"; "gpt2-vocab.json" ])
                        (fixture [ "swift-transformers-gpt2-tokenizer"; "gpt2-merges.txt" ])
                        TokenizerSettings.Empty
                Expect.equal ((t :> ITokenizer).Encode text) ids "token ids"
                Expect.equal (t.Tokens text) tokens "bpe tokens"
                Expect.equal ((t :> ITokenizer).Decode ids) decoded "decoded text"
            }
            test "swift-transformers reference encoding, from tokenizer.json" {
                let text, ids, tokens, decoded =
                    reference (fixture [ "swift-transformers-gpt2-tokenizer"; "gpt2_encoded_tokens.json" ])
                let t =
                    HfTokenizer.fromTokenizerJson
                        (fixture [ "swift-transformers-gpt2-tokenizer"; "gpt2_tokenizer.json" ])
                        TokenizerSettings.Empty
                Expect.equal t.Style TokenizerStyle.ByteLevel "byte-level"
                Expect.equal ((t :> ITokenizer).Encode text) ids "token ids"
                Expect.equal (t.Tokens text) tokens "bpe tokens"
                Expect.equal ((t :> ITokenizer).Decode ids) decoded "decoded text"
            }
            test "a tokenizer.json NFC normalizer (as GPT-NeoX's) composes characters before BPE" {
                let dir = tempDir ()
                let original = File.ReadAllText(fixture [ "swift-transformers-gpt2-tokenizer"; "gpt2_tokenizer.json" ])
                let node = Nodes.JsonNode.Parse original
                node.["normalizer"] <- Nodes.JsonNode.Parse "{\"type\":\"NFC\"}"
                File.WriteAllText(Path.Combine(dir, "tokenizer.json"), node.ToJsonString())
                let nfc = HfTokenizer.load dir 50257 false
                let plain =
                    HfTokenizer.fromTokenizerJson
                        (fixture [ "swift-transformers-gpt2-tokenizer"; "gpt2_tokenizer.json" ])
                        TokenizerSettings.Empty
                    :> ITokenizer
                let decomposed = "caf" + "e\u0301"
                Expect.equal (nfc.Encode decomposed) (plain.Encode "café") "e + combining acute becomes é"
                Expect.notEqual (plain.Encode decomposed) (plain.Encode "café") "without NFC they differ"
            }
            test "a partial UTF-8 character renders as bytes" {
                let it = gpt2Fixture () :> ITokenizer
                // "Ã" is byte 0xC3 in GPT-2's byte-to-character table: the first half of a two-byte character.
                let id = ((gpt2Fixture ()).Inner :?> Microsoft.ML.Tokenizers.BpeTokenizer).Vocabulary.["Ã"]
                Expect.equal (it.Piece id) "<0xC3>" "lone lead byte"
            }
            test "the toy vocabulary of lm-buddy-tiny-gpt2-toyvocab reproduces transformers' GPT-2 tokenizer test" {
                use model =
                    Model.load (fixture [ "lm-buddy-tiny-gpt2-toyvocab" ]) TorchSharp.torch.float32 TorchSharp.torch.CPU
                let t = model.Tokenizer :?> HfTokenizer
                // test_tokenization_gpt2.py: "lower newer" with add_prefix_space → these tokens and ids.
                Expect.equal (t.Tokens " lower newer") [| "Ġlow"; "er"; "Ġ"; "n"; "e"; "w"; "er" |] "tokens"
                Expect.equal (model.Tokenizer.Encode " lower newer") [| 14; 15; 10; 9; 3; 2; 15 |] "ids"
                // Without the leading space "lower" has no Ġ, so only the "e r" merge applies to it.
                Expect.equal
                    (t.Tokens "lower newer")
                    [| "l"; "o"; "w"; "er"; "Ġ"; "n"; "e"; "w"; "er" |]
                    "no prefix space"
                // Characters outside the toy vocabulary become <unk> (19), as HF's unk_token says.
                Expect.equal (model.Tokenizer.Encode " lower X") [| 14; 15; 10; 19 |] "unknown character"
            }
            test "out-of-range ids are refused" {
                let it = gpt2Fixture () :> ITokenizer
                Expect.throwsWith<IndexRangeException>
                    [ "50257"; "0..50256" ]
                    (fun () -> it.Decode [| 50257 |] |> ignore)
                    "decode"
                Expect.throwsWith<IndexRangeException> [ "-1" ] (fun () -> it.Piece -1 |> ignore) "piece"
            }
        ]

let llamaTests =
    testList
        "Llama SentencePiece BPE"
        [
            test "swift-transformers Llama reference encoding from tokenizer.json, BOS 1 first" {
                let text, ids, tokens, _ = reference (fixture [ "llama2-tokenizer-json"; "llama_encoded.json" ])
                let dir = llamaFixture ()
                let it = HfTokenizer.load dir 32000 true
                let t = it :?> HfTokenizer
                Expect.equal t.Style TokenizerStyle.SentencePiece "SentencePiece style"
                Expect.equal ids.[0] 1 "the reference starts with BOS"
                Expect.equal (it.Encode text) ids "token ids"
                Expect.equal (t.Tokens text |> Array.tail) tokens "pieces after BOS"
                Expect.equal (it.Decode(Array.tail ids)) text "decodes back to the text"
                Expect.equal (it.Piece 1) "<s>" "BOS piece"
                Expect.equal (it.Piece 13) "\\n" "<0x0A> is a newline"
                Expect.equal (it.Piece 5245) "␣Nord" "▁ is a space"
            }
            test "characters outside the vocabulary fall back to their UTF-8 bytes" {
                let it = HfTokenizer.load (llamaFixture ()) 32000 true
                let ids = it.Encode "Hello 😀"
                // <0xNN> is id 3 + NN in the Llama vocabulary.
                let bytes = Encoding.UTF8.GetBytes "😀" |> Array.map (fun b -> 3 + int b)
                Expect.equal (Array.sub ids (ids.Length - 4) 4) bytes "four byte tokens"
                Expect.equal (it.Decode(Array.tail ids)) "Hello 😀" "round trip"
            }
            test "tokenizer.model (SentencePiece protobuf) gives the same ids" {
                let text, ids, _, _ = reference (fixture [ "llama2-tokenizer-json"; "llama_encoded.json" ])
                let fromJson = HfTokenizer.load (llamaFixture ()) 32000 true :?> HfTokenizer
                let dir = tempDir ()
                File.WriteAllBytes(Path.Combine(dir, "tokenizer.model"), fromJson.SentencePieceModel.Value)
                let fromModel = HfTokenizer.load dir 32000 true
                Expect.equal (fromModel.Encode text) ids "token ids"
                Expect.equal fromModel.VocabSize 32000 "vocabulary"
            }
            test "a tokenizer.json with an unsupported model type is refused" {
                let dir = tempDir ()
                File.WriteAllText(
                    Path.Combine(dir, "tokenizer.json"),
                    "{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}"
                )
                Expect.throwsWith<CheckpointException>
                    [ "tokenizer.json"; "Unigram"; "BPE" ]
                    (fun () -> HfTokenizer.load dir 10 false |> ignore)
                    "Unigram"
            }
            test "a tokenizer.json that is not JSON" {
                let dir = tempDir ()
                File.WriteAllText(Path.Combine(dir, "tokenizer.json"), "{")
                Expect.throwsWith<CheckpointException>
                    [ "tokenizer.json"; "not valid JSON" ]
                    (fun () -> HfTokenizer.load dir 10 false |> ignore)
                    "broken"
            }
        ]

[<Tests>]
let tests = testList "tokenizers" [ gpt2Tests; llamaTests ]
