/// Jet bigrams and n-gram mass: paths against hand computations and the expansion machinery, streamed top-k
/// against brute force, bad input, cancellation and memory bounded by the batch size.
module Jet.Core.Tests.BigramTests

open System
open System.Threading
open Expecto
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps
open Jet.Core.Tests.TestKit

let private gpt64 () = SyntheticNets.gpt2Like 11 SyntheticNets.small torch.float64
let private tiedGpt64 () =
    SyntheticNets.gpt2Like 12 { SyntheticNets.small with Tied = true; UnembedBias = false } torch.float64
let private toy64 () = Toy.create 13 12 torch.float64

let private p (net: Net) (name: string) = net.Parameters.[name]

// Row z₁ of a path's logits written by hand from the parameters: LN_f and U (+ b) over x [V, d].
let private handDecoder (net: Net) (x: Tensor) =
    let d = int64 net.Width
    let normed =
        match net.Spec.FinalNorm with
        | LayerNorm n -> torch.nn.functional.layer_norm (x, [| d |], p net n.Weight.Value, p net n.Bias.Value, 1e-5)
        | other -> failwithf "unexpected %O" other
    let u = p net net.Spec.Unembedding.Weight
    let raw = normed.matmul (u.t ())
    match net.Spec.Unembedding.Bias with
    | Some b -> raw + p net b
    | None -> raw

let private handLayerNorm (net: Net) (prefix: string) (x: Tensor) =
    torch.nn.functional.layer_norm (
        x,
        [| int64 net.Width |],
        p net (prefix + ".weight"),
        p net (prefix + ".bias"),
        1e-5
    )

// GPT-2's MLP of block b by hand: LN₂ ▸ c_fc ▸ GELU(tanh) ▸ c_proj.
let private handMlp (net: Net) (b: int) (x: Tensor) =
    let pre = sprintf "h%d" b
    let hidden =
        torch.nn.functional.linear (
            handLayerNorm net (pre + ".ln_2") x,
            p net (pre + ".mlp.c_fc.weight"),
            p net (pre + ".mlp.c_fc.bias")
        )
    let gelu =
        0.5
        * hidden
        * (1.0 + torch.tanh (sqrt (2.0 / Math.PI) * (hidden + 0.044715 * hidden * hidden * hidden)))
    torch.nn.functional.linear (gelu, p net (pre + ".mlp.c_proj.weight"), p net (pre + ".mlp.c_proj.bias"))

let private embeddings (net: Net) = p net net.Spec.Encoder.TokenEmbedding

// The full table by hand, in the requested space, with the diagonal dropped on request.
// `mlpBlock`: None for embedding → decoder, Some b for embedding → MLP_b → decoder.
let private bruteForce (net: Net) (mlpBlock: int option) (space: ScoreSpace) (dropDiagonal: bool) =
    let e = embeddings net
    let x =
        match mlpBlock with
        | None -> e
        | Some b ->
            match net.Spec.Name with
            | "toy" -> Forward.apply net.Parameters net.Spec.Layers.[b - 1].Gamma e
            | _ -> handMlp net b e
    let logits = handDecoder net x
    let logits =
        if dropDiagonal then
            logits.masked_fill (torch.eye (int64 net.Vocab, dtype = torch.ScalarType.Bool), Double.NegativeInfinity)
        else
            logits
    match space with
    | ScoreSpace.Probability -> logits.softmax 1L
    | ScoreSpace.Logit -> logits

let private options space drop batch =
    { SweepOptions.Default with Space = space; DropDiagonal = drop; BatchSize = batch }

let private combos =
    [
        for space in [ ScoreSpace.Probability; ScoreSpace.Logit ] do
            for drop in [ false; true ] -> space, drop
    ]

