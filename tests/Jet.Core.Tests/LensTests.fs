/// The jet lenses: identities against hand-computed logit lenses, metrics against brute force, the joint lens's
/// fit, bad input and memory.
module Jet.Core.Tests.LensTests

open System
open Expecto
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps
open Jet.Core.Tests.TestKit

let private toy64 () = Toy.create 3 12 torch.float64
let private gpt64 () = SyntheticNets.gpt2Like 5 SyntheticNets.small torch.float64
let private tiedGpt64 () =
    SyntheticNets.gpt2Like 6 { SyntheticNets.small with Tied = true; UnembedBias = false } torch.float64

let private tokens (ids: int64 list) = torch.tensor(Array.ofList ids, dtype = torch.int64).unsqueeze 0L

// Final norm and unembedding written by hand from the parameters (libtorch's layer_norm, not the DSL's).
let private handDecoder (net: Net) (h: Tensor) =
    let p (name: string) = net.Parameters.[name]
    let d = int64 net.Width
    let lnW, lnB =
        (match net.Spec.FinalNorm with
         | LayerNorm n -> p n.Weight.Value, p n.Bias.Value
         | other -> failwithf "unexpected %O" other)
    let normed = torch.nn.functional.layer_norm (h, [| d |], lnW, lnB, 1e-5)
    let raw = normed.matmul (p(net.Spec.Unembedding.Weight).t ())
    match net.Spec.Unembedding.Bias with
    | Some b -> raw + p b
    | None -> raw

let private nets = [ "toy", toy64; "gpt2-like (untied, bias)", gpt64; "gpt2-like (tied)", tiedGpt64 ]

let identities =
    testList
        "iterative lens identities"
        [
            for name, make in nets do
                test (sprintf "%s: order 0 is the logit lens U·LN_f(h_l) at every stream" name) {
                    use net = make ()
                    let z = tokens [ 3L; 17L; 4L; 9L; 1L ]
                    use result = IterativeLens.run net z LensOptions.Default
                    use trace = Trace.run net z
                    Expect.equal
                        (result.Streams |> List.map (fun l -> l.Stream))
                        [ 0 .. net.Depth ]
                        "every stream by default"
                    for stream in result.Streams do
                        Expect.tensorClose
                            Accuracy.Float64
                            stream.Logits
                            (handDecoder net (trace.Stream stream.Stream))
                            (sprintf "stream %d" stream.Stream)
                        Expect.tensorClose
                            Accuracy.Float64
                            stream.Logits
                            (IterativeLens.logitLens net z stream.Stream)
                            (sprintf "logitLens at stream %d" stream.Stream)
                }

                test (sprintf "%s: in float32, order 0 is bitwise the direct logit lens" name) {
                    use original = make ()
                    use net = Net.toDType torch.float32 original
                    let z = tokens [ 1L; 5L; 7L; 9L ]
                    use result = IterativeLens.run net z LensOptions.Default
                    for stream in result.Streams do
                        let direct = IterativeLens.logitLens net z stream.Stream
                        Expect.isTrue
                            (stream.Logits.eq(direct).all().item<bool> ())
                            (sprintf "stream %d: equal bit for bit" stream.Stream)
                }

                test (sprintf "%s: the lens at h_L equals the model's logits at orders 0, 1, 2" name) {
                    use net = make ()
                    let z = tokens [ 8L; 2L; 30L ]
                    use trace = Trace.run net z
                    let expected = handDecoder net (trace.Stream net.Depth)
                    for order in [ 0; 1; 2 ] do
                        use result =
                            IterativeLens.run net z { LensOptions.Default with Streams = [ net.Depth ]; Order = order }
                        Expect.tensorClose
                            Accuracy.Float64
                            result.Streams.Head.Logits
                            expected
                            (sprintf "order %d" order)
                        Expect.tensorClose Accuracy.Float64 result.Logits expected "the model's logits"
                        let a = result.Streams.Head.Agreement
                        Expect.tensorClose Accuracy.Float64 a.Cosine (torch.ones_like a.Cosine) "cosine 1"
                        Expect.isLessThan (a.Kl.abs().max().item<float> ()) 1e-12 "KL 0"
                        Expect.tensorClose Accuracy.Float64 a.Top1 (torch.ones_like a.Top1) "top-1 agrees"
                        Expect.tensorClose
                            Accuracy.Float64
                            a.TopKOverlap
                            (torch.ones_like a.TopKOverlap)
                            "top-k overlaps fully"
                }

                test (sprintf "%s: order 1 is U·(LN_f(h_l) + D LN_f(h_l)[h_L − h_l]) (central differences)" name) {
                    use net = make ()
                    let z = tokens [ 5L; 11L; 2L; 40L ]
                    use trace = Trace.run net z
                    use result = IterativeLens.run net z { LensOptions.Default with Streams = [ 0; 1 ]; Order = 1 }
                    let normed (x: Tensor) = Forward.apply net.Parameters net.Spec.FinalNorm x
                    for stream in result.Streams do
                        let c = trace.Stream stream.Stream
                        let v = trace.Stream net.Depth - c
                        let eps = 1e-5
                        let derivative = (normed (c + eps * v) - normed (c - eps * v)) / (2.0 * eps)
                        let raw = (normed c + derivative).matmul (net.Parameters.[net.Spec.Unembedding.Weight].t ())
                        let expected =
                            match net.Spec.Unembedding.Bias with
                            | Some b -> raw + net.Parameters.[b]
                            | None -> raw
                        Expect.tensorClose
                            (Accuracy.Of(1e-6, 1e-6))
                            stream.Logits
                            expected
                            (sprintf "stream %d" stream.Stream)
                }
        ]

