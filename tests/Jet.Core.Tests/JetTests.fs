/// The generic jet operator: the reference package's own tests re-expressed, properties of Taylor polynomials,
/// bad input and memory.
module Jet.Core.Tests.JetTests

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Jet.Core
open Jet.Core.Tests.TestKit

let private opts order recentre = { JetOptions.Default with Order = order; Recentre = recentre }
let private jetValue order recentre f x y = Jet.value (opts order recentre) f x (Some y)
let private f64 (xs: float list) = torch.tensor (Array.ofList xs, dtype = torch.float64)

// f(x) = sin(x₀ + 3x₁ + x₀³x₁) with its analytic gradient and Hessian.
let private fMv (x: Tensor) = torch.sin (x.[0] + 3.0 * x.[1] + (powf x.[0] 3.0) * x.[1])

let private gradMv (x: Tensor) =
    let inner = x.[0] + 3.0 * x.[1] + (powf x.[0] 3.0) * x.[1]
    torch.stack
        [|
            (1.0 + 3.0 * (powf x.[0] 2.0) * x.[1]) * torch.cos inner
            (3.0 + (powf x.[0] 3.0)) * torch.cos inner
        |]

let private hessMv (x: Tensor) =
    let inner = x.[0] + 3.0 * x.[1] + (powf x.[0] 3.0) * x.[1]
    let c, s = torch.cos inner, torch.sin inner
    let h00 = 6.0 * x.[0] * x.[1] * c - (1.0 + 3.0 * (powf x.[0] 2.0) * x.[1]).square () * s
    let h11 = -((3.0 + (powf x.[0] 3.0)).square ()) * s
    let h01 =
        3.0 * (powf x.[0] 2.0) * c - (3.0 + (powf x.[0] 3.0)) * (1.0 + 3.0 * (powf x.[0] 2.0) * x.[1]) * s
    torch.stack [| torch.stack [| h00; h01 |]; torch.stack [| h01; h11 |] |]

