/// Taylor-mode jets: the series arithmetic against known expansions and nested JVPs, every primitive's rule against
/// the nested-JVP engine, random networks (both engines agree at orders 0–4 and match finite differences at orders
/// 1–2), the Custom fallback, gradients, the kink convention, bad input and memory.
module Jet.Core.Tests.TaylorTests

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Jet.Core
open Jet.Core.Primitives
open Jet.Core.Models
open Jet.Core.Tests.TestKit
open Jet.Core.Tests.NetGen

let private f64 (xs: float list) = torch.tensor (Array.ofList xs, dtype = torch.float64)

/// A random polynomial path [k+1, shape…] (every coefficient non-zero, as inside a network).
let private randomPath (seed: int) (order: int) (shape: int64 list) = randn seed (int64 (order + 1) :: shape)

/// Coefficients of f along a polynomial path by nested JVPs, stacked [k+1, ...].
let private jvpAlong (f: Tensor -> Tensor) (path: Tensor) =
    torch.stack (Jet.coefficientsAlongPath f (int path.shape.[0] - 1) (List.ofArray (path.unbind 0L)), 0L)

/// Taylor and nested-JVP coefficients agree: coefficient j within 1e-9 relative to its largest entry (plus 1e-12 of
/// the largest entry of any order, for coefficients that vanish in exact arithmetic).
let expectAgree (taylor: Tensor) (jvp: Tensor) (what: string) =
    Expect.equal taylor.shape jvp.shape (what + ": shapes")
    let overall = jvp.abs().max().item<float> ()
    for j in 0 .. int jvp.shape.[0] - 1 do
        let scale = jvp.[int64 j].abs().max().item<float> ()
        Expect.tensorClose
            (Accuracy.Of(1e-9 * scale + 1e-12 * overall, 1e-9))
            taylor.[int64 j]
            jvp.[int64 j]
            (sprintf "%s: coefficient c%d" what j)

/// Both engines' coefficients of a case's network, at the case's order.
let private bothEngines (case: NetCase) =
    let fn, parameters = case.Build()
    let x, y = case.Inputs()
    Engines.series Engine.Taylor parameters fn case.Order x (y - x),
    Engines.series Engine.Jvp parameters fn case.Order x (y - x)