let paths =
    testList
        "bigram paths"
        [
            test "embedding → decoder is U·LN_f(E[z]) + b for every first token" {
                for make in [ gpt64; tiedGpt64; toy64 ] do
                    use net = make ()
                    use table = Bigrams.full net Readouts.embedding (options ScoreSpace.Logit false 7)
                    Expect.tensorClose Accuracy.Float64 table (handDecoder net (embeddings net)) net.Spec.Name
            }

            test "embedding → MLP₁ → decoder is U·LN_f(MLP(LN₂(E[z]))) + b, positions not added" {
                use net = gpt64 ()
                use table = Bigrams.full net (Readouts.mlpPath net 1) (options ScoreSpace.Logit false 16)
                Expect.tensorClose Accuracy.Float64 table (handDecoder net (handMlp net 1 (embeddings net))) "block 1"
                use table2 = Bigrams.full net (Readouts.mlpPath net 2) (options ScoreSpace.Logit false 16)
                Expect.tensorClose Accuracy.Float64 table2 (handDecoder net (handMlp net 2 (embeddings net))) "block 2"
            }

            test "the MLP path equals the expansion machinery's order-0 path U·LN(γ_mlp(Emb))" {
                use net = gpt64 ()
                // Every vocabulary token as its own one-token sequence.
                let z = torch.arange(int64 net.Vocab, dtype = torch.int64).unsqueeze 1L
                use session = Expand.session net z
                let mlpLayer = Net.layerOfBlock 1 LayerKind.Mlp net
                let atMlp = Expansion.atLayer mlpLayer [ Centre.Embedding ] |> Expansion.withOrder 0
                let decoder = Expansion.atDecoder [ Centre.Term(atMlp, 0) ] |> Expansion.withOrder 0
                let logits = session.Unembed(session.Expand decoder)
                Expect.equal (string logits.Paths.Head.Path) "U·LN(γ₂(Emb))" "the path's provenance"
                let expected = logits.Paths.Head.Value.squeeze 1L + p net "lm_head.bias"
                use table = Bigrams.full net (Readouts.mlpPath net 1) (options ScoreSpace.Logit false 9)
                Expect.tensorClose Accuracy.Float64 table expected "same table"
            }

            test "a parallel (NeoX) layer contributes its MLP branch, not the attention branch" {
                use net = SyntheticNets.neoxLike 14 SyntheticNets.small torch.float64
                use table = Bigrams.full net (Readouts.mlpPath net 2) (options ScoreSpace.Logit false 16)
                Expect.tensorClose
                    Accuracy.Float64
                    table
                    (handDecoder net (handMlp net 2 (embeddings net)))
                    "MLP branch of block 2"
            }

            test "the toy's blocks are MLPs: the path is U·LN_f(γ_b(E[z]))" {
                use net = toy64 ()
                use table = Bigrams.full net (Readouts.mlpPath net 2) (options ScoreSpace.Logit false 30)
                let e = embeddings net
                let gamma =
                    torch.nn.functional.linear (
                        torch.nn.functional.relu (
                            torch.nn.functional.linear (e, p net "block2.fc1.weight", p net "block2.fc1.bias")
                        ),
                        p net "block2.fc2.weight",
                        p net "block2.fc2.bias"
                    )
                Expect.tensorClose Accuracy.Float64 table (handDecoder net gamma) "block 2"
            }

            test "a network without MLPs, and blocks out of range, fail clearly" {
                use net = SyntheticNets.attentionOnly 15 SyntheticNets.small torch.float64
                Expect.throwsWith<InvalidPlanException>
                    [ "block 1 has no MLP"; "attn1" ]
                    (fun () -> Readouts.mlpPath net 1 |> ignore)
                    "no MLP"
                use gpt = gpt64 ()
                for bad in [ 3; 0 ] do
                    Expect.throwsWith<InvalidPlanException>
                        [ sprintf "\"mlp%d\"" bad; "attn1, mlp1, attn2, mlp2" ]
                        (fun () -> Readouts.mlpPath gpt bad |> ignore)
                        (sprintf "block %d" bad)
                Expect.throwsWith<IndexRangeException>
                    [ "Residual layer 5"; "1..4" ]
                    (fun () ->
                        Bigrams.rowTopK gpt (Readouts.ofLayers PathSource.Embedding [ 5 ]) 3 SweepOptions.Default
                        |> ignore)
                    "a path built in F# is checked when swept"
            }
        ]