let metrics =
    testList
        "logit agreement metrics"
        [
            test "cosine, KL, top-1 and top-k overlap equal brute-force values" {
                let approx, truth = randn 21 [ 2L; 3L; 12L ], randn 22 [ 2L; 3L; 12L ]
                let k = 4
                let a = LogitMetrics.compare k approx truth
                for b in 0..1 do
                    for s in 0..2 do
                        let x = approx.[int64 b, int64 s].data<float>().ToArray()
                        let y = truth.[int64 b, int64 s].data<float>().ToArray()
                        let dot = Array.map2 (*) x y |> Array.sum
                        let cos = dot / sqrt (Array.sumBy (fun v -> v * v) x * Array.sumBy (fun v -> v * v) y)
                        let softmax (u: float[]) =
                            let m = Array.max u in
                            let e = u |> Array.map (fun v -> exp (v - m)) in
                            let s = Array.sum e in
                            e |> Array.map (fun v -> v / s)
                        let p, q = softmax y, softmax x
                        let kl = Array.map2 (fun pi qi -> pi * log (pi / qi)) p q |> Array.sum
                        let topOf (u: float[]) =
                            u
                            |> Array.indexed
                            |> Array.sortByDescending snd
                            |> Array.take k
                            |> Array.map fst
                            |> Set.ofArray
                        let argmax (u: float[]) = u |> Array.indexed |> Array.maxBy snd |> fst
                        let at (t: Tensor) = t.[int64 b, int64 s].item<float> ()
                        Expect.floatClose Accuracy.high (at a.Cosine) cos "cosine"
                        Expect.floatClose Accuracy.high (at a.Kl) kl "KL(true ‖ approx)"
                        Expect.equal (at a.Top1) (if argmax x = argmax y then 1.0 else 0.0) "top-1 agreement"
                        Expect.floatClose
                            Accuracy.high
                            (at a.TopKOverlap)
                            (float (Set.intersect (topOf x) (topOf y)).Count / float k)
                            "top-k overlap"
            }

            test "top tokens are ranked best first with their pieces" {
                let logits = torch.tensor([| 0.1; 3.0; -1.0; 2.0 |], dtype = torch.float64).unsqueeze 0L
                let best = LogitMetrics.top CharTokenizer.Instance 2 logits
                Expect.equal (best.[0] |> Array.map (fun r -> r.Id, r.Token)) [| 1, "!"; 3, "#" |] "ids and pieces"
                Expect.equal best.[0].[0].Score 3.0 "score"
            }

            test "k outside 1..vocab is rejected" {
                let x = randn 1 [ 1L; 2L; 5L ]
                Expect.throwsWith<IndexRangeException>
                    [ "1 ≤ k ≤ 5" ]
                    (fun () -> LogitMetrics.compare 6 x x |> ignore)
                    "k too large"
            }
        ]