let series =
    testList
        "series arithmetic"
        [
            test "known expansions: e^(1+t), 1/(1−t), √(1+t), ln(1+t), tanh t, the line 1 + t squared" {
                let line a b = Series.line 4 (f64 [ a ]) (f64 [ b ])
                let e = Math.E
                let check (actual: Tensor) (expected: float list) name =
                    Expect.tensorClose Accuracy.Float64 (actual.flatten ()) (f64 expected) name
                check (Series.exp (line 1.0 1.0)) [ e; e; e / 2.0; e / 6.0; e / 24.0 ] "exp"
                check (Series.reciprocal (line 1.0 -1.0)) [ 1.0; 1.0; 1.0; 1.0; 1.0 ] "geometric series"
                check (Series.sqrt (line 1.0 1.0)) [ 1.0; 0.5; -0.125; 0.0625; -5.0 / 128.0 ] "√(1+t)"
                check (Series.rsqrt (line 1.0 1.0)) [ 1.0; -0.5; 0.375; -0.3125; 35.0 / 128.0 ] "1/√(1+t)"
                check (Series.log (line 1.0 1.0)) [ 0.0; 1.0; -0.5; 1.0 / 3.0; -0.25 ] "ln(1+t)"
                check (Series.tanh (line 0.0 1.0)) [ 0.0; 1.0; 0.0; -1.0 / 3.0; 0.0 ] "tanh t"
                check (Series.sigmoid (line 0.0 1.0)) [ 0.5; 0.25; 0.0; -1.0 / 48.0; 0.0 ] "σ(t)"
                check
                    (Series.erf (line 0.0 1.0))
                    [ 0.0; 2.0 / sqrt Math.PI; 0.0; -2.0 / (3.0 * sqrt Math.PI); 0.0 ]
                    "erf t"
                check (Series.square (line 1.0 1.0)) [ 1.0; 2.0; 1.0; 0.0; 0.0 ] "(1+t)²"
                check (Series.pow 3.0 (line 1.0 1.0)) [ 1.0; 3.0; 3.0; 1.0; 0.0 ] "(1+t)³"
            }

            let unary =
                [
                    "exp", Series.exp, (fun (t: Tensor) -> torch.exp t), false
                    "log", Series.log, (fun (t: Tensor) -> torch.log t), true
                    "reciprocal", Series.reciprocal, (fun (t: Tensor) -> t.reciprocal ()), false
                    "sqrt", Series.sqrt, (fun (t: Tensor) -> torch.sqrt t), true
                    "rsqrt", Series.rsqrt, (fun (t: Tensor) -> torch.rsqrt t), true
                    "pow 2.5", Series.pow 2.5, (fun (t: Tensor) -> powf t 2.5), true
                    "pow −1.5", Series.pow -1.5, (fun (t: Tensor) -> powf t -1.5), true
                    "tanh", Series.tanh, (fun (t: Tensor) -> torch.tanh t), false
                    "sigmoid", Series.sigmoid, (fun (t: Tensor) -> torch.sigmoid t), false
                    "erf", Series.erf, (fun (t: Tensor) -> torch.special.erf t), false
                    "softmax", Series.softmax, (fun (t: Tensor) -> t.softmax -1L), false
                    "square", Series.square, (fun (t: Tensor) -> t * t), false
                ]
            for name, rule, f, positive in unary do
                test (sprintf "%s along a random polynomial path equals nested JVPs, orders 0–4" name) {
                    for order in 0..4 do
                        let path = randomPath (17 + order) order [ 3L; 4L ]
                        // Functions defined for positive arguments only get x₀ > 0; the path may still wander.
                        let path =
                            if positive then
                                Series.shift (path.[0L].abs () + 0.5 - path.[0L]) path
                            else
                                path
                        expectAgree (rule path) (jvpAlong f path) (sprintf "%s, order %d" name order)
                }

            test "products, quotients and matrix products with broadcasting equal nested JVPs" {
                let path = randomPath 31 4 [ 2L * 3L * 4L + 2L * 3L ]
                // a [2, 3, 4] and b [2, 3, 1] packed into one input so nested JVPs see one function.
                let split (t: Tensor) =
                    t.narrow(-1L, 0L, 24L).unflatten (t.dim () - 1L, [| 2L; 3L; 4L |]),
                    t.narrow(-1L, 24L, 6L).unflatten (t.dim () - 1L, [| 2L; 3L; 1L |])
                let a, b = split path
                let positiveB = Series.shiftBy 3.0 (Series.square b)
                expectAgree (Series.mul a b) (jvpAlong (fun t -> let a, b = split t in a * b) path) "a·b"
                expectAgree
                    (Series.div a positiveB)
                    (jvpAlong (fun t -> let a, b = split t in a / (b * b + 3.0)) path)
                    "a/(b² + 3)"
                let mpath = randomPath 32 4 [ 2L * 3L * 4L + 2L * 4L * 5L ]
                let msplit (t: Tensor) =
                    t.narrow(-1L, 0L, 24L).unflatten (t.dim () - 1L, [| 2L; 3L; 4L |]),
                    t.narrow(-1L, 24L, 40L).unflatten (t.dim () - 1L, [| 2L; 4L; 5L |])
                let ma, mb = msplit mpath
                expectAgree (Series.matmul ma mb) (jvpAlong (fun t -> let a, b = msplit t in a.matmul b) mpath) "a @ b"
            }

            test "masked softmax: masked entries are exactly 0 in every coefficient, the rest equal nested JVPs" {
                let path = randomPath 33 4 [ 2L; 4L; 4L ]
                let allowed = SelfAttention.allowed (Some 2) 4L path.device
                let f (t: Tensor) = t.masked_fill(allowed.logical_not (), Double.NegativeInfinity).softmax -1L
                let taylor = Series.softmax (Series.maskFill allowed Double.NegativeInfinity path)
                expectAgree taylor (jvpAlong f path) "masked softmax"
                Expect.equal
                    (taylor.masked_select(allowed.logical_not().expand_as taylor).abs().sum().item<float> ())
                    0.0
                    "masked entries"
            }
        ]

