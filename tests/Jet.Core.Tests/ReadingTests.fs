/// Readings: the plain records the front doors print, checked against the tensors they are read from.
module Jet.Core.Tests.ReadingTests

open System
open Expecto
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps
open Jet.Core.Tests.TestKit

let private toy64 () = Toy.create 3 12 torch.float64
let private chars = CharTokenizer.Instance :> ITokenizer

/// Two rows of four toy tokens, [2, 4].
let private batch () = torch.tensor([| 3L; 17L; 4L; 9L; 8L; 2L; 30L; 5L |], dtype = torch.int64).reshape (2L, 4L)

let private at (t: Tensor) (row: int) (position: int) = t.[int64 row, int64 position]

/// A tokenizer in the manner of SentencePiece: "▁" marks a word start, and decoding drops the leading space of
/// the whole text, so a word decoded alone loses the space it adds inside a sentence.
let private spacedWords =
    let words = [| "▁Hello"; "▁world"; "!"; "▁jets" |]
    let decode (ids: int[]) =
        (ids |> Array.map (fun i -> words.[i].Replace("▁", " ")) |> String.concat "").TrimStart(' ')
    { new ITokenizer with
        member _.VocabSize = words.Length
        member _.Encode _ = [||]
        member _.Decode ids = decode ids
        member _.Piece id = words.[id]
    }