let badInput =
    testList
        "lens input checks"
        [
            test "streams outside 0..L name the valid range" {
                use net = toy64 ()
                Expect.throwsWith<IndexRangeException>
                    [ "h_3"; "h_0..h_2" ]
                    (fun () ->
                        IterativeLens.run net (tokens [ 1L ]) { LensOptions.Default with Streams = [ 0; 3 ] } |> ignore)
                    "stream 3"
                Expect.throwsWith<IndexRangeException>
                    [ "h_-1" ]
                    (fun () ->
                        IterativeLens.run net (tokens [ 1L ]) { LensOptions.Default with Streams = [ -1 ] } |> ignore)
                    "stream -1"
            }
            test "a negative order and repeated streams are rejected" {
                use net = toy64 ()
                Expect.throwsWith<InvalidOrderException>
                    [ "The lens order must be an integer in 0..64"; "got -1" ]
                    (fun () -> IterativeLens.run net (tokens [ 1L ]) { LensOptions.Default with Order = -1 } |> ignore)
                    "order"
                Expect.throwsWith<InvalidPlanException>
                    [ "repeat" ]
                    (fun () ->
                        IterativeLens.run net (tokens [ 1L ]) { LensOptions.Default with Streams = [ 1; 1 ] } |> ignore)
                    "repeats"
            }
            test "token ids outside the vocabulary are rejected before indexing" {
                use net = toy64 ()
                Expect.throwsWith<IndexRangeException>
                    [ "0..99" ]
                    (fun () -> IterativeLens.run net (tokens [ 1L; 100L ]) LensOptions.Default |> ignore)
                    "id 100"
            }
            test "the joint lens needs increasing streams, iterations ≥ 0 and a positive learning rate" {
                use net = toy64 ()
                let z = tokens [ 1L; 2L ]
                Expect.throwsWith<InvalidPlanException>
                    [ "strictly increasing" ]
                    (fun () -> JointLens.fit net z { JointLensOptions.Default with Streams = [ 2; 1 ] } |> ignore)
                    "order"
                Expect.throwsWith<InvalidPlanException>
                    [ "iterations" ]
                    (fun () -> JointLens.fit net z { JointLensOptions.Default with Iterations = -1 } |> ignore)
                    "iterations"
                Expect.throwsWith<InvalidPlanException>
                    [ "learning rate" ]
                    (fun () -> JointLens.fit net z { JointLensOptions.Default with LearningRate = 0.0 } |> ignore)
                    "lr"
            }
        ]

let joint =
    testList
        "joint lens"
        [
            for name, make in nets do
                test (sprintf "%s: Adam lowers the logit-space loss; weights are a softmax over centres" name) {
                    use net = make ()
                    let z = tokens [ 3L; 14L; 15L; 9L; 2L; 6L ]
                    use result =
                        JointLens.fit
                            net
                            z
                            { JointLensOptions.Default with Order = 1; Iterations = 60; LearningRate = 0.05 }
                    Expect.equal result.Losses.Length 61 "the uniform-weight loss and one per step"
                    Expect.isLessThan (Array.last result.Losses) (0.9 * result.Losses.[0]) "the loss decreases"
                    Expect.equal result.Weights.shape [| int64 (net.Depth + 1); 1L; 6L |] "[centres, batch, seq]"
                    Expect.tensorClose
                        Accuracy.Float64
                        (result.Weights.sum 0L)
                        (torch.ones ([| 1L; 6L |], dtype = torch.float64))
                        "columns sum to 1"
                    let sum = result.PerCentre |> List.reduce (+)
                    let expected =
                        match net.Spec.Unembedding.Bias with
                        | Some b -> sum + net.Parameters.[b]
                        | None -> sum
                    Expect.tensorClose
                        Accuracy.Float64
                        result.Combined
                        expected
                        "combined = Σ weighted centre logits + bias"
                    Expect.equal
                        result.Centres
                        (Centre.Stream 0
                         :: [ for l in 1 .. net.Depth -> Centre.Difference(Centre.Stream l, Centre.Stream(l - 1)) ])
                        "centres h₀, h₁ − h₀, …"
                }

                test (sprintf "%s: the UᵀU loss equals the brute-force mean squared logit error" name) {
                    use net = make ()
                    let z = tokens [ 7L; 1L; 12L ]
                    use result =
                        JointLens.fit
                            net
                            z
                            { JointLensOptions.Default with Streams = [ 0; 1; net.Depth ]; Iterations = 0 }
                    use trace = Trace.run net z
                    // Order 0: the centre values are LN_f(h₀), LN_f(h₁ − h₀), LN_f(h_L − h₁), weighted 1/3 each.
                    let normed (x: Tensor) = Forward.apply net.Parameters net.Spec.FinalNorm x
                    let h l = trace.Stream l
                    let combo = (normed (h 0) + normed (h 1 - h 0) + normed (h net.Depth - h 1)) / 3.0
                    let u = net.Parameters.[net.Spec.Unembedding.Weight]
                    let errors = (normed (h net.Depth) - combo).matmul (u.t ())
                    Expect.floatClose
                        Accuracy.high
                        result.Losses.[0]
                        ((errors * errors).mean().item<float> ())
                        "loss at uniform weights"
                }
        ]

