/// Skip-grams per attention head and jet trigrams: each family's heads against an OV circuit written by hand from the
/// raw checkpoint tensors (grouped-query and fused layouts included), heads summing to their layer, streamed top-k
/// against brute force, trigram cells against the path evaluated directly, and uniform attention in closed form.
module Jet.Core.Tests.HeadNGramTests

open System
open Expecto
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps
open Jet.Core.Tests.TestKit
open Jet.Core.Tests.FamilyCheckpoints

let private close = Accuracy.Of(1e-9, 1e-9)

/// Float64 sweeps and the full tables differ by rounding only.
let private near (actual: float) (expected: float) (message: string) =
    if not (abs (actual - expected) <= 1e-9 + 1e-9 * abs expected) then
        failtestf "%s: %.17g differs from %.17g" message actual expected

let private allNear (actual: float[]) (expected: float[]) (message: string) =
    Expect.equal actual.Length expected.Length (message + ": count")
    Array.iteri2 (fun i a e -> near a e (sprintf "%s, rank %d" message (i + 1))) actual expected

let private attentionOf (net: Net) (l: int) = snd (AttentionHeads.branchOf net.Spec.Layers.[l - 1]).Value

/// The first residual layer of block `block` that has attention.
let private attentionLayer (net: Net) (block: int) =
    Net.layersOfBlock block net |> List.find (fun l -> AttentionHeads.headCount net l > 0)

/// The checkpoint tensor of block `block` (1-based) whose name ends with `suffix` after the block index.
let private raw (case: FamilyCase) (block: int) (suffix: string) =
    let ending = sprintf ".%d.%s" (block - 1) suffix
    match case.Weights |> Map.toList |> List.tryFind (fun (name, _) -> name.EndsWith ending) with
    | Some(_, t) -> t
    | None -> failwithf "%s has no tensor ending in %s" case.Name ending

let private rawOption (case: FamilyCase) (block: int) (suffix: string) =
    let ending = sprintf ".%d.%s" (block - 1) suffix
    case.Weights |> Map.toList |> List.tryFind (fun (name, _) -> name.EndsWith ending) |> Option.map snd

/// Head h's output W_O,h·v_h(x) for normed inputs x [n, d], from the raw tensors in each family's layout.
let private handHead (case: FamilyCase) (a: Attention) (block: int) (h: int) (x: Tensor) =
    let dh = int64 a.HeadDim
    let slice (t: Tensor) (dim: int64) (i: int) = t.narrow (dim, int64 i * dh, dh)
    let kv = (h - 1) / (a.Heads / a.KvHeads)
    if case.Weights |> Map.exists (fun name _ -> name.EndsWith "attn.c_attn.weight") then
        // GPT-2: Conv1D weights [in, out], blocked [q | k | v] columns.
        let d = x.shape.[1]
        let w, b = raw case block "attn.c_attn.weight", raw case block "attn.c_attn.bias"
        let v = x.matmul (w.narrow (1L, 2L * d, d)) + b.narrow (0L, 2L * d, d)
        (slice v 1L (h - 1)).matmul (slice (raw case block "attn.c_proj.weight") 0L (h - 1))
    elif case.Weights |> Map.exists (fun name _ -> name.EndsWith "attention.query_key_value.weight") then
        // GPT-NeoX: nn.Linear [3d, d], rows grouped per head as [q_h; k_h; v_h].
        let qkv =
            x.matmul ((raw case block "attention.query_key_value.weight").t ())
            + raw case block "attention.query_key_value.bias"
        let v =
            qkv.reshape(x.shape.[0], int64 a.Heads, 3L * dh).select(1L, int64 (h - 1)).narrow (1L, 2L * dh, dh)
        v.matmul ((slice (raw case block "attention.dense.weight") 1L (h - 1)).t ())
    elif case.Weights |> Map.exists (fun name _ -> name.EndsWith "attn.attention.v_proj.weight") then
        // GPT-Neo: separate nn.Linear projections without biases.
        let v = x.matmul ((raw case block "attn.attention.v_proj.weight").t ())
        (slice v 1L (h - 1)).matmul ((slice (raw case block "attn.attention.out_proj.weight") 1L (h - 1)).t ())
    else
        // Llama and its descendants: v_proj [kv·dh, d] (a bias in Qwen2), query head h reads KV head ⌊h / group⌋.
        let v = x.matmul ((raw case block "self_attn.v_proj.weight").t ())
        let v =
            match rawOption case block "self_attn.v_proj.bias" with
            | Some b -> v + b
            | None -> v
        (slice v 1L kv).matmul ((slice (raw case block "self_attn.o_proj.weight") 1L (h - 1)).t ())