let sweeps =
    testList
        "streamed sweeps"
        [
            for space, drop in combos do
                test (sprintf "row top-k = top-k of the full table (%A, drop diagonal %b)" space drop) {
                    use net = gpt64 ()
                    let k = 6
                    use best = Bigrams.rowTopK net (Readouts.mlpPath net 1) k (options space drop 7)
                    let table = bruteForce net (Some 1) space drop
                    let struct (values, ids) = table.topk (k, dim = 1)
                    Expect.tensorClose Accuracy.Float64 best.Scores values "scores"
                    Expect.isTrue (best.Ids.eq(ids).all().item<bool> ()) "ids"
                    if drop then
                        Expect.isFalse
                            (best.Ids
                                .eq(torch.arange(int64 net.Vocab, dtype = torch.int64).unsqueeze 1L)
                                .any()
                                .item<bool> ())
                            "no (z, z) pair"
                    let pairs = Bigrams.pairsOf best
                    Expect.equal
                        (pairs |> Array.map (fun q -> q.From))
                        [|
                            for z in 0 .. net.Vocab - 1 do
                                for _ in 1..k -> z
                        |]
                        "grouped by first token ascending"
                }

                test (sprintf "global top-k = brute-force sort of all pairs (%A, drop diagonal %b)" space drop) {
                    use net = toy64 ()
                    let k = 25
                    let best = Bigrams.globalTopK net Readouts.embedding k (options space drop 13)
                    let table = (bruteForce net None space drop).data<float>().ToArray()
                    let v = net.Vocab
                    let expected =
                        table
                        |> Array.indexed
                        |> Array.filter (fun (i, s) -> not (Double.IsNegativeInfinity s) && not (drop && i / v = i % v))
                        |> Array.sortByDescending snd
                        |> Array.take k
                    Expect.equal
                        (best |> Array.map (fun q -> q.From, q.To))
                        (expected |> Array.map (fun (i, _) -> i / v, i % v))
                        "pairs, best first"
                    for q, (_, s) in Array.zip best expected do
                        Expect.floatClose Accuracy.high q.Score s "score"
                }

            test "full table in probability space: rows sum to 1, diagonal 0 when dropped" {
                use net = tiedGpt64 ()
                use table = Bigrams.full net Readouts.embedding (options ScoreSpace.Probability true 8)
                Expect.tensorClose
                    Accuracy.Float64
                    (table.sum 1L)
                    (torch.ones ([| int64 net.Vocab |], dtype = torch.float64))
                    "rows sum to 1"
                Expect.tensorClose
                    Accuracy.Float64
                    (table.diagonal ())
                    (torch.zeros ([| int64 net.Vocab |], dtype = torch.float64))
                    "diagonal dropped"
                Expect.tensorClose
                    Accuracy.Float64
                    table
                    (bruteForce net None ScoreSpace.Probability true)
                    "brute force"
            }

            test "scores for chosen first tokens are those rows of the full table" {
                use net = gpt64 ()
                let first = torch.tensor ([| 4L; 0L; 49L |], dtype = torch.int64)
                let rows = Bigrams.scores net (Readouts.mlpPath net 2) SweepOptions.Default first
                use table = Bigrams.full net (Readouts.mlpPath net 2) SweepOptions.Default
                Expect.tensorClose Accuracy.Float64 rows (table.index_select (0L, first)) "rows 4, 0, 49"
                Expect.throwsWith<IndexRangeException>
                    [ "0..49" ]
                    (fun () ->
                        Bigrams.scores
                            net
                            Readouts.embedding
                            SweepOptions.Default
                            (torch.tensor ([| 50L |], dtype = torch.int64))
                        |> ignore)
                    "id 50"
            }

            test "the full table is refused, with its size, above the byte limit" {
                use net = gpt64 ()
                Expect.throwsWith<InvalidPlanException>
                    [ "50 × 50"; "20.0 kB"; "limit of 1.0 kB"; "top-k" ]
                    (fun () ->
                        Bigrams.full net Readouts.embedding { SweepOptions.Default with MaxFullBytes = 1000L }
                        |> ignore)
                    "too big"
            }

            test "k, batch size and vocabulary bounds are checked" {
                use net = toy64 ()
                Expect.throwsWith<IndexRangeException>
                    [ "1..99"; "diagonal dropped" ]
                    (fun () ->
                        Bigrams.rowTopK net Readouts.embedding 100 (options ScoreSpace.Probability true 10) |> ignore)
                    "k = V with the diagonal dropped"
                Expect.throwsWith<IndexRangeException>
                    [ "got 0" ]
                    (fun () -> Bigrams.globalTopK net Readouts.embedding 0 SweepOptions.Default |> ignore)
                    "k = 0"
                Expect.throwsWith<InvalidPlanException>
                    [ "batch size" ]
                    (fun () ->
                        Bigrams.rowTopK net Readouts.embedding 3 (options ScoreSpace.Probability false 0) |> ignore)
                    "batch 0"
            }

            test "progress reports every batch up to the vocabulary size; cancellation stops the sweep" {
                use net = toy64 ()
                let reports = ResizeArray<int64>()
                let progress =
                    { new IProgress<int64> with
                        member _.Report v = reports.Add v
                    }
                Bigrams.globalTopK
                    net
                    Readouts.embedding
                    3
                    { SweepOptions.Default with BatchSize = 30; Progress = Some progress }
                |> ignore
                Expect.equal (List.ofSeq reports) [ 30L; 60L; 90L; 100L ] "ids done after each batch"
                use cts = new CancellationTokenSource()
                let cancelling =
                    { new IProgress<int64> with
                        member _.Report v =
                            if v >= 30L then
                                cts.Cancel()
                    }
                Expect.throwsT<OperationCanceledException>
                    (fun () ->
                        Bigrams.mass
                            net
                            Readouts.embedding
                            [| 1 |]
                            { SweepOptions.Default with
                                BatchSize = 30
                                Progress = Some cancelling
                                Cancellation = cts.Token
                            }
                        |> ignore)
                    "cancelled mid-sweep"
            }
        ]

