/// Readouts: paths as syntax (building, printing, the CLI grammar and its errors) and sweeps over any path, checked
/// against the expansion machinery's own order-0 paths on random networks and on every family's tiny checkpoint.
module Jet.Core.Tests.ReadoutTests

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Jet.Core
open Jet.Core.Apps
open Jet.Core.Models
open Jet.Core.Tests.TestKit
open Jet.Core.Tests.TestCheckpoints
open Jet.Core.Tests.FamilyCheckpoints

let private gpt () = SyntheticNets.gpt2Like 3 { SyntheticNets.small with Blocks = 3 } torch.float64

let private layers (steps: int list) = Readouts.ofLayers PathSource.Embedding steps

/// The same path through the expansion machinery: order-0 expansions at each layer around the previous path's jet
/// term, then the decoder, unembedded, plus the bias; on every token as its own one-token sequence. [V, V].
let private viaExpansions (net: Net) (readout: Readout) =
    match readout with
    | Readout.Path(source, steps) ->
        let start =
            match source with
            | PathSource.Embedding -> Centre.Embedding
            | PathSource.Encoder -> Centre.Encoder
        let centre =
            steps
            |> List.fold
                (fun centre step ->
                    match step with
                    | PathStep.Layer l -> Centre.Term(Expansion.atLayer l [ centre ] |> Expansion.withOrder 0, 0)
                    | PathStep.MlpBranch _
                    | PathStep.Head _ -> failwith "not expressible as an expansion")
                start
        let z = torch.arange(int64 net.Vocab, dtype = torch.int64).unsqueeze 1L
        use session = Expand.session net z
        let logits = session.Unembed(session.Expand(Expansion.atDecoder [ centre ] |> Expansion.withOrder 0))
        let path = logits.Paths.Head
        Expect.equal (string path.Path) (Print.readout readout) "the expansion's path name is the readout's notation"
        Decoder.capLogits logits.SoftCap (Decoder.addBias logits.Bias (path.Value.squeeze 1L))
    | Readout.Expansion _ -> failwith "paths only"

let private logitOptions = { SweepOptions.Default with Space = ScoreSpace.Logit; BatchSize = 7 }

/// Every swept row of `readout` equals the path evaluated directly on that token.
let private checkSweep (net: Net) (readout: Readout) =
    use _ = torch.NewDisposeScope()
    let expected = viaExpansions net readout
    let swept = Bigrams.full net readout logitOptions
    Expect.tensorClose Accuracy.Float64 swept expected (string readout)
    let first = torch.tensor ([| int64 (net.Vocab - 1); 0L; 3L |])
    let rows = Bigrams.scores net readout logitOptions first
    Expect.tensorClose Accuracy.Float64 rows (expected.index_select (0L, first)) "chosen rows"

/// A random increasing subset of 1..depth, from a bit mask.
let private subset (depth: int) (mask: int) =
    [
        for l in 1..depth do
            if (mask >>> (l - 1)) &&& 1 = 1 then
                yield l
    ]