/// One network per primitive and variant, each compared with the nested-JVP engine at order 4.
let private primitiveCases: (string * Piece) list =
    let attention = AttentionShape.Plain
    [
        "linear", Affine false
        "affine (bias on c₀ only)", Affine true
        for a in
            [
                Activation.Relu
                Activation.Gelu
                Activation.GeluTanh
                Activation.Silu
                Activation.Elu 1.0
                Activation.Elu 0.3
                Activation.Tanh
                Activation.Sigmoid
            ] do
            sprintf "activation %A" a, Chain [ Affine true; Act a ]
        "GELU-tanh MLP", Mlp(6, Activation.GeluTanh, true)
        "LayerNorm", LayerNorm false
        "LayerNorm with weight and bias", LayerNorm true
        "RMSNorm", RmsNorm(false, false)
        "RMSNorm with weight", RmsNorm(true, false)
        "RMSNorm with 1 + w", RmsNorm(true, true)
        "attention, separate projections", Attention attention
        "attention, fused blocked QKV with biases",
        Attention { attention with Fused = Some FusedLayout.Blocked; Biases = true }
        "attention, fused per-head QKV", Attention { attention with Fused = Some FusedLayout.PerHead }
        "attention, grouped KV heads", Attention { attention with Heads = 4; KvHeads = 2 }
        "attention, multi-query", Attention { attention with Heads = 3; KvHeads = 1; Fused = Some FusedLayout.Blocked }
        "attention, rotary rotate-half on every coordinate",
        Attention
            { attention with
                HeadDim = 4
                Rotary =
                    Some
                        {
                            Fraction = 1.0
                            Base = 10000.0
                            Style = RotaryStyle.RotateHalf
                            Scaling = RotaryScaling.Plain
                        }
            }
        "attention, rotary interleaved on half the coordinates",
        Attention
            { attention with
                HeadDim = 4
                Rotary =
                    Some { Fraction = 0.5; Base = 10.0; Style = RotaryStyle.Interleaved; Scaling = RotaryScaling.Plain }
            }
        "attention, sliding window", Attention { attention with Window = Some 2 }
        "attention, unscaled scores", Attention { attention with Scaling = ScoreScaling.Unscaled }
        "attention, scores scaled by a constant", Attention { attention with Scaling = ScoreScaling.By 0.3 }
        "gated MLP (SiLU)", Gated(5, Activation.Silu)
        "gated MLP (GELU-tanh)", Gated(5, Activation.GeluTanh)
        "sum", Sum [ Affine true; Chain [ Affine false; Act Activation.Tanh ] ]
        "chain", Chain [ LayerNorm true; Affine true; Act Activation.Gelu; Affine false ]
        "scale", Scale(-1.5, Chain [ Affine true; Act Activation.Sigmoid ])
        "custom (nested-JVP fallback)", Opaque
        "custom inside a network",
        Chain [ Affine true; Act Activation.Tanh; Opaque; LayerNorm true; Attention attention ]
        "pre-norm block (attention and MLP residual layers)",
        Chain
            [
                Sum [ Chain []; Chain [ LayerNorm true; Attention { attention with Biases = true } ] ]
                Sum [ Chain []; Chain [ LayerNorm true; Mlp(8, Activation.GeluTanh, true) ] ]
            ]
    ]

let primitives =
    testList
        "each primitive's Taylor rule equals nested JVPs (float64, order 4)"
        [
            for name, piece in primitiveCases do
                test name {
                    use _ = torch.NewDisposeScope()
                    let case = { Piece = piece; Width = 5; Batch = 2; Seq = 4; Order = 4; Seed = 11 }
                    let taylor, jvp = bothEngines case
                    expectAgree taylor jvp case.Display
                }
        ]