let mass =
    testList
        "n-gram mass"
        [
            for drop in [ false; true ] do
                test (sprintf "mass = brute-force mean over z₁ of Σ_{z₂∈S} P(z₂|z₁) (drop diagonal %b)" drop) {
                    use net = gpt64 ()
                    let set = [| 3; 7; 7; 20; 41 |]
                    let table = (bruteForce net (Some 2) ScoreSpace.Probability drop).data<float>().ToArray()
                    let v = net.Vocab
                    let expected =
                        [ for z1 in 0 .. v - 1 -> set |> Array.distinct |> Array.sumBy (fun z2 -> table.[z1 * v + z2]) ]
                        |> List.average
                    Expect.floatClose
                        Accuracy.high
                        (Bigrams.mass net (Readouts.mlpPath net 2) set (options ScoreSpace.Probability drop 11))
                        expected
                        "mass"
                }

            test "the whole vocabulary has mass 1; two models side by side each get their own mass" {
                use net = toy64 ()
                Expect.floatClose
                    Accuracy.high
                    (Bigrams.mass net Readouts.embedding [| 0..99 |] SweepOptions.Default)
                    1.0
                    "all tokens"
                use a = { Model.toy 1 8 torch.float64 with Source = "a" }
                use b = { Model.toy 2 8 torch.float64 with Source = "b" }
                let reports = ResizeArray<int64>()
                let progress =
                    { new IProgress<int64> with
                        member _.Report v = reports.Add v
                    }
                let options = { SweepOptions.Default with BatchSize = 30; Progress = Some progress }
                let results = TokenMass.ofModels Readouts.embedding "test" [ "a"; "␣"; "b" ] None options [ a; b ]
                Expect.equal (results |> Array.map (fun r -> r.Model)) [| "a"; "b" |] "one entry per model"
                for r, m in Array.zip results [| a; b |] do
                    Expect.equal r.Tokens 3 "three tokens"
                    Expect.floatClose
                        Accuracy.high
                        r.Mass
                        (Bigrams.mass m.Net Readouts.embedding [| 65; 0; 66 |] SweepOptions.Default)
                        m.Source
                Expect.notEqual results.[0].Mass results.[1].Mass "different models, different masses"
                Expect.equal
                    (List.ofSeq reports)
                    [ 30L; 60L; 90L; 100L; 130L; 160L; 190L; 200L ]
                    "progress runs on across both sweeps"
            }

            test "mass of two models: every path and token set is checked before the first sweep" {
                use a = { Model.toy 1 8 torch.float64 with Source = "a" }
                let swept = ref 0L
                let options =
                    { SweepOptions.Default with
                        Progress =
                            Some
                                { new IProgress<int64> with
                                    member _.Report v = swept.Value <- v
                                }
                    }
                Expect.throwsWith<IndexRangeException>
                    [ "Residual layer 9"; "1..2" ]
                    (fun () ->
                        TokenMass.ofModels
                            (Readouts.ofLayers PathSource.Embedding [ 9 ])
                            "f"
                            [ "a" ]
                            None
                            options
                            [ a; a ]
                        |> ignore)
                    "path"
                let wordy =
                    { a with
                        Source = "words"
                        Tokenizer =
                            { new ITokenizer with
                                member _.VocabSize = 100
                                member _.Encode _ = [||]
                                member _.Decode _ = ""
                                member _.Piece id = sprintf "w%d" id
                            }
                    }
                Expect.throwsWith<UnknownTokenException>
                    [ "Line 1"; "\"a\"" ]
                    (fun () -> TokenMass.ofModels Readouts.embedding "f" [ "a" ] None options [ a; wordy ] |> ignore)
                    "the second model's set"
                Expect.equal swept.Value 0L "no sweep ran"
            }

            test "token sets: printed pieces or single-token text; unknown and empty sets fail clearly" {
                let t = CharTokenizer.Instance
                Expect.equal
                    (Vocabulary.tokenSet t 100 "f" [ "a"; "␣"; " "; "a"; ""; "<bos>"; "\\n" ])
                    [| 65; 0; 96; 95 |]
                    "pieces, text, duplicates once, empty lines skipped"
                Expect.throwsWith<UnknownTokenException>
                    [ "Line 2"; "ab" ]
                    (fun () -> Vocabulary.tokenSet t 100 "f" [ "a"; "ab" ] |> ignore)
                    "two characters"
                Expect.throwsWith<UnknownTokenException>
                    [ "é" ]
                    (fun () -> Vocabulary.tokenSet t 100 "f" [ "é" ] |> ignore)
                    "unknown character"
                Expect.throwsWith<MissingArgumentException>
                    [ "no tokens" ]
                    (fun () -> Vocabulary.tokenSet t 100 "f" [ ""; "" ] |> ignore)
                    "empty"
                Expect.throwsWith<IndexRangeException>
                    [ "0..99" ]
                    (fun () -> Bigrams.mass (toy64 ()) Readouts.embedding [| 100 |] SweepOptions.Default |> ignore)
                    "id out of range"
            }
        ]