/// The input the attention of layer l reads: its branch's pre-norm applied to the embedded tokens [n, 1, d].
let private preNormed (net: Net) (l: int) (embedded: Tensor) =
    match fst (AttentionHeads.branchOf net.Spec.Layers.[l - 1]).Value with
    | Chain(norm :: Attention _ :: _) -> Forward.apply net.Parameters norm embedded
    | other -> failwithf "unexpected attention branch %O" other

let private tokens (net: Net) = torch.tensor ([| 0L; 1L; 5L; int64 net.Vocab - 1L |])

let familyTests =
    testList
        "skip-grams of every family's heads"
        [
            for name, make in CheckpointTests.families do
                test (sprintf "%s: each head's path equals W_O,h·v_h by hand from the raw tensors" name) {
                    let case = make "F64"
                    use model = CheckpointTests.load case.Dir torch.float64
                    let net = model.Net
                    use _ = torch.NewDisposeScope()
                    let first = tokens net
                    let embedded = Trace.embed net (first.unsqueeze 1L)
                    for block in 1 .. net.Spec.BlockCount do
                        let l = attentionLayer net block
                        let a = attentionOf net l
                        let x = (preNormed net l embedded).squeeze 1L
                        for h in 1 .. a.Heads do
                            let expected = Decoder.normalize net (handHead case a block h x)
                            Expect.tensorClose
                                close
                                (SkipGrams.normedRows net l h first)
                                expected
                                (sprintf "LN_f(OV%d,%d(Emb))" l h)
                            Expect.tensorClose
                                close
                                (Readouts.normedRows net (Readouts.parse net (sprintf "emb>γ%d.h%d" l h)) first)
                                expected
                                (sprintf "the parsed path emb>γ%d.h%d" l h)
                }
                test (sprintf "%s: the heads of a layer plus the output bias are its attention on one token" name) {
                    let case = make "F64"
                    use model = CheckpointTests.load case.Dir torch.float64
                    let net = model.Net
                    use _ = torch.no_grad ()
                    use _ = torch.NewDisposeScope()
                    let embedded = Trace.embed net ((tokens net).unsqueeze 1L)
                    for block in 1 .. net.Spec.BlockCount do
                        let l = attentionLayer net block
                        let a = attentionOf net l
                        let heads = [| 1 .. a.Heads |]
                        let stacked = Forward.apply net.Parameters (AttentionHeads.branch net l heads) embedded
                        let summed = stacked.view(int64 a.Heads, embedded.shape.[0], 1L, -1L).sum (0L)
                        let summed =
                            match a.Output.Bias with
                            | Some b -> summed + net.Parameters.[b]
                            | None -> summed
                        let whole =
                            Forward.apply
                                net.Parameters
                                (fst (AttentionHeads.branchOf net.Spec.Layers.[l - 1]).Value)
                                embedded
                        Expect.tensorClose close summed whole (sprintf "Σ heads of layer %d" l)
                }
        ]

let private llama () =
    let case = CheckpointTests.families |> List.find (fun (n, _) -> n = "llama") |> snd
    let case = case "F64"
    case, CheckpointTests.load case.Dir torch.float64