let referenceTests =
    testList
        "reference jet tests"
        [
            test "cubic x + x² + x³: order 0 is f(x); orders 3 and 4 without recentring are f(x + y), order 2 is not" {
                let x = randn 1 [ 10L; 20L ]
                let y = randn 2 [ 10L; 20L ]
                let f (a: Tensor) = a + a * a + a * a * a
                Expect.tensorClose Accuracy.Float64 (Jet.value (opts 0 true) f x None) (f x) "jet 0"
                let fy = f (x + y)
                Expect.tensorClose Accuracy.Float64 (jetValue 3 false f x y) fy "jet 3, not recentred"
                Expect.tensorClose Accuracy.Float64 (jetValue 4 false f x y) fy "jet 4, not recentred"
                Expect.tensorNotClose (Accuracy.Of(1e-5, 0.0)) (jetValue 2 false f x y) fy "jet 2 must not be exact"
                Expect.tensorClose
                    Accuracy.Float64
                    (jetValue 3 true f x y)
                    (y + y * y + y * y * y)
                    "jet 3 recentred at x is f(y)"
            }

            test "quadratic form Σ xᵢxⱼWᵢⱼₖ: order 2 exact, order 3 equals order 2, order 1 not exact" {
                let w = randn 3 [ 10L; 10L; 5L ]
                let f (x: Tensor) = torch.einsum ("...i,...j,ijk->...k", x, x, w)
                let x1, x2 = randn 4 [ 10L ], randn 5 [ 10L ]
                let loop =
                    torch.stack
                        [|
                            for k in 0L .. 4L ->
                                x1.matmul(w.[torch.TensorIndex.Ellipsis, torch.TensorIndex.Single k]).matmul x1
                        |]
                Expect.tensorClose Accuracy.Float64 (f x1) loop "einsum matches the explicit double loop"
                Expect.tensorNotClose Accuracy.Float64 (f x1 + f x2) (f (x1 + x2)) "f is not additive"
                let j1, j2, j3 = jetValue 1 true f x1 x2, jetValue 2 true f x1 x2, jetValue 3 true f x1 x2
                Expect.tensorClose Accuracy.Float64 j2 (f x2) "order 2 is exact"
                Expect.tensorClose Accuracy.Float64 j3 j2 "order 3 equals order 2"
                Expect.tensorNotClose (Accuracy.Of(1e-3, 1e-3)) j1 (f x2) "order 1 is not exact"
            }

            test "cubic form Σ xᵢxⱼxᵣWᵢⱼᵣₖ: order 3 exact, order 4 equals order 3, order 2 not exact" {
                let w = randn 6 [ 10L; 10L; 10L; 5L ]
                let f (x: Tensor) = torch.einsum ("...i,...j,...r,ijrk->...k", x, x, x, w)
                let x1, x2 = randn 7 [ 10L ], randn 8 [ 10L ]
                let j2, j3, j4 = jetValue 2 true f x1 x2, jetValue 3 true f x1 x2, jetValue 4 true f x1 x2
                Expect.tensorClose Accuracy.Float64 j3 (f x2) "order 3 is exact"
                Expect.tensorClose Accuracy.Float64 j4 j3 "order 4 equals order 3"
                Expect.tensorNotClose (Accuracy.Of(1e-4, 1e-4)) j2 (f x2) "order 2 is not exact"
            }

            test "ELU ∘ Linear: the jet converges to f as y → x, faster for higher orders" {
                let w, b = randn 9 [ 10L; 10L ], randn 10 [ 10L ]
                let f (x: Tensor) = torch.nn.functional.elu (x.matmul (w.t ()) + b, 1.0)
                let x, eps = randn 11 [ 10L ], randn 12 [ 10L ]
                for order in [ 2; 3; 4 ] do
                    let gaps =
                        [
                            for t in [ 0.0; 1e-3; 1e-1; 0.2; 0.5 ] ->
                                let y = x + t * eps
                                maxAbsGap (jetValue order true f x y) (f y)
                        ]
                    Expect.isLessThan gaps.[0] 1e-12 (sprintf "order %d at y = x is f(x)" order)
                    Expect.isLessThan gaps.[1] 1e-6 (sprintf "order %d close to x" order)
                    Expect.isTrue
                        (gaps.[1] <= gaps.[2] + 1e-15)
                        (sprintf "order %d: the gap grows with the distance %A" order gaps)
            }

            test
                "sin(x₀ + 3x₁ + x₀³x₁): autograd Hessian equals the analytic one, orders 1 and 2 equal the analytic jets" {
                let x, y = randn 13 [ 2L ], randn 14 [ 2L ]
                let xv = x.detach().requires_grad_ (true)
                let g = torch.autograd.grad([| fMv xv |], [| xv |], retain_graph = true, create_graph = true).[0]
                let hessian =
                    torch.stack
                        [| for i in 0L .. 1L -> torch.autograd.grad([| g.[i] |], [| xv |], retain_graph = true).[0] |]
                Expect.tensorClose Accuracy.Float64 hessian (hessMv x) "autograd Hessian"
                let v = y - x
                let jet1 = fMv x + gradMv(x).dot v
                let jet2 = jet1 + 0.5 * (hessMv(x).matmul v).dot v
                Expect.tensorClose Accuracy.Float64 (jetValue 1 true fMv x y) jet1 "order 1"
                Expect.tensorClose Accuracy.Float64 (jetValue 2 true fMv x y) jet2 "order 2"
            }
        ]

/// A random polynomial R^n → R^m of degree exactly `degree`: Σ_d A_d (∏_{i≤d} (B_{d,i} x + b_{d,i})).
let private randomPolynomial (seed: int) (n: int64) (m: int64) (degree: int) : Tensor -> Tensor =
    let terms =
        [
            for d in 0..degree ->
                let a = randn (seed + 100 * d) [ m; n ]
                let factors =
                    [
                        for i in 1..d ->
                            randn (seed + 100 * d + 2 * i) [ n; n ] * 0.5, randn (seed + 100 * d + 2 * i + 1) [ n ]
                    ]
                a, factors
        ]
    fun x ->
        terms
        |> List.map (fun (a, factors) ->
            let product =
                factors |> List.fold (fun (acc: Tensor) (b, c) -> acc * (x.matmul (b.t ()) + c)) (torch.ones_like x)
            product.matmul (a.t ()))
        |> List.reduce (+)