/// Finite differences of t ↦ f(x + t v) at t = 0 with step h: (first, second) derivative estimates of c₁ and c₂.
let private differences (f: Tensor -> Tensor) (x: Tensor) (v: Tensor) (h: float) =
    let plus, minus, centre = f (x + h * v), f (x - h * v), f x
    (plus - minus) / (2.0 * h), (plus - 2.0 * centre + minus) / (2.0 * h * h)

/// A case's network, centre x, direction v, and finite-difference references for c₁ and c₂: each an estimate, the
/// mask of elements where it is trustworthy, and a tolerance. Richardson extrapolation of the steps h and h/2 gives
/// an O(h⁴) estimate where f is smooth within the stencil; elsewhere (a kink of ReLU or ELU crossed, or a
/// singularity closer than the stencil) the two steps disagree by far more than their O(h²) gap, and those elements
/// are masked out. The tolerance allows 1e-5 of the coefficient's largest entry plus the rounding of the
/// differences, about ε·|f|/h², and the reference itself is uncertain by up to that much again: the mask keeps
/// elements whose two steps agree within the tolerance, not exactly, and a near-singular LayerNorm (width 2)
/// amplifies the rounding of f several times over.
let private differenceReferences (case: NetCase) =
    let fn, parameters = case.Build()
    let x, y = case.Inputs()
    let v = 0.5 * (y - x)
    let f = Forward.apply parameters fn
    let d1, d2 = differences f x v 5e-4
    let d1fine, d2fine = differences f x v 2.5e-4
    let valueScale = max 1.0 ((f x).abs().max().item<float> ())
    let reference (coarse: Tensor) (fine: Tensor) =
        let tolerance = 1e-5 * fine.abs().max().item<float> () + 1e-7 * valueScale
        (4.0 * fine - coarse) / 3.0, (coarse - fine).abs().le (torch.tensor tolerance), 2.0 * tolerance
    fn, parameters, x, v, [ reference d1 d1fine; reference d2 d2fine ]

/// Both engines' c₁ and c₂ equal the finite-difference references wherever those are trustworthy.
let private expectMatchesDifferences (case: NetCase) =
    use _ = torch.NewDisposeScope()
    let fn, parameters, x, v, references = differenceReferences case
    for engine in [ Engine.Taylor; Engine.Jvp ] do
        let c = Engines.series engine parameters fn 2 x v
        for j, (estimate, smooth, tolerance) in List.indexed references do
            let masked (t: Tensor) = torch.where (smooth, t, torch.zeros_like t)
            let what = sprintf "%A c%d of %s" engine (j + 1) case.Display
            Expect.tensorClose (Accuracy.Of(tolerance, 1e-5)) (masked c.[int64 (j + 1)]) (masked estimate) what

let properties =
    testList
        "random networks"
        [
            testPropertyWithConfig
                { propertyConfig with maxTest = 300 }
                "Taylor and nested-JVP coefficients agree to 1e-9 (float64, orders 0–4)"
            <| Prop.forAll (cases 12 0 4) (fun case ->
                use _ = torch.NewDisposeScope()
                let taylor, jvp = bothEngines case
                expectAgree taylor jvp case.Display)

            testPropertyWithConfig
                { propertyConfig with maxTest = 150 }
                "both engines match finite differences to 1e-5 at orders 1 and 2 (float64)"
            <| Prop.forAll (cases 12 2 2) (fun case ->
                // Cases where f is not smooth at the scale of the stencil around most elements have no finite-difference
                // reference worth the name; they are discarded (and counted by FsCheck), not passed.
                let measurable =
                    use _ = torch.NewDisposeScope()
                    let _, _, _, _, references = differenceReferences case
                    references
                    |> List.forall (fun (_, smooth: Tensor, _) ->
                        smooth.to_type(torch.float64).mean().item<float> () >= 0.5)
                measurable ==> lazy (expectMatchesDifferences case))

            test "a near-singular width-2 LayerNorm after a gated MLP matches finite differences (once failed CI)" {
                expectMatchesDifferences
                    {
                        Piece =
                            Chain
                                [
                                    Chain
                                        [
                                            Gated(2, Activation.GeluTanh)
                                            Mlp(1, Activation.Sigmoid, false)
                                            LayerNorm true
                                        ]
                                    Chain [ Affine false; LayerNorm false ]
                                    Affine false
                                ]
                        Width = 2
                        Batch = 1
                        Seq = 1
                        Order = 2
                        Seed = 205519
                    }
            }
        ]