let memory =
    testSequenced
    <| testList
        "lens memory"
        [
            test "repeated lenses and joint lenses free their tensors" {
                use net = Toy.create 1 8 torch.float32
                let z = tokens [ 1L; 2L; 3L ]
                let settle = liveTensorsSettled
                let lens () = (use r = IterativeLens.run net z { LensOptions.Default with Order = 1 } in ())
                let joint () = (use j = JointLens.fit net z { JointLensOptions.Default with Iterations = 5 } in ())
                lens ()
                joint ()
                let before = settle ()
                for _ in 1..5 do
                    lens ()
                Expect.isLessThanOrEqual (settle ()) (before + 2L) "the iterative lens leaks no tensor"
                let before = settle ()
                for _ in 1..5 do
                    joint ()
                // torch.nn.Parameter moves the native handle out of the tensor it wraps without lowering
                // Tensor.TotalCount, so each fit leaves exactly one phantom count (the tensor itself is freed).
                Expect.isLessThanOrEqual
                    (settle ())
                    (before + 5L + 2L)
                    "the joint lens leaks no tensor beyond TorchSharp's Parameter count"
            }
        ]

/// The decoder piece every logit reader goes through: the bias once, U linear, the sweep layout equal to the plain one.
let decoder =
    testList
        "decoder"
        [
            for name, make in nets do
                test (sprintf "%s: logits are U·LN_f(h) + b, the bias added once" name) {
                    use net = make ()
                    let z = tokens [ 4L; 9L; 2L ]
                    use trace = Trace.run net z
                    let h = trace.Stream 1
                    Expect.tensorClose
                        Accuracy.Float64
                        (Decoder.ofStream net h)
                        (handDecoder net h)
                        "against the hand-written decoder"
                    let normed = Decoder.normalize net h
                    let expected =
                        match Decoder.bias net with
                        | Some b -> Decoder.unembed net normed + b
                        | None -> Decoder.unembed net normed
                    Expect.isTrue
                        ((Decoder.logits net normed).eq(expected).all().item<bool> ())
                        "logits = unembed + bias, bit for bit"
                    Expect.tensorClose
                        Accuracy.Float64
                        (Trace.logits trace)
                        (handDecoder net (trace.Stream net.Depth))
                        "the trace's logits"
                    Expect.equal
                        (Decoder.bias net).IsSome
                        net.Spec.Unembedding.Bias.IsSome
                        "a bias exactly when the network has one"
                    // U is linear and bias-free: U(a + b) = U a + U b.
                    let a, b = randn 31 [ 2L; 3L; int64 net.Width ], randn 32 [ 2L; 3L; int64 net.Width ]
                    Expect.tensorClose
                        Accuracy.Float64
                        (Decoder.unembed net (a + b))
                        (Decoder.unembed net a + Decoder.unembed net b)
                        "U is linear"
                }
                test (sprintf "%s: sweep rows equal the plain decoder, and the metric measures logit norms" name) {
                    use net = make ()
                    let h = randn 33 [ 7L; int64 net.Width ]
                    let rows = Decoder.rows net (Decoder.normalize net h)
                    Expect.equal rows.shape [| 7L; int64 net.Vocab |] "[B, vocab]"
                    Expect.isTrue (rows.is_contiguous ()) "contiguous rows"
                    Expect.tensorClose Accuracy.Float64 rows (Decoder.ofStream net h) "rows = U·LN_f(h) + b"
                    let x = randn 34 [ 5L; int64 net.Width ]
                    let viaMetric = (x.matmul (Decoder.metric net) * x).sum -1L
                    Expect.tensorClose
                        Accuracy.Float64
                        viaMetric
                        ((Decoder.unembed net x).square().sum -1L)
                        "xᵀ(UᵀU)x = ‖U·x‖²"
                }
            test "addBias leaves values alone when there is no bias" {
                let x = randn 35 [ 2L; 3L ]
                Expect.isTrue (obj.ReferenceEquals(Decoder.addBias None x, x)) "no copy without a bias"
                Expect.tensorClose Accuracy.Float64 (Decoder.addBias (Some(torch.ones 3L)) x) (x + 1.0) "x + b"
            }
        ]

[<Tests>]
let tests = testList "lenses" [ identities; decoder; metrics; badInput; joint; memory ]