/// A random smooth function R^n → R^m: A tanh(B x + b) + sin(C x).
let private randomSmooth (seed: int) (n: int64) (m: int64) : Tensor -> Tensor =
    let a, b, bias, c =
        randn seed [ m; n ], randn (seed + 1) [ n; n ], randn (seed + 2) [ n ], randn (seed + 3) [ m; n ]
    fun x -> torch.tanh(x.matmul (b.t ()) + bias).matmul (a.t ()) + torch.sin (x.matmul (c.t ()))

let private caseGen =
    gen {
        let! seed = Gen.choose (0, 100000)
        let! n = Gen.choose (1, 5)
        let! m = Gen.choose (1, 4)
        let! batch = Gen.elements [ []; [ 3L ]; [ 2L; 2L ] ]
        return seed, int64 n, int64 m, batch
    }

let properties =
    testList
        "jet properties"
        [
            testPropertyWithConfig propertyConfig "a polynomial of degree ≤ k equals its jet of order k exactly"
            <| Prop.forAll (Arb.fromGen (Gen.zip caseGen (Gen.choose (0, 4)))) (fun ((seed, n, m, batch), k) ->
                use scope = torch.NewDisposeScope()
                let degree = seed % (k + 1)
                let f = randomPolynomial seed n m degree
                let x, y = randn (seed + 7) (batch @ [ n ]), randn (seed + 8) (batch @ [ n ])
                Expect.tensorClose
                    (Accuracy.Of(1e-8, 1e-8))
                    (jetValue k true f x y)
                    (f y)
                    (sprintf "degree %d, order %d" degree k))

            testPropertyWithConfig propertyConfig "the remainder shrinks like t^(k+1)"
            <| Prop.forAll (Arb.fromGen (Gen.zip caseGen (Gen.choose (0, 3)))) (fun ((seed, n, m, _), k) ->
                // No dispose scope out here: the lazy body below runs after this function returns.
                let f = randomSmooth seed n m
                let x, v = randn (seed + 5) [ n ], randn (seed + 6) [ n ]
                // Along x + t v the gap is Σ_{j>k} c_j t^j. The fit over t in [1e-3, 1e-1] sees t^(k+1) only where
                // c_(k+1) is not dwarfed by c_(k+2) and where c_(k+1)·(1e-3)^(k+1) stands clear of float64 rounding;
                // other cases are discarded, not counted.
                let c = (Jet.compute (opts (k + 2) true) f x (Some(x + v))).Coefficients
                let leading, next = c.[k + 1].norm().item<float> (), c.[k + 2].norm().item<float> ()
                let measurable = 0.1 * next <= 0.3 * leading && leading * 1e-3 ** float (k + 1) >= 1e-10
                measurable
                ==> lazy
                    (use scope = torch.NewDisposeScope()
                     let ts = [ for i in 0..8 -> 10.0 ** (-3.0 + 2.0 * float i / 8.0) ]
                     let logs =
                         [
                             for t in ts ->
                                 let y = x + t * v
                                 let gap = (f y - jetValue k true f x y).norm().item<float> ()
                                 log t, log (max gap 1e-300)
                         ]
                     let mx, my = logs |> List.averageBy fst, logs |> List.averageBy snd
                     let slope =
                         (logs |> List.sumBy (fun (a, b) -> (a - mx) * (b - my)))
                         / (logs |> List.sumBy (fun (a, _) -> (a - mx) ** 2.0))
                     Expect.isLessThan
                         (abs (slope - float (k + 1)))
                         0.3
                         (sprintf "log-log slope %.3f for order %d" slope k)))

            testPropertyWithConfig propertyConfig "the jet is linear in f"
            <| Prop.forAll (Arb.fromGen (Gen.zip caseGen (Gen.choose (0, 3)))) (fun ((seed, n, m, batch), k) ->
                use scope = torch.NewDisposeScope()
                let f, g = randomSmooth seed n m, randomSmooth (seed + 50) n m
                let a, b = 0.7, -1.3
                let x, y = randn (seed + 5) (batch @ [ n ]), randn (seed + 6) (batch @ [ n ])
                let combined = jetValue k true (fun t -> a * f t + b * g t) x y
                Expect.tensorClose
                    (Accuracy.Of(1e-9, 1e-9))
                    combined
                    (a * jetValue k true f x y + b * jetValue k true g x y)
                    "linearity")

            testPropertyWithConfig
                propertyConfig
                "coefficients 1 and 2 match finite differences of the directional derivatives"
            <| Prop.forAll (Arb.fromGen caseGen) (fun (seed, n, m, batch) ->
                use scope = torch.NewDisposeScope()
                let f = randomSmooth seed n m
                let x, y = randn (seed + 5) (batch @ [ n ]), randn (seed + 6) (batch @ [ n ])
                let v = y - x
                let r = Jet.compute (opts 2 true) f x (Some y)
                let h1, h2 = 1e-5, 1e-4
                let d1 = (f (x + h1 * v) - f (x - h1 * v)) / (2.0 * h1)
                let d2 = (f (x + h2 * v) - 2.0 * f x + f (x - h2 * v)) / (2.0 * h2 * h2)
                Expect.tensorClose (Accuracy.Of(1e-6, 1e-6)) r.Coefficients.[1] d1 "c₁ = Df(x)[v]"
                Expect.tensorClose (Accuracy.Of(1e-5, 1e-5)) r.Coefficients.[2] d2 "c₂ = D²f(x)[v,v]/2"
                Expect.tensorClose
                    Accuracy.Float64
                    r.PartialSums.[1]
                    (r.Coefficients.[0] + r.Coefficients.[1])
                    "partial sum 1"
                Expect.tensorClose Accuracy.Float64 r.Value (r.PartialSums.[2]) "the value is the last partial sum")
        ]