let fallback =
    testList
        "custom functions (nested-JVP fallback)"
        [
            test "a custom square after a linear map is exactly (a + bt)² = a² + 2ab·t + b²·t²" {
                let w = randn 50 [ 3L; 3L ]
                let parameters = ParameterStore.OfSeq [ "w", w ]
                let fn = Fn.Chain [ Fn.linear "w"; Fn.custom "square" (fun x -> x * x) ]
                let x, v = randn 51 [ 1L; 2L; 3L ], randn 52 [ 1L; 2L; 3L ]
                let a, b = x.matmul (w.t ()), v.matmul (w.t ())
                let c = Engines.series Engine.Taylor parameters fn 3 x v
                Expect.tensorClose
                    Accuracy.Float64
                    c
                    (torch.stack ([| a * a; 2.0 * a * b; b * b; torch.zeros_like a |], 0L))
                    "coefficients"
            }

            test "a custom function sees the whole polynomial path of its input, not just a line" {
                // After tanh the input of the custom function has every coefficient non-zero.
                let fn = Fn.Chain [ Fn.Act Activation.Tanh; Fn.custom "cube" (fun x -> x * x * x) ]
                let x, v = randn 53 [ 1L; 3L; 2L ], randn 54 [ 1L; 3L; 2L ]
                let inner = Series.tanh (Series.line 4 x v)
                let expected = Series.mul inner (Series.square inner)
                Expect.tensorClose
                    Accuracy.Float64
                    (Engines.series Engine.Taylor (ParameterStore.OfSeq []) fn 4 x v)
                    expected
                    "tanh³"
            }

            test "a custom function that cuts the autograd graph fails with its name instead of giving zero derivatives" {
                let fn = Fn.Chain [ Fn.Act Activation.Tanh; Fn.custom "detached-scaler" (fun x -> x.detach () * 2.0) ]
                let x, v = randn 55 [ 1L; 2L; 2L ], randn 56 [ 1L; 2L; 2L ]
                Expect.throwsWith<InvalidPlanException>
                    [ "detached-scaler"; "no Taylor rule"; "differentiable" ]
                    (fun () -> Engines.series Engine.Taylor (ParameterStore.OfSeq []) fn 2 x v |> ignore)
                    "order 2"
                Expect.tensorClose
                    Accuracy.Float64
                    (Engines.series Engine.Taylor (ParameterStore.OfSeq []) fn 0 x v).[0L]
                    (2.0 * torch.tanh x)
                    "order 0 still works"
            }
        ]

