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

/// A reference case of the llama3-tokenizer / qwen3-tokenizer fixtures' encoded.json.
type private ReferenceCase =
    { Text: string; Ids: int[]; Tokens: string[]; IdsWithSpecialTokens: int[]; Decoded: string }

let private referenceCases (fixtureName: string) =
    use doc = JsonDocument.Parse(File.ReadAllText(fixture [ fixtureName; "encoded.json" ]))
    [
        for c in doc.RootElement.GetProperty("cases").EnumerateArray() ->
            let ints (key: string) = [| for x in c.GetProperty(key).EnumerateArray() -> x.GetInt32() |]
            {
                Text = c.GetProperty("text").GetString()
                Ids = ints "ids"
                Tokens = [| for x in c.GetProperty("tokens").EnumerateArray() -> x.GetString() |]
                IdsWithSpecialTokens = ints "ids_add_special_tokens"
                Decoded = c.GetProperty("decoded").GetString()
            }
    ]

/// Each fixture's tokenizer, loaded once (the files are 9 and 11 MB).
let private modernTokenizers =
    dict
        [
            for name in [ "llama3-tokenizer"; "qwen3-tokenizer" ] ->
                name, lazy (HfTokenizer.load (fixture [ name ]) 0 false :?> HfTokenizer)
        ]

/// A directory holding a config.json of `architecture` and a fixture's tokenizer files, nothing else.
let private tokenizerOnlyDirectory (fixtureName: string) (config: string) =
    let dir = tempDir ()
    for file in [ "tokenizer.json"; "tokenizer_config.json" ] do
        File.Copy(fixture [ fixtureName; file ], Path.Combine(dir, file))
    File.WriteAllText(Path.Combine(dir, "config.json"), config)
    dir

let private llama31Config =
    """{"architectures":["LlamaForCausalLM"],"model_type":"llama","vocab_size":128256,"hidden_size":4096,
    "num_attention_heads":32,"num_key_value_heads":8,"num_hidden_layers":32,"intermediate_size":14336,
    "max_position_embeddings":131072,"rope_theta":500000.0,"bos_token_id":128000,"eos_token_id":128001,
    "rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192,
    "rope_type":"llama3"}}"""

let private qwen3Config =
    """{"architectures":["Qwen3ForCausalLM"],"model_type":"qwen3","vocab_size":151936,"hidden_size":1024,
    "head_dim":128,"num_attention_heads":16,"num_key_value_heads":8,"num_hidden_layers":28,"intermediate_size":3072,
    "max_position_embeddings":40960,"rope_theta":1000000,"tie_word_embeddings":true,"use_sliding_window":false,
    "sliding_window":null,"max_window_layers":28,"rope_scaling":null}"""

let modernByteLevelTests =
    testList
        "Llama 3 and Qwen3 byte-level BPE"
        [
            for name, vocab in [ "llama3-tokenizer", 128256; "qwen3-tokenizer", 151669 ] do
                test (sprintf "%s: every reference encoding, ids and pieces, and its decoding" name) {
                    let t = modernTokenizers.[name].Value
                    let it = t :> ITokenizer
                    Expect.equal t.Style TokenizerStyle.ByteLevel "byte-level"
                    Expect.equal it.VocabSize vocab "vocabulary with the added tokens"
                    let cases = referenceCases name
                    Expect.equal cases.Length 29 "29 reference texts"
                    for c in cases do
                        Expect.equal (it.Encode c.Text) c.Ids (sprintf "ids of %A" c.Text)
                        // Neither tokenizer adds BOS: add_special_tokens gives the same ids.
                        Expect.equal c.IdsWithSpecialTokens c.Ids "the reference adds no special token"
                        Expect.equal (t.Tokens c.Text) c.Tokens (sprintf "pieces of %A" c.Text)
                        Expect.equal (it.Decode c.Ids) c.Decoded (sprintf "decoding of %A" c.Text)
                }
            test "Llama 3 splits digits in groups of three, Qwen3 one by one; added tokens match inside text" {
                let llama = modernTokenizers.["llama3-tokenizer"].Value :> ITokenizer
                let qwen = modernTokenizers.["qwen3-tokenizer"].Value :> ITokenizer
                Expect.equal (llama.Encode "12345") [| 4513; 1774 |] "123 45"
                Expect.equal (qwen.Encode "12345") [| 16; 17; 18; 19; 20 |] "1 2 3 4 5"
                Expect.equal (llama.Encode "<|begin_of_text|>Hello") [| 128000; 9906 |] "special token inside text"
                Expect.equal (qwen.Encode "Before<|endoftext|>After") [| 10227; 151643; 6025 |] "Qwen special"
                // <think> is an added token that is not special: still one id.
                Expect.equal (qwen.Encode "<think>") [| 151667 |] "non-special added token"
                Expect.equal (llama.Piece 128000) "<|begin_of_text|>" "special piece"
                Expect.equal (qwen.Piece 1879) "␣world" "readable piece"
            }
            test "Qwen3's NFC normalizer composes accents before BPE" {
                let qwen = modernTokenizers.["qwen3-tokenizer"].Value :> ITokenizer
                Expect.equal (qwen.Encode "Café") (qwen.Encode "Café") "e + combining acute is é"
                Expect.equal (qwen.Decode(qwen.Encode "Café")) "Café" "decodes to the NFC form"
            }
            test "Llama 3's ignore_merges: a pre-token that is a vocabulary entry is that entry" {
                let t = modernTokenizers.["llama3-tokenizer"].Value
                let it = t :> ITokenizer
                // " việc" (100769) is a Llama 3 token its merges cannot build: without ignore_merges it would be
                // three tokens.
                Expect.equal (it.Encode " việc") [| 100769 |] "one token"
                Expect.equal (it.Encode "Tôi làm việc") (Array.append (it.Encode "Tôi làm") [| 100769 |]) "inside text"
                // Every vocabulary entry that the pre-tokenizer keeps whole encodes to itself.
                let pattern =
                    System.Text.RegularExpressions.Regex(
                        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
                    )
                let mutable checkedCount = 0
                let wrong = ResizeArray()
                for id in 0..127999 do
                    let text = it.Decode [| id |]
                    // Skips pieces of multi-byte characters, which decode to U+FFFD.
                    if text.Length > 0 && not (text.Contains '\uFFFD') then
                        let m = pattern.Matches text
                        if m.Count = 1 && m.[0].Length = text.Length then
                            checkedCount <- checkedCount + 1
                            let ids = it.Encode text
                            if ids <> [| id |] then
                                wrong.Add(sprintf "%d %A → %A" id text ids)
                Expect.isEmpty (List.ofSeq wrong |> List.truncate 5) "tokens that do not encode to themselves"
                Expect.isGreaterThan checkedCount 120000 "most of the vocabulary checked"
            }
            for name, config, hello in
                [
                    "llama3-tokenizer", llama31Config, [| 9906; 1917 |]
                    "qwen3-tokenizer", qwen3Config, [| 9707; 1879 |]
                ] do
                test (sprintf "%s: a directory with config.json and the tokenizer files only loads, without BOS" name) {
                    let dir = tokenizerOnlyDirectory name config
                    let it = Model.tokenizer dir
                    Expect.equal (it.Encode "Hello world") hello "Hello world, no BOS"
                    Expect.equal (it.Decode hello) "Hello world" "decode"
                }
        ]

[<Tests>]
let tests = testList "tokenizers" [ gpt2Tests; llamaTests; modernByteLevelTests ]
