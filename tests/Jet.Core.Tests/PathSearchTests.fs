/// Path search (issue 13): the bookkeeping Σ paths + interaction + constant = target on every family and on
/// stories260K, the search against brute-force enumeration, its options and its errors.
module Jet.Core.Tests.PathSearchTests

open System
open Expecto
open TorchSharp
open Jet.Core
open Jet.Core.Apps
open Jet.Core.Models

let private prompt (vocab: int) (length: int) (seed: int) =
    let random = Random seed
    let ids = [| for _ in 1..length -> int64 (random.Next vocab) |]
    torch.tensor(ids, dtype = torch.int64).unsqueeze 0L

/// The model's own logits at `position` of `tokens` [1, seq], computed by a plain forward pass.
let private logitsAt (net: Net) (tokens: Tensor) (position: int) =
    use trace = Trace.run net tokens
    (Trace.logits trace).[0, int64 position].data<float>().ToArray()

/// Σ every path + interaction + constant = target, and the target is the model's own value.
let private checkIdentity (what: string) (net: Net) (tokens: Tensor) (target: PathTarget) (expected: float) =
    let d = PathSearch.decompose net tokens target PathLayers.All None
    Expect.equal d.Paths.Length (1 <<< net.Depth) (sprintf "%s: every one of the 2^L paths" what)
    let total = (d.Paths |> List.sumBy snd) + d.Interaction + d.Constant
    let scale = 1.0 + (d.Paths |> List.sumBy (snd >> abs)) + abs d.Interaction + abs d.Constant
    Expect.isLessThan (abs (total - d.Target)) (1e-10 * scale) (sprintf "%s: Σ paths + interaction + constant" what)
    Expect.isLessThan (abs (d.Target - expected)) (1e-10 * (1.0 + abs expected)) (sprintf "%s: the target" what)

/// The search's paths equal the brute-force top paths (by |contribution|) when it reports itself exact, and every
/// listed contribution is the brute-force contribution of that path whether exact or not.
let private checkAgainstBruteForce (what: string) (net: Net) (tokens: Tensor) (target: PathTarget) (beam: int) =
    let top = 8
    let options = { PathSearchOptions.Default with Top = top; Beam = beam }
    let result = PathSearch.search net tokens target options
    let brute = PathSearch.decompose net tokens target PathLayers.All None
    let byPath = dict brute.Paths
    for p in result.Paths do
        Expect.floatClose
            Accuracy.high
            p.Contribution
            byPath.[p.Steps]
            (sprintf "%s: %s against enumeration" what p.Notation)
    Expect.equal result.TotalPaths (float (1 <<< net.Depth)) (sprintf "%s: 2^L paths" what)
    Expect.floatClose Accuracy.high result.Carried (brute.Target - brute.Constant) (sprintf "%s: carried" what)
    if result.Exact then
        let expected = brute.Paths |> List.sortByDescending (snd >> abs) |> List.truncate top
        Expect.sequenceEqual
            (result.Paths |> List.map (fun p -> p.Steps))
            (expected |> List.map fst)
            (sprintf "%s: the exact search lists the brute-force top %d" what top)
    result

let private familyTests =
    testList
        "every family"
        [
            test "Σ of all 2^L paths + interaction + constant = target, and the exact search equals brute force" {
                for name, make in CheckpointTests.families @ ModernFamilies.cases do
                    let case = make "F64"
                    use model = Model.load case.Dir torch.float64 torch.CPU
                    let net = model.Net
                    use tokens = torch.tensor(CheckpointTests.tokens, dtype = torch.int64).unsqueeze 0L
                    let p = CheckpointTests.tokens.Length - 1
                    let logits = logitsAt net tokens p
                    let top = Array.IndexOf(logits, Array.max logits)
                    let logProb =
                        let m = Array.max logits
                        logits.[top] - (m + log (logits |> Array.sumBy (fun z -> exp (z - m))))
                    checkIdentity (name + ", token") net tokens (PathTarget.Token 5) logits.[5]
                    checkIdentity (name + ", diff") net tokens (PathTarget.Difference(2, 7)) (logits.[2] - logits.[7])
                    checkIdentity (name + ", top") net tokens PathTarget.TopLogProb logProb
                    let result = checkAgainstBruteForce name net tokens (PathTarget.Token 5) (1 <<< net.Depth)
                    Expect.isTrue result.Exact (sprintf "%s: a beam of 2^L prunes nothing" name)
            }
        ]

let private stories () = Model.load (Jet.Tests.Fixtures.path [ "stories260K" ]) torch.float64 torch.CPU

let private storiesTests =
    testList
        "stories260K"
        [
            test "the bookkeeping holds on its 10 residual layers, and the exact search equals brute force" {
                use model = stories ()
                use tokens = Model.encode model "Once upon a time there was a little girl"
                let p = int tokens.shape.[1] - 1
                let logits = logitsAt model.Net tokens p
                checkIdentity "stories260K" model.Net tokens (PathTarget.Token 42) logits.[42]
                let exact = checkAgainstBruteForce "stories260K" model.Net tokens PathTarget.TopLogProb 512
                Expect.isTrue exact.Exact "a beam of 512 prunes nothing on 10 layers"
                let narrow = checkAgainstBruteForce "stories260K" model.Net tokens PathTarget.TopLogProb 4
                Expect.isFalse narrow.Exact "a beam of 4 prunes"
                Expect.isGreaterThan narrow.Pruned 0L "pruned prefixes are counted"
                Expect.isLessThan narrow.Evaluated exact.Evaluated "a narrow beam evaluates fewer prefixes"
                Expect.isLessThanOrEqual exact.Evaluated 1023L "each path but Enc is one evaluation"
            }
        ]