let kinks =
    testList
        "piecewise activations at the kink"
        [
            test "ReLU at x₀ = 0 takes autograd's branch (all coefficients 0), elsewhere keeps or zeroes the series" {
                let x, v = f64 [ 0.0; 1.0; -1.0 ], f64 [ 1.0; 2.0; 3.0 ]
                let parameters = ParameterStore.OfSeq []
                let centre, direction = x.reshape (1L, 1L, 3L), v.reshape (1L, 1L, 3L)
                let taylor = Engines.series Engine.Taylor parameters (Fn.Act Activation.Relu) 3 centre direction
                let expected =
                    torch.stack (
                        [|
                            for j in 0..3 ->
                                (match j with
                                 | 0 -> f64 [ 0.0; 1.0; 0.0 ]
                                 | 1 -> f64 [ 0.0; 2.0; 0.0 ]
                                 | _ -> f64 [ 0.0; 0.0; 0.0 ])
                                    .reshape (1L, 1L, 3L)
                        |],
                        0L
                    )
                Expect.tensorClose Accuracy.Float64 taylor expected "Taylor"
                Expect.tensorClose
                    Accuracy.Float64
                    (Engines.series Engine.Jvp parameters (Fn.Act Activation.Relu) 3 centre direction)
                    expected
                    "JVP"
            }

            test
                "ELU at x₀ = 0 keeps the exponential branch α(e^(tv) − 1) at every order; autograd switches branch after c₁" {
                let alpha = 0.7
                let centre, direction =
                    torch.zeros (1L, 1L, 1L, dtype = torch.float64), torch.ones (1L, 1L, 1L, dtype = torch.float64)
                let fn = Fn.Act(Activation.Elu alpha)
                let parameters = ParameterStore.OfSeq []
                let taylor = (Engines.series Engine.Taylor parameters fn 4 centre direction).flatten ()
                Expect.tensorClose
                    Accuracy.Float64
                    taylor
                    (f64 [ 0.0; alpha; alpha / 2.0; alpha / 6.0; alpha / 24.0 ])
                    "Taylor"
                // PyTorch's elu_backward uses x ≤ 0 and its double backward x < 0: the one documented disagreement.
                let jvp = (Engines.series Engine.Jvp parameters fn 4 centre direction).flatten ()
                Expect.tensorClose Accuracy.Float64 jvp (f64 [ 0.0; alpha; 0.0; 0.0; 0.0 ]) "nested JVPs"
                // Off the kink both engines agree on either branch.
                for x0 in [ -1e-3; 1e-3 ] do
                    let at = torch.full ([| 1L; 1L; 1L |], scalar x0, dtype = torch.float64)
                    expectAgree
                        (Engines.series Engine.Taylor parameters fn 4 at direction)
                        (Engines.series Engine.Jvp parameters fn 4 at direction)
                        (sprintf "x₀ = %g" x0)
            }
        ]

/// A network with every kind of node, its parameters made leaves that require grad.
let private gradientCase () =
    let attention =
        {
            Heads = 4
            KvHeads = 2
            HeadDim = 2
            Fused = None
            Biases = true
            Rotary = Some { Fraction = 1.0; Base = 10.0; Style = RotaryStyle.RotateHalf; Scaling = RotaryScaling.Plain }
            Scaling = ScoreScaling.InverseSqrtHeadDim
            Window = None
        }
    let piece =
        Chain
            [
                LayerNorm true
                Attention attention
                Gated(4, Activation.Silu)
                Opaque
                RmsNorm(true, true)
                Mlp(5, Activation.GeluTanh, true)
            ]
    let case = { Piece = piece; Width = 4; Batch = 1; Seq = 3; Order = 3; Seed = 5 }
    let fn, parameters = case.Build()
    let leaves =
        ParameterStore.OfSeq [ for kv in parameters.Tensors -> kv.Key, kv.Value.detach().requires_grad_ (true) ]
    case, fn, leaves

let gradients =
    testList
        "differentiability through the Taylor engine"
        [
            test "gradients with respect to every parameter, the centre and the direction equal the nested-JVP engine's" {
                let case, fn, parameters = gradientCase ()
                let x, y = case.Inputs()
                let x, v = x.requires_grad_ (true), (y - x).detach().requires_grad_ (true)
                let probe = randn 60 [ 4L; 1L; 3L; 4L ]
                let names = parameters.Names
                let inputs = Array.append [| for n in names -> parameters.[n] |] [| x; v |]
                let gradientsOf engine =
                    let loss = (Engines.series engine parameters fn 3 x v * probe).sum ()
                    torch.autograd.grad (
                        [| loss |],
                        inputs,
                        retain_graph = false,
                        create_graph = false,
                        allow_unused = true
                    )
                let taylor, jvp = gradientsOf Engine.Taylor, gradientsOf Engine.Jvp
                for i, name in List.indexed (names @ [ "centre"; "direction" ]) do
                    Expect.isGreaterThan
                        (taylor.[i].abs().sum().item<float> ())
                        0.0
                        (sprintf "the gradient with respect to %s is non-zero" name)
                    Expect.tensorClose
                        (Accuracy.Of(1e-9, 1e-8))
                        taylor.[i]
                        jvp.[i]
                        (sprintf "gradient with respect to %s" name)
            }

            test "expansion weights given as a tensor get the same gradient from both engines" {
                use net = Toy.create 3 6 torch.float64
                let tokens = (torch.tensor [| 3L; 14L; 15L; 92L |]).unsqueeze 0
                let termsOf engine (weights: Tensor) =
                    use session = Expand.session net tokens
                    let plan =
                        Expansion.atLayer 2 [ Centre.Stream 0; Centre.Gamma 1 ]
                        |> Expansion.withOrder 3
                        |> Expansion.withEngine engine
                        |> Expansion.withWeightTensor weights
                    let result = session.Expand plan
                    let total: Tensor = result.Terms |> List.map (fun t -> t.Value.square().sum ()) |> List.reduce (+)
                    let values = torch.stack ([| for t in result.Terms -> t.Value.detach().clone () |], 0L)
                    let gradient =
                        torch.autograd.grad ([| total |], [| weights |], retain_graph = false, create_graph = false)
                    values, gradient.[0]
                let w () = (f64 [ 0.3; 0.7 ]).requires_grad_ (true)
                let taylorTerms, taylorGradient = termsOf Engine.Taylor (w ())
                let jvpTerms, jvpGradient = termsOf Engine.Jvp (w ())
                Expect.tensorClose (Accuracy.Of(1e-10, 1e-9)) taylorTerms jvpTerms "terms"
                Expect.isGreaterThan (taylorGradient.abs().sum().item<float> ()) 0.0 "non-zero gradient"
                Expect.tensorClose
                    (Accuracy.Of(1e-10, 1e-9))
                    taylorGradient
                    jvpGradient
                    "gradient with respect to the weights"
            }
        ]