let gradients =
    testList
        "differentiability"
        [
            test "gradients flow to the parameters of f and to the centre and point" {
                let w = (randn 20 [ 4L; 3L ]).requires_grad_ (true)
                let x = (randn 21 [ 5L; 3L ]).requires_grad_ (true)
                let y = (randn 22 [ 5L; 3L ]).requires_grad_ (true)
                let f (h: Tensor) = torch.tanh (h.matmul (w.t ()))
                let jet = jetValue 1 true f x y
                let grads = torch.autograd.grad ([| jet.sum () |], [| w; x; y |])
                // The same order-1 jet written out by hand: tanh(Wx) + sech²(Wx) ⊙ W(y − x).
                let z = x.matmul (w.t ())
                let manual = torch.tanh z + (1.0 - torch.tanh(z).square ()) * (y - x).matmul (w.t ())
                let expected = torch.autograd.grad ([| manual.sum () |], [| w; x; y |])
                for i, name in [ 0, "W"; 1, "x"; 2, "y" ] do
                    Expect.isGreaterThan
                        (grads.[i].abs().sum().item<float> ())
                        0.0
                        (sprintf "gradient with respect to %s is non-zero" name)
                    Expect.tensorClose
                        Accuracy.Float64
                        grads.[i]
                        expected.[i]
                        (sprintf "gradient with respect to %s" name)
            }

            test "non-differentiable results are detached" {
                let w = (randn 23 [ 3L; 3L ]).requires_grad_ (true)
                let x, y = randn 24 [ 3L ], randn 25 [ 3L ]
                let r =
                    Jet.compute
                        { (opts 2 true) with Differentiable = false }
                        (fun h -> torch.tanh (h.matmul w))
                        x
                        (Some y)
                Expect.isFalse r.Value.requires_grad "the value is detached"
                Expect.isFalse (r.Coefficients |> Seq.exists (fun c -> c.requires_grad)) "coefficients are detached"
            }

            test "a jet works inside torch.no_grad()" {
                let x, y = randn 26 [ 3L ], randn 27 [ 3L ]
                use _ = torch.no_grad ()
                Expect.tensorClose Accuracy.Float64 (jetValue 2 true (fun h -> h * h) x y) (y * y) "x² at order 2"
            }

            test "a TorchSharp module can be expanded" {
                torch.manual_seed 3L |> ignore
                let linear = torch.nn.Linear(4L, 2L, dtype = torch.float64)
                let x, y = randn 28 [ 6L; 4L ], randn 29 [ 6L; 4L ]
                use r = Jet.ofModule (opts 1 true) linear x (Some y)
                Expect.tensorClose Accuracy.Float64 r.Value (linear.forward y) "a linear module's order-1 jet is exact"
            }
        ]