let private randomNetTests =
    testList
        "random DSL networks"
        [
            test "L = 2..12: the exact search equals brute force; a narrow beam lists true contributions" {
                for blocks in 1..6 do
                    for kind in [ "gpt2"; "neox" ] do
                        let seed = 100 + blocks
                        let shape = { SyntheticNets.small with Blocks = blocks }
                        use net =
                            if kind = "gpt2" then
                                SyntheticNets.gpt2Like seed shape torch.float64
                            else
                                SyntheticNets.neoxLike seed shape torch.float64
                        use tokens = prompt net.Vocab 6 seed
                        let what = sprintf "%s, L = %d" kind net.Depth
                        let logits = logitsAt net tokens 5
                        checkIdentity what net tokens (PathTarget.Difference(1, 2)) (logits.[1] - logits.[2])
                        let full = checkAgainstBruteForce what net tokens (PathTarget.Token 3) (1 <<< net.Depth)
                        Expect.isTrue full.Exact (what + ": nothing pruned")
                        checkAgainstBruteForce what net tokens (PathTarget.Token 3) 3 |> ignore
            }

            test "restrictions: attention or MLP steps only, a maximum length, a custom target" {
                use net = SyntheticNets.gpt2Like 5 { SyntheticNets.small with Blocks = 3 } torch.float64
                use tokens = prompt net.Vocab 5 5
                let search layers maxLength =
                    PathSearch.search
                        net
                        tokens
                        (PathTarget.Token 4)
                        { PathSearchOptions.Default with Top = 100; Beam = 100; Layers = layers; MaxLength = maxLength }
                let kindOf (s: PathStep) =
                    match s with
                    | PathStep.Layer l
                    | PathStep.MlpBranch l
                    | PathStep.Head(l, _) -> net.Spec.Layers.[l - 1].Kind
                let attention = search PathLayers.Attention None
                Expect.equal attention.Paths.Length 8 "2^3 paths through the 3 attention layers"
                for p in attention.Paths do
                    Expect.all p.Steps (fun s -> kindOf s = LayerKind.Attention) "attention steps only"
                let mlp = search PathLayers.Mlp None
                for p in mlp.Paths do
                    Expect.all p.Steps (fun s -> kindOf s = LayerKind.Mlp) "MLP steps only"
                let short = search PathLayers.All (Some 2)
                Expect.equal short.TotalPaths (1.0 + 6.0 + 15.0) "C(6,0) + C(6,1) + C(6,2)"
                Expect.equal short.Paths.Length 22 "every path of at most 2 steps"
                Expect.all short.Paths (fun p -> p.Steps.Length <= 2) "at most 2 steps"
                let all = search PathLayers.All None
                Expect.floatClose
                    Accuracy.high
                    (all.Paths |> List.sumBy (fun p -> p.Contribution))
                    (all.Carried
                     - (PathSearch.decompose net tokens (PathTarget.Token 4) PathLayers.All None).Interaction)
                    "all 64 paths add up to what they carry, less the interaction"
                Expect.floatClose
                    Accuracy.high
                    (List.last all.Paths).CumulativeShare
                    (1.0 - all.Remainder / all.Carried)
                    "shares"
                let custom =
                    PathSearch.search
                        net
                        tokens
                        (PathTarget.Custom { Name = "3·logit 4"; Apply = fun z -> z.[4L] * 3.0 })
                        { PathSearchOptions.Default with Top = 100; Beam = 100 }
                for a, b in List.zip all.Paths custom.Paths do
                    Expect.floatClose Accuracy.high b.Contribution (3.0 * a.Contribution) "a linear custom target"
            }

            test "errors name the valid range" {
                use net = SyntheticNets.gpt2Like 5 SyntheticNets.small torch.float64
                use tokens = prompt net.Vocab 4 1
                let options = PathSearchOptions.Default
                Expect.throwsT<IndexRangeException>
                    (fun () ->
                        PathSearch.search net tokens (PathTarget.Token 4) { options with Position = Some 4 } |> ignore)
                    "position past the prompt"
                Expect.throwsT<IndexRangeException>
                    (fun () -> PathSearch.search net tokens (PathTarget.Token 50) options |> ignore)
                    "token outside the vocabulary"
                Expect.throwsT<IndexRangeException>
                    (fun () -> PathSearch.search net tokens (PathTarget.Token 4) { options with Beam = 0 } |> ignore)
                    "beam 0"
                Expect.throwsT<ShapeMismatchException>
                    (fun () ->
                        PathSearch.search net tokens (PathTarget.Custom { Name = "all"; Apply = id }) options |> ignore)
                    "a custom target must return one number"
            }
        ]

[<Tests>]
let tests = testList "path search" [ familyTests; storiesTests; randomNetTests ]