let engines =
    testList
        "engine choice"
        [
            test "expansions default to the Taylor engine" {
                Expect.equal (Expansion.atLayer 1 [ Centre.Stream 0 ]).Engine Engine.Taylor "Expansion.at"
            }

            test "every term of composed expansions, through the decoder, is the same with both engines" {
                use net = Toy.create 8 6 torch.float64
                let tokens = torch.tensor ([| 1L; 2L; 3L; 5L; 8L |])
                let pathsOf engine =
                    use session = Expand.session net tokens
                    let first =
                        Expansion.atLayer 1 [ Centre.Stream 0 ] |> Expansion.withOrder 2 |> Expansion.withEngine engine
                    let second =
                        Expansion.atLayer 2 [ Centre.Terms first ]
                        |> Expansion.withOrder 3
                        |> Expansion.withEngine engine
                    let decoder =
                        Expansion.atDecoder [ Centre.Terms second ]
                        |> Expansion.withOrder 4
                        |> Expansion.withEngine engine
                    let logits = session.Unembed(session.Expand decoder)
                    [ for p in logits.Paths -> string p.Path, p.Value.detach().clone () ],
                    logits.Remainder.detach().clone ()
                let taylorPaths, taylorRemainder = pathsOf Engine.Taylor
                let jvpPaths, jvpRemainder = pathsOf Engine.Jvp
                Expect.equal (List.map fst taylorPaths) (List.map fst jvpPaths) "the same paths"
                for (name, t), (_, j) in List.zip taylorPaths jvpPaths do
                    Expect.tensorClose (Accuracy.Of(1e-10, 1e-9)) t j name
                Expect.tensorClose (Accuracy.Of(1e-10, 1e-9)) taylorRemainder jvpRemainder "remainder"
            }

            test "float32 Taylor agrees with float64 Taylor and with float32 JVP" {
                let case =
                    {
                        Piece = snd primitiveCases.[primitiveCases.Length - 1]
                        Width = 6
                        Batch = 1
                        Seq = 4
                        Order = 3
                        Seed = 21
                    }
                let fn, parameters = case.Build()
                let single =
                    ParameterStore.OfSeq [ for kv in parameters.Tensors -> kv.Key, kv.Value.to_type torch.float32 ]
                let x, y = case.Inputs()
                let v = y - x
                let exact = Engines.series Engine.Taylor parameters fn 3 x v
                let taylor32 =
                    Engines.series Engine.Taylor single fn 3 (x.to_type torch.float32) (v.to_type torch.float32)
                let jvp32 = Engines.series Engine.Jvp single fn 3 (x.to_type torch.float32) (v.to_type torch.float32)
                Expect.equal taylor32.dtype torch.float32 "float32 in, float32 out"
                let scale = exact.abs().max().item<float> ()
                Expect.tensorClose (Accuracy.Of(1e-4 * scale, 1e-4)) taylor32 exact "float32 Taylor vs float64"
                Expect.tensorClose (Accuracy.Of(1e-4 * scale, 1e-4)) taylor32 jvp32 "float32 Taylor vs float32 JVP"
            }
        ]

