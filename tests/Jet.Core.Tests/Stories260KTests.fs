/// A real trained model: Karpathy's stories260K (shared fixture, see its SOURCE.md). Greedy decoding from <s> must
/// reproduce the published continuation token by token, and its tokenizer's byte fallback must round-trip.
module Jet.Core.Tests.Stories260KTests

open System
open Expecto
open TorchSharp
open Jet.Core
open Jet.Core.Apps
open Jet.Core.Models

let private directory () = Jet.Tests.Fixtures.path [ "stories260K" ]

/// The greedy continuation from <s> published with the model (tinyllamas model card, llama2.c's test_all.py).
let published =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw "
    + "a big, red ball. She wanted to play with it, but it was too high.\n"
    + "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do."

/// SOURCE.md: 99 generated tokens cover the published text up to "didn't know".
let generatedTokens = 99

/// The published text's tokens after <s>, as the model's tokenizer spells it.
let private publishedIds (model: Model) =
    let ids = model.Tokenizer.Encode published
    Expect.equal ids.[0] 1 "the tokenizer starts with <s> (id 1)"
    ids.[1..]

/// How many leading ids two sequences share.
let private agreeing (a: int[]) (b: int[]) = Seq.zip a b |> Seq.takeWhile (fun (x, y) -> x = y) |> Seq.length

/// Greedy decoding of `count` tokens from <s> alone.
let private fromStart (net: Net) (count: int) =
    use start = torch.tensor ([| 1L |], dtype = torch.int64)
    Generate.greedy net start count

[<Tests>]
let tests =
    testList
        "stories260K"
        [
            test "greedy decoding from <s> reproduces the published text token by token (float32)" {
                use model = Model.load (directory ()) torch.float32 torch.CPU
                let expected = publishedIds model
                Expect.isGreaterThanOrEqual expected.Length generatedTokens "the published text spans the tokens"
                let generated = fromStart model.Net generatedTokens
                Expect.equal generated expected.[.. generatedTokens - 1] "the published tokens, in order"
                let text = model.Tokenizer.Decode generated
                Expect.stringStarts published text "the decoded continuation is the published text's beginning"
                Expect.stringContains text "didn't know" "99 tokens reach \"didn't know\" (SOURCE.md)"
            }

            test "greedy decoding with bf16-rounded weights computed in float32" {
                use model = Model.load (directory ()) torch.float32 torch.CPU
                let expected = publishedIds model
                // Round every weight to bfloat16 and compute in float32 (what a bf16 checkpoint widened per layer
                // computes).
                use bf16 = Net.toDType torch.bfloat16 model.Net
                use rounded = Net.toDType torch.float32 bf16
                let changed =
                    model.Net.Parameters.Tensors
                    |> Seq.exists (fun kv -> not (kv.Value.allclose (rounded.Parameters.[kv.Key], 0.0, 0.0)))
                Expect.isTrue changed "rounding to bfloat16 changed some weights"
                let generated = fromStart rounded generatedTokens
                let agree = agreeing generated expected
                printfn
                    "stories260K, bf16-rounded weights in float32: %d of %d greedy tokens agree"
                    agree
                    generatedTokens
                // The first tokens are decided by wide logit margins, far beyond bf16's relative error of 2⁻⁸.
                Expect.isGreaterThanOrEqual agree 10 "the rounded model starts the published story"
            }

            test "the tokenizer's byte fallback round-trips characters outside its 512 pieces" {
                let tokenizer = Model.tokenizer (directory ())
                let pieces = [| for id in 0 .. tokenizer.VocabSize - 1 -> tokenizer.Piece id |]
                // "é" is one of the 512 pieces (id 485); "😀", "ü" and "中" are not, so they are spelled in bytes.
                Expect.contains pieces "é" "é has its own piece"
                for outside in [ "😀"; "ü"; "中" ] do
                    Expect.isFalse (Array.contains outside pieces) (sprintf "%s has no piece of its own" outside)
                for text, spelled in [ "😀", "😀"; "ü", "ü"; "中", "中"; "café 😀 über!", "😀" ] do
                    let ids = tokenizer.Encode text
                    // Byte pieces <0x00>..<0xFF> are ids 3..258 (SOURCE.md).
                    let byteIds = Text.Encoding.UTF8.GetBytes spelled |> Array.map (fun b -> 3 + int b)
                    let found = ids |> Array.windowed byteIds.Length |> Array.exists (fun w -> w = byteIds)
                    Expect.isTrue
                        found
                        (sprintf "%s is spelled with its UTF-8 byte pieces %A (ids %A)" text byteIds ids)
                    for id in byteIds do
                        Expect.equal pieces.[id] (sprintf "<0x%02X>" (id - 3)) "byte pieces are named <0xNN>"
                    Expect.equal ids.[0] 1 "encoding starts with <s>"
                    // Decoding keeps special tokens (it prints <s>); the text is what follows it.
                    Expect.equal (tokenizer.Decode ids.[1..]) text (sprintf "%s round-trips" text)
                let e = tokenizer.Encode "é"
                Expect.isTrue (e |> Array.exists (fun id -> pieces.[id] = "é")) "é is spelled with its piece"
                Expect.equal (tokenizer.Decode e.[1..]) "é" "é round-trips"
            }

            test "greedy decoding refuses more tokens than the network has positions, and negative counts" {
                use model = Model.load (directory ()) torch.float32 torch.CPU
                Expect.throwsT<IndexRangeException> (fun () -> fromStart model.Net 512 |> ignore) "1 + 512 > 512"
                Expect.throwsT<IndexRangeException> (fun () -> fromStart model.Net -1 |> ignore) "negative count"
                Expect.equal (fromStart model.Net 0) [||] "no tokens asked, none made"
                use two = torch.tensor([| 1L; 1L |], dtype = torch.int64).reshape (2L, 1L)
                Expect.throwsT<ShapeMismatchException>
                    (fun () -> Generate.greedy model.Net two 1 |> ignore)
                    "one sequence only"
            }
        ]