let syntax =
    testList
        "readout paths"
        [
            test "print as the paper writes paths" {
                Expect.equal (string Readouts.embedding) "U·LN(Emb)" "E→U"
                Expect.equal (string Readouts.encoder) "U·LN(Enc)" "Enc→U"
                Expect.equal (string (layers [ 3; 6 ])) "U·LN(γ₆(γ₃(Emb)))" "two layers"
                Expect.equal
                    (string (Readouts.ofSteps PathSource.Encoder [ PathStep.MlpBranch 2 ]))
                    "U·LN(γ₂[mlp](Enc))"
                    "an MLP branch"
                let plan = Expansion.atDecoder [ Centre.Embedding ]
                Expect.equal
                    (string (Readouts.ofExpansion plan))
                    "U·[expand the decoder around {Emb} at order 1, uniform weights, Taylor]"
                    "an expansion"
            }

            test "the grammar reads names, numbers, shorthands and separators" {
                use net = gpt ()
                let read = Readouts.parse net
                Expect.equal (read "emb>attn2>mlp3") (layers [ 3; 6 ]) "names"
                Expect.equal (read " EMB > Attn2 > MLP3 > U ") (layers [ 3; 6 ]) "case, spaces, a closing U"
                Expect.equal (read "attn2>mlp3") (layers [ 3; 6 ]) "the source defaults to emb"
                Expect.equal (read "emb,γ3,g6") (layers [ 3; 6 ]) "numbers and commas"
                Expect.equal (read "emb→layer3→layer6") (layers [ 3; 6 ]) "arrows"
                Expect.equal (read "enc>mlp1") (Readouts.ofLayers PathSource.Encoder [ 2 ]) "encoder"
                Expect.equal (read "embed") Readouts.embedding "embed"
                Expect.equal (read "embedding") Readouts.embedding "embedding"
                Expect.equal (read "mlp:2") (layers [ 4 ]) "mlp:B"
                Expect.equal (read "attn:3") (layers [ 5 ]) "attn:B"
                Expect.equal
                    (Readouts.describe net (read "emb>attn2>mlp3"))
                    "U·LN(γ₆(γ₃(Emb))) (emb > attn2 > mlp3)"
                    "described with the layer names"
            }

            test "blocks of one layer: the toy's blocks and NeoX's parallel blocks" {
                use toy = Toy.create 0 8 torch.float64
                Expect.equal (Readouts.parse toy "mlp:2") (layers [ 2 ]) "the toy's block is its MLP"
                Expect.equal (Readouts.parse toy "emb>block1>block2") (layers [ 1; 2 ]) "by name"
                use neox = SyntheticNets.neoxLike 4 SyntheticNets.small torch.float64
                Expect.equal
                    (Readouts.parse neox "emb>block1>mlp2")
                    (Readouts.ofSteps PathSource.Embedding [ PathStep.Layer 1; PathStep.MlpBranch 2 ])
                    "a parallel block's MLP branch"
                Expect.throwsWith<InvalidPlanException>
                    [ "block 1"; "parallel block is one residual layer"; "block1" ]
                    (fun () -> Readouts.parse neox "attn1" |> ignore)
                    "a parallel block has no attention layer of its own"
                let steps = Readouts.stepsOf neox |> List.map (fun s -> s.Name, s.Notation)
                Expect.equal steps [ "block1", "γ₁"; "mlp1", "γ₁[mlp]"; "block2", "γ₂"; "mlp2", "γ₂[mlp]" ] "steps"
            }

            test "bad paths name what is wrong and the valid steps" {
                use net = gpt ()
                let valid = "attn1, mlp1, attn2, mlp2, attn3, mlp3"
                let fails (text: string) (parts: string list) =
                    Expect.throwsWith<JetException> parts (fun () -> Readouts.parse net text |> ignore) text
                fails "" [ "empty"; valid ]
                fails "   " [ "empty" ]
                fails "emb>>mlp1" [ "empty step" ]
                fails "emb>mlp1>" [ "empty step" ]
                fails "emb>attn9" [ "\"attn9\""; valid ]
                fails "emb>mlp2>attn1" [ "γ₁ (attn1) cannot follow γ₄ (mlp2)"; valid ]
                fails "emb>mlp1>mlp1" [ "cannot follow" ]
                fails "emb>γ7" [ "Residual layer 7"; "1..6" ]
                fails "emb>g0" [ "Residual layer 0" ]
                fails "emb>cat" [ "\"cat\"" ]
                fails "mlp:x" [ "\"mlpx\"" ]
                Expect.throwsWith<InvalidPlanException>
                    [ "not a parallel layer" ]
                    (fun () -> Readouts.check net (Readouts.ofSteps PathSource.Embedding [ PathStep.MlpBranch 2 ]))
                    "an MLP branch of a sequential layer"
                Expect.throwsWith<InvalidPlanException>
                    [ "decoder expansion"; "layer 2" ]
                    (fun () -> Readouts.check net (Readouts.ofExpansion (Expansion.atLayer 2 [ Centre.Embedding ])))
                    "a layer plan"
                Expect.throwsWith<IndexRangeException>
                    [ "Stream h_9" ]
                    (fun () -> Readouts.check net (Readouts.ofExpansion (Expansion.atDecoder [ Centre.Stream 9 ])))
                    "a plan's centres are checked before any sweep"
            }
        ]

let sweeps =
    testList
        "sweeps over any path"
        [
            test "attention layers on one token attend to themselves: the row is U·LN_f(W_O W_V LN(E[z]))" {
                // With one position, softmax weights are 1, so attention is its value-output map.
                use net = gpt ()
                checkSweep net (layers [ 1 ])
                checkSweep net (Readouts.ofLayers PathSource.Encoder [ 3; 4 ])
            }

            testPropertyWithConfig
                { propertyConfig with maxTest = 12 }
                "random paths of random small networks equal the expansion machinery's path"
            <| fun (seed: PositiveInt, mask: NonNegativeInt, kind: bool, encoder: bool, tied: bool) ->
                let shape = { SyntheticNets.small with Blocks = 1 + seed.Get % 3; Tied = tied; UnembedBias = not tied }
                use net =
                    if kind then
                        SyntheticNets.gpt2Like seed.Get shape torch.float64
                    else
                        SyntheticNets.neoxLike seed.Get shape torch.float64
                let source = if encoder then PathSource.Encoder else PathSource.Embedding
                checkSweep net (Readouts.ofLayers source (subset net.Depth mask.Get))

            test "random paths of every family's tiny checkpoint equal the expansion machinery's path" {
                let random = Random 7
                for _, make in CheckpointTests.families @ ModernFamilies.cases do
                    let case = make "F64"
                    use model = Model.load case.Dir torch.float64 torch.CPU
                    for _ in 1..3 do
                        let mask = random.Next(1 <<< model.Net.Depth)
                        let source =
                            if random.Next 2 = 0 then
                                PathSource.Embedding
                            else
                                PathSource.Encoder
                        checkSweep model.Net (Readouts.ofLayers source (subset model.Net.Depth mask))
            }

            test "an order-1 decoder expansion around the embedding, evaluated at h_L, sweeps like any readout" {
                use net = gpt ()
                let plan = Expansion.atDecoder [ Centre.Embedding ]
                let readout = Readouts.ofExpansion plan
                use table = Bigrams.full net readout logitOptions
                let z = torch.arange(int64 net.Vocab, dtype = torch.int64).unsqueeze 1L
                use session = Expand.session net z
                let logits = session.Unembed(session.Expand plan)
                let expected = Decoder.addBias logits.Bias (logits.Paths.Head.Value.squeeze 1L)
                Expect.tensorClose Accuracy.Float64 table expected "U·J¹LN(Emb)(h_L) + b"
                // The remainder is left out: the table is not the model's logits.
                Expect.isGreaterThan (maxAbsGap table (logits.Logits.squeeze 1L)) 1e-6 "an approximation, not the model"
            }
        ]

[<Tests>]
let tests = testList "readouts" [ syntax; sweeps ]