let badInput =
    let parameters = ParameterStore.OfSeq [ "w", randn 70 [ 3L; 3L ] ]
    let x, v = randn 71 [ 1L; 2L; 3L ], randn 72 [ 1L; 2L; 3L ]
    let attention =
        Fn.Attention
            {
                Heads = 1
                KvHeads = 1
                HeadDim = 3
                Projections =
                    Projections.Separate(
                        { Weight = "w"; Bias = None },
                        { Weight = "w"; Bias = None },
                        { Weight = "w"; Bias = None }
                    )
                Output = { Weight = "w"; Bias = None }
                Rotary = None
                Scaling = ScoreScaling.Unscaled
                Window = None
            }
    testList
        "bad input"
        [
            test "negative order" {
                Expect.throwsWith<InvalidOrderException>
                    [ "≥ 0"; "-2" ]
                    (fun () -> Taylor.along parameters (Fn.linear "w") -2 x v |> ignore)
                    "order −2"
            }
            test "integer centre, mismatched shapes and dtypes" {
                Expect.throwsWith<DTypeException>
                    [ "Int64"; "floating-point" ]
                    (fun () ->
                        Taylor.along
                            parameters
                            (Fn.linear "w")
                            1
                            (torch.ones ([| 1L; 2L; 3L |], dtype = torch.int64))
                            v
                        |> ignore)
                    "int64"
                Expect.throwsWith<ShapeMismatchException>
                    [ "[1, 2, 3]"; "[1, 2, 4]" ]
                    (fun () -> Taylor.along parameters (Fn.linear "w") 1 x (randn 73 [ 1L; 2L; 4L ]) |> ignore)
                    "shapes"
                Expect.throwsWith<DTypeException>
                    [ "Float64"; "Float32" ]
                    (fun () -> Taylor.along parameters (Fn.linear "w") 1 x (v.to_type torch.float32) |> ignore)
                    "dtypes"
            }
            test "attention on a stream that is not [batch, seq, d] names the primitive" {
                Expect.throwsWith<ShapeMismatchException>
                    [ "Attention"; "[batch, seq, d]"; "[2, 3]" ]
                    (fun () -> Taylor.along parameters attention 2 x.[0L] v.[0L] |> ignore)
                    "rank 2"
            }
            test "an empty sum and a missing parameter are named" {
                Expect.throwsWith<InvalidPlanException>
                    [ "Sum []" ]
                    (fun () -> Taylor.along parameters (Fn.Sum []) 1 x v |> ignore)
                    "Sum []"
                Expect.throwsWith<InvalidPlanException>
                    [ "'missing'" ]
                    (fun () -> Taylor.along parameters (Fn.linear "missing") 1 x v |> ignore)
                    "no such parameter"
            }
        ]

let memory =
    testSequenced
    <| testList
        "memory (Taylor)"
        [
            test "repeated Taylor-engine expansions leave the live tensor count unchanged" {
                use net = Toy.create 4 8 torch.float32
                let tokens = torch.tensor ([| 1L; 2L; 3L |])
                let run () =
                    use session = Expand.session net tokens
                    let plan = Expansion.atLayer 1 [ Centre.Stream 0; Centre.Gamma 1 ] |> Expansion.withOrder 4
                    let decoder = Expansion.atDecoder [ Centre.Terms plan ] |> Expansion.withOrder 3
                    session.Unembed(session.Expand decoder) |> ignore
                Expect.noTensorGrowth 0L 200 run "200 Taylor-mode expansions"
            }
        ]

[<Tests>]
let all =
    testList "taylor" [ series; primitives; properties; fallback; kinks; gradients; engines; badInput; memory ]