let sweepTests =
    testList
        "skip-gram and trigram sweeps"
        [
            test "skip-gram global and row top-k equal brute force over the full table, every head" {
                let _, model = llama ()
                use model = model
                let net = model.Net
                let l = attentionLayer net 2
                let heads = AttentionHeads.headCount net l
                for space in [ ScoreSpace.Probability; ScoreSpace.Logit ] do
                    let options = { SweepOptions.Default with Space = space; BatchSize = 7 }
                    let found = SkipGrams.globalTopK net l [||] 6 options
                    let rows = SkipGrams.rowTopK net l [||] 3 options
                    Expect.equal found.Length heads "one table per head"
                    for h in 1..heads do
                        use _ = torch.NewDisposeScope()
                        use table = Bigrams.full net (SkipGrams.readout l h) options
                        let struct (values, _) = table.flatten().topk 6
                        let expected = values.data<float>().ToArray()
                        let got = found.[h - 1].Pairs |> Array.map (fun p -> p.Score)
                        allNear got expected (sprintf "global top-6 of head %d" h)
                        for p in found.[h - 1].Pairs do
                            near p.Score (table.[int64 p.From, int64 p.To].item<float> ()) "a pair's score is its cell"
                        let struct (rowValues, _) = table.topk (3, dim = 1)
                        Expect.tensorClose close rows.[h - 1].Best.Scores rowValues (sprintf "row top-3 of head %d" h)
                        (rows.[h - 1] :> IDisposable).Dispose()
            }
            test "the head ranking's copying and set mass are the diagonal and set sums of the full tables" {
                let _, model = llama ()
                use model = model
                let net = model.Net
                let set = [| 2; 3; 9; 10 |]
                let scores = SkipGrams.rank net [||] set { SweepOptions.Default with BatchSize = 3 }
                let layers = SkipGrams.attentionLayers net
                Expect.equal scores.Length (layers |> Array.sumBy (AttentionHeads.headCount net)) "every head ranked"
                for s in scores do
                    use _ = torch.NewDisposeScope()
                    use table = Bigrams.full net (SkipGrams.readout s.Layer s.Head) SweepOptions.Default
                    let ids = torch.tensor (set |> Array.map int64)
                    let rows = table.index_select (0L, ids)
                    let copying = rows.gather(1L, ids.unsqueeze 1L).mean().item<float> ()
                    let mass = rows.index_select(1L, ids).sum(1L).mean().item<float> ()
                    near s.Copying copying "copying"
                    near s.SetMass mass "set mass"
            }
            test "trigram cells equal the path evaluated directly on [z₁, z₂], for every family" {
                for name, make in CheckpointTests.families do
                    let case = make "F64"
                    use model = CheckpointTests.load case.Dir torch.float64
                    let net = model.Net
                    use _ = torch.no_grad ()
                    use _ = torch.NewDisposeScope()
                    let last = (List.last (Readouts.stepsOf net)).Name
                    let everyLayer =
                        Readouts.stepsOf net
                        |> List.filter (fun s ->
                            match s.Step with
                            | PathStep.Layer _ -> true
                            | _ -> false)
                        |> List.map (fun s -> s.Name)
                    for text in [ "emb>" + last; sprintf "enc>γ1.h2>%s" last; "emb>" + String.Join(">", everyLayer) ] do
                        let path = Readouts.parse net text
                        if
                            (try
                                Trigrams.check net path |> ignore
                                true
                             with :? InvalidPlanException ->
                                 false)
                        then
                            let first, second = [| 0; 3; net.Vocab - 1 |], [| 1; 2; 4; 0 |]
                            let shared =
                                Trigrams.scores
                                    net
                                    path
                                    { SweepOptions.Default with Space = ScoreSpace.Logit }
                                    first
                                    second
                            let pairs =
                                [|
                                    for a in first do
                                        for b in second -> a, b
                                |]
                            let z1 = torch.tensor (pairs |> Array.map (fst >> int64))
                            let z2 = torch.tensor (pairs |> Array.map (snd >> int64))
                            let direct = Decoder.logits net (Trigrams.directRows net path z1 z2)
                            Expect.tensorClose close shared direct (sprintf "%s, %s" name text)
            }
            test "streamed trigram top-k equals brute force, in chunks and in blocks of several first tokens" {
                let _, model = llama ()
                use model = model
                let net = model.Net
                let path = Readouts.parse net "emb>attn1>mlp1>attn2"
                let first, second = [| 5; 0; 7 |], [| 1..9 |]
                for batch in [ 4; 20 ] do
                    for space in [ ScoreSpace.Probability; ScoreSpace.Logit ] do
                        let options = { SweepOptions.Default with Space = space; BatchSize = batch }
                        use _ = torch.NewDisposeScope()
                        let table = Trigrams.scores net path options first second
                        let found = Trigrams.globalTopK net path first second 5 options
                        let struct (values, _) = table.flatten().topk 5
                        let expected = values.data<float>().ToArray()
                        allNear
                            (found |> Array.map (fun t -> t.Score))
                            expected
                            (sprintf "global top-5, batch %d" batch)
                        for t in found do
                            let row = (Array.IndexOf(first, t.First)) * second.Length + Array.IndexOf(second, t.Second)
                            near t.Score (table.[int64 row, int64 t.Next].item<float> ()) "a triple's score is its cell"
                        use rows = Trigrams.rowTopK net path first second 2 options
                        let struct (rowValues, _) = table.topk (2, dim = 1)
                        Expect.tensorClose close rows.Best.Scores rowValues (sprintf "row top-2, batch %d" batch)
            }
            test "with attention forced uniform, the trigram row is LN_f of the mean of the two one-token updates" {
                let _, model = llama ()
                use model = model
                let net = model.Net
                let a = attentionOf net 1
                match a.Projections with
                | Projections.Separate(q, _, _) -> net.Parameters.[q.Weight].zero_ () |> ignore
                | other -> failtestf "unexpected projections %A" other
                use _ = torch.no_grad ()
                use _ = torch.NewDisposeScope()
                let path = Readouts.parse net "emb>attn1"
                let first, second = [| 0; 4; 11 |], [| 2; 4; 30 |]
                let shared =
                    Trigrams.scores net path { SweepOptions.Default with Space = ScoreSpace.Logit } first second
                // Zero queries give equal scores, so position 2 averages the values of both tokens; the output
                // projection is affine, so the result is the mean of each token's update alone.
                let oneToken (ids: int[]) =
                    Readouts.applyStep
                        net
                        (PathStep.Layer 1)
                        (Trace.embed net (torch.tensor(ids |> Array.map int64).unsqueeze 1L))
                let u1, u2 = oneToken first, oneToken second
                let mean = ((u1.unsqueeze 1L + u2.unsqueeze 0L) / 2.0).reshape (-1L, 1L, int64 net.Width)
                let expected = Decoder.logits net ((Decoder.normalize net mean).squeeze 1L)
                Expect.tensorClose close shared expected "uniform attention"
            }
            test "trigram sweeps refuse paths without attention and drop-diagonal; head steps parse and print" {
                let _, model = llama ()
                use model = model
                let net = model.Net
                Expect.throwsT<InvalidPlanException>
                    (fun () -> Trigrams.check net (Readouts.parse net "emb>mlp1") |> ignore)
                    "no attention"
                Expect.throwsT<InvalidPlanException>
                    (fun () ->
                        Trigrams.globalTopK
                            net
                            (Readouts.parse net "emb>attn1")
                            [| 1 |]
                            null
                            3
                            { SweepOptions.Default with DropDiagonal = true }
                        |> ignore)
                    "drop-diagonal"
                Expect.throwsT<IndexRangeException>
                    (fun () -> Readouts.parse net "emb>attn1.h99" |> ignore)
                    "head out of range"
                Expect.throwsT<InvalidPlanException>
                    (fun () -> Readouts.parse net "emb>mlp1.h1" |> ignore)
                    "an MLP has no heads"
                Expect.equal (string (Readouts.parse net "attn2.h3")) "U·LN(OV₃,₃(Emb))" "head notation"
            }
        ]

[<Tests>]
let tests = testList "head n-grams" [ familyTests; sweepTests ]