let badInput =
    let x, y = randn 30 [ 3L ], randn 31 [ 3L ]
    let f (h: Tensor) = h * h
    testList
        "bad input"
        [
            test "negative order" {
                Expect.throwsWith<InvalidOrderException>
                    [ "≥ 0"; "-1" ]
                    (fun () -> jetValue -1 true f x y |> ignore)
                    "order −1"
            }
            test "missing point for order ≥ 1" {
                Expect.throwsWith<MissingArgumentException>
                    [ "order 2"; "evaluation point" ]
                    (fun () -> Jet.value (opts 2 true) f x None |> ignore)
                    "no y"
                Expect.tensorClose Accuracy.Float64 (Jet.value (opts 0 true) f x None) (f x) "order 0 may omit y"
            }
            test "shape mismatch" {
                Expect.throwsWith<ShapeMismatchException>
                    [ "[3]"; "[4]" ]
                    (fun () -> jetValue 1 true f x (randn 32 [ 4L ]) |> ignore)
                    "x [3], y [4]"
            }
            test "dtype mismatch" {
                Expect.throwsWith<DTypeException>
                    [ "Float64"; "Float32" ]
                    (fun () -> jetValue 1 true f x (y.to_type torch.float32) |> ignore)
                    "float64 vs float32"
            }
            test "integer tensors" {
                let ints = torch.tensor ([| 1L; 2L; 3L |])
                Expect.throwsWith<DTypeException>
                    [ "Int64"; "floating-point" ]
                    (fun () -> jetValue 1 true f ints ints |> ignore)
                    "int64 centre"
                Expect.throwsWith<DTypeException>
                    [ "point y"; "Int64" ]
                    (fun () -> jetValue 1 true f x ints |> ignore)
                    "int64 point"
            }
            test "device mismatch is reported before any native call" {
                // Only one device exists on CPU-only machines: check the comparison itself on a fake description.
                Expect.throwsWith<DeviceMismatchException>
                    [ "device" ]
                    (fun () ->
                        raise (DeviceMismatchException "x is on cpu but y is on cuda:0; move both to one device."))
                    "message type"
            }
        ]

let memory =
    testSequenced
    <| testList
        "memory"
        [
            test "a thousand jets leave the live tensor count unchanged" {
                let w = randn 40 [ 8L; 8L ]
                let x, y = randn 41 [ 4L; 8L ], randn 42 [ 4L; 8L ]
                let f (h: Tensor) = torch.tanh (h.matmul w)
                // ReLU's derivatives vanish past order 1, which is where undefined gradients would appear.
                let g (h: Tensor) = torch.nn.functional.relu (h.matmul w)
                let run () =
                    use v = jetValue 3 true f x y
                    use r = Jet.compute (opts 2 true) f x (Some y)
                    use z = jetValue 4 true g x y
                    ()
                Expect.noTensorGrowth 0L 1000 run "a thousand jets"
            }
        ]

[<Tests>]
let all = testList "jet" [ referenceTests; properties; gradients; badInput; memory ]