// A wide-vocabulary, narrow net: its full table would be V² × 4 bytes = 1.6 GB in float32.
let private wideVocabulary () =
    SyntheticNets.gpt2Like 16 { SyntheticNets.small with Vocab = 20000; Width = 8; Blocks = 1 } torch.float32

let memory =
    testSequenced
    <| testList
        "sweep memory"
        [
            test "a streamed sweep's live tensors and peak memory are bounded by the batch size, not V²" {
                use net = wideVocabulary ()
                let maxLive = ref 0L
                let sampledRss = ref 0.0
                let progress =
                    { new IProgress<int64> with
                        member _.Report _ =
                            maxLive.Value <- max maxLive.Value (Tensors.liveCount ())
                            sampledRss.Value <- max sampledRss.Value (Memory.currentMb ())
                    }
                let run () =
                    Bigrams.globalTopK
                        net
                        (Readouts.mlpPath net 1)
                        50
                        { SweepOptions.Default with BatchSize = 256; Progress = Some progress }
                    |> ignore
                    Bigrams.mass
                        net
                        Readouts.embedding
                        [| 1; 2; 3 |]
                        { SweepOptions.Default with BatchSize = 256; Progress = Some progress }
                    |> ignore
                run ()
                GC.Collect()
                GC.WaitForPendingFinalizers()
                let before = Tensors.liveCount ()
                maxLive.Value <- 0L
                let rssBefore = Memory.currentMb ()
                sampledRss.Value <- rssBefore
                let exactPeak = Memory.resetPeak ()
                run ()
                let peakGrowth = (if exactPeak then Memory.peakMb () else sampledRss.Value) - rssBefore
                GC.Collect()
                GC.WaitForPendingFinalizers()
                // 79 batches per sweep: a leak per batch would add hundreds of handles.
                Expect.isLessThanOrEqual
                    (maxLive.Value - before)
                    20L
                    "live tensors during the sweep stay at a few per batch"
                Expect.isLessThanOrEqual (Tensors.liveCount ()) (before + 2L) "nothing left behind"
                // One batch is 256 × 20000 × 4 B = 20 MB; the full table would be 1600 MB.
                Expect.isLessThan peakGrowth 400.0 (sprintf "peak resident memory grew by %.0f MB" peakGrowth)
            }
        ]

[<Tests>]
let tests = testList "bigrams" [ paths; sweeps; mass; memory ]