[<Tests>]
let tests =
    testList
        "readings"
        [
            test
                "lens: per-position top tokens and agreement are the tensors' values, means are the means over positions" {
                use net = toy64 ()
                let tokens = batch ()
                use result = IterativeLens.run net tokens { Streams = [ 2; 0 ]; Order = 1; TopK = 3 }
                let readout = Readings.lens chars result 3
                Expect.equal readout.Order 1 "order"
                Expect.equal
                    (readout.Inputs |> Array.map (Array.map (fun t -> t.Id)))
                    [| [| 3; 17; 4; 9 |]; [| 8; 2; 30; 5 |] |]
                    "input ids"
                Expect.equal
                    (readout.Inputs.[0] |> Array.map (fun t -> t.Piece))
                    [| "#"; "1"; "$"; ")" |]
                    "input pieces"
                Expect.equal
                    (readout.Streams |> Array.map (fun s -> s.Stream, s.Path))
                    [| 2, "U·J¹LN(h₂)"; 0, "U·J¹LN(Enc)" |]
                    "streams in the requested order"
                for reading, stream in Array.zip readout.Streams (Array.ofList result.Streams) do
                    Expect.equal
                        (reading.Positions |> Array.map (fun p -> p.Row, p.Position))
                        [|
                            for b in 0..1 do
                                for p in 0..3 -> b, p
                        |]
                        "row-major"
                    for p in reading.Positions do
                        let logits = at stream.Logits p.Row p.Position
                        let truth = at result.Logits p.Row p.Position
                        let struct (_, best) = logits.topk 3
                        Expect.equal
                            (p.Top |> Array.map (fun t -> int64 t.Id))
                            (best.data<int64>().ToArray())
                            "the three best ids, best first"
                        for t in p.Top do
                            Expect.equal t.Score (logits.[int64 t.Id].item<float> ()) "each score is the logit"
                            Expect.equal t.Token (LogitMetrics.piece chars t.Id) "each token is its piece"
                        let cosine = (logits.dot truth / (logits.norm () * truth.norm ())).item<float> ()
                        Expect.floatClose Accuracy.high p.Agreement.Cosine cosine "cosine at the position"
                        Expect.equal
                            p.Agreement.Top1
                            (if logits.argmax().item<int64> () = truth.argmax().item<int64> () then
                                 1.0
                             else
                                 0.0)
                            "top-1 at the position"
                        Expect.equal
                            p.Agreement.Kl
                            ((at stream.Agreement.Kl p.Row p.Position).item<float> ())
                            "KL at the position"
                        Expect.equal p.Input readout.Inputs.[p.Row].[p.Position] "input at the position"
                    let mean (pick: AgreementValues -> float) =
                        reading.Positions |> Array.averageBy (fun p -> pick p.Agreement)
                    Expect.equal
                        reading.Mean
                        {
                            Cosine = mean (fun a -> a.Cosine)
                            Kl = mean (fun a -> a.Kl)
                            Top1 = mean (fun a -> a.Top1)
                            TopKOverlap = mean (fun a -> a.TopKOverlap)
                        }
                        "means"
                for p in readout.Predictions do
                    Expect.equal
                        (int64 p.Top.[0].Id)
                        ((at result.Logits p.Row p.Position).argmax().item<int64> ())
                        "the model's own best token"
            }

            test "joint lens: weights per position are the fitted weights, and sum to 1 over centres" {
                use net = toy64 ()
                let tokens = batch ()
                use result =
                    JointLens.fit net tokens { JointLensOptions.Default with Streams = [ 0; 1; 2 ]; Iterations = 5 }
                let readout = Readings.jointLens chars result 2
                Expect.equal readout.Streams [| 0; 1; 2 |] "streams"
                Expect.equal readout.Losses result.Losses "losses"
                Expect.equal
                    (readout.Centres |> Array.map (fun c -> c.Centre))
                    [| "Enc"; "(h₁ − Enc)"; "(h₂ − h₁)" |]
                    "centres"
                for i, centre in Array.indexed readout.Centres do
                    Expect.equal centre.Path (string result.Paths.[i]) "path"
                    for p in centre.Positions do
                        Expect.equal
                            p.Weight
                            (result.Weights.[int64 i, int64 p.Row, int64 p.Position].item<float> ())
                            "weight at the position"
                        Expect.equal
                            (int64 p.Top.[0].Id)
                            ((at result.PerCentre.[i] p.Row p.Position).argmax().item<int64> ())
                            "best token of the weighted logits"
                    Expect.floatClose
                        Accuracy.high
                        centre.MeanWeight
                        (result.Weights.[int64 i].mean().item<float> ())
                        "mean weight"
                for k in 0..7 do
                    Expect.floatClose
                        Accuracy.high
                        (readout.Centres |> Array.sumBy (fun c -> c.Positions.[k].Weight))
                        1.0
                        "weights sum to 1"
                for p in readout.Positions do
                    Expect.equal
                        p.Agreement.Cosine
                        ((at result.Agreement.Cosine p.Row p.Position).item<float> ())
                        "combined lens cosine"
                    Expect.equal
                        (int64 p.Top.[0].Id)
                        ((at result.Combined p.Row p.Position).argmax().item<int64> ())
                        "combined lens best token"
            }

            test "input texts concatenate to the decoded prompt, keeping the spaces single-token decoding drops" {
                Expect.equal
                    (Readings.tokenTexts spacedWords [| 0; 1; 2; 3 |])
                    [| "Hello"; " world"; "!"; " jets" |]
                    "spaces kept"
                Expect.equal (spacedWords.Decode [| 1 |]) "world" "decoded alone, the space is gone"
                let prompt = "hi jet"
                let ids = chars.Encode prompt
                Expect.equal (String.concat "" (Readings.tokenTexts chars ids)) prompt "the texts spell the prompt"
                let broken =
                    { new ITokenizer with
                        member _.VocabSize = 2
                        member _.Encode _ = [||]
                        member _.Decode _ = raise (InvalidOperationException "cannot decode")
                        member _.Piece id = sprintf "p%d" id
                    }
                Expect.equal
                    (Readings.tokenTexts broken [| 1; 0; 7 |])
                    [| "p1"; "p0"; "<id 7>" |]
                    "a row that cannot be decoded falls back to pieces"
            }

            test "carving: the summary's figures with the pieces of every top-1 token" {
                use model = Model.toy 0 16 torch.float64
                let tokens = Carving.randomPrompt 0 model.Net.Vocab 6
                use session = Expand.session model.Net tokens
                let summary =
                    PathSummary.ofLogitPaths (session.Unembed(session.Expand(Carving.twoStep 1 Engine.Taylor)))
                let readout = Readings.carving model.Tokenizer tokens summary
                Expect.equal
                    (readout.Inputs |> Array.map (fun t -> int64 t.Id))
                    (tokens.[0L].data<int64>().ToArray())
                    "inputs of row 0"
                Expect.equal
                    (readout.Paths |> Array.map (fun p -> p.Name))
                    (summary.Paths |> List.map (fun p -> p.Name) |> Array.ofList)
                    "paths"
                Expect.equal
                    (readout.ModelTop1 |> Array.map (fun t -> int64 t.Id))
                    summary.ModelTop1
                    "model's top-1 ids"
                Expect.equal
                    (readout.ModelTop1 |> Array.map (fun t -> t.Piece))
                    (summary.ModelTop1 |> Array.map (int >> LogitMetrics.piece model.Tokenizer))
                    "pieces"
                Expect.equal readout.Remainder.Contribution summary.Remainder.Contribution "remainder"
                Expect.equal readout.ReconstructionError summary.ReconstructionError "reconstruction error"
            }

            test "matrices, bigram descriptions and bad shapes" {
                let t = torch.tensor([| 1.0; 2.5; -3.0; 4.0; 5.0; 6.0 |], dtype = torch.float64).reshape (2L, 3L)
                Expect.equal (Readings.matrix t) [| [| 1.0f; 2.5f; -3.0f |]; [| 4.0f; 5.0f; 6.0f |] |] "rows"
                Expect.throwsWith<ShapeMismatchException>
                    [ "[rows, cols]" ]
                    (fun () -> Readings.matrix (t.unsqueeze 0L) |> ignore)
                    "3-D"
                Expect.equal
                    (Readings.describeTable true 10 ScoreSpace.Probability true)
                    "global top 10, probability, diagonal dropped"
                    "global"
                Expect.equal
                    (Readings.describeTable false 3 ScoreSpace.Logit false)
                    "top 3 per token, logit"
                    "per token"
            }
        ]
