/// Algorithm 1 on networks written with the DSL: exact remainders, composition, path names, γ semantics,
/// caching of the forward pass, bad input and memory.
module Jet.Core.Tests.ExpansionTests

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps
open Jet.Core.Tests.TestKit
open Jet.Core.Tests.TestNets

let private engines = [ Engine.Taylor; Engine.Jvp ]
let private sumOf (terms: Term list) = terms |> List.map (fun t -> t.Value) |> List.reduce (+)

/// Σ terms + remainder = target to rounding: the gap may be `tolerance` times the largest magnitude involved
/// (jets far from their centre, for example of a norm around a near-zero centre, have huge terms whose rounding
/// error is proportionally large; the identity is exact arithmetic, so only rounding can separate the two sides).
let private expectExact (tolerance: float) (r: ExpansionResult) message =
    let scale =
        (r.Target :: r.Remainder :: (r.Terms |> List.map (fun t -> t.Value)))
        |> List.map (fun t -> t.abs().max().to_type(torch.float64).item<float> ())
        |> List.max
        |> max 1.0
    Expect.tensorClose (Accuracy.Of(tolerance * scale, 0.0)) (sumOf r.Terms + r.Remainder) r.Target message

/// A random centre that is valid in a network of depth L.
let private centreGen (depth: int) =
    let leaf =
        Gen.oneof
            [
                Gen.choose (0, depth) |> Gen.map Centre.Stream
                Gen.choose (1, depth) |> Gen.map Centre.Gamma
                Gen.constant Centre.Embedding
                Gen.constant Centre.Encoder
            ]
    Gen.frequency [ 4, leaf; 1, Gen.map2 (fun a b -> Centre.Difference(a, b)) leaf leaf ]

/// A random plan at a random site, possibly composed with an earlier expansion whose terms become centres.
let private planGen (depth: int) =
    gen {
        let! order = Gen.choose (0, 3)
        let! engine = Gen.elements engines
        let! atDecoder = Gen.elements [ true; false ]
        let! layer = Gen.choose (1, depth)
        let! centres = Gen.nonEmptyListOf (centreGen depth) |> Gen.map (List.truncate 3)
        let! compose = Gen.elements [ true; false ]
        let! innerOrder = Gen.choose (0, 2)
        let site = if atDecoder then Site.Decoder else Site.Layer layer
        let centres =
            match site with
            | Site.Layer l when compose && l > 1 ->
                let inner =
                    Expansion.atLayer (l - 1) [ Centre.Stream(l - 2); Centre.Gamma(l - 1) ]
                    |> Expansion.withOrder innerOrder
                    |> Expansion.withEngine engine
                Centre.Terms inner :: centres
            | Site.Decoder when compose ->
                let inner =
                    Expansion.atLayer depth [ Centre.Stream(depth - 1) ]
                    |> Expansion.withOrder innerOrder
                    |> Expansion.withEngine engine
                Centre.Terms inner :: centres
            | _ -> centres
        return Expansion.at site centres |> Expansion.withOrder order |> Expansion.withEngine engine
    }

let private config = { propertyConfig with maxTest = 25 }

let properties =
    testList
        "expansion properties"
        [
            for dtype, tolerance, name in [ torch.float64, 1e-9, "float64"; torch.float32, 1e-4, "float32" ] do
                testPropertyWithConfig
                    config
                    (sprintf
                        "Σ terms + remainder = target on random nets, centres, orders 0–3 and compositions (%s)"
                        name)
                <| Prop.forAll
                    (Arb.fromGen (
                        gen {
                            let! case = netCaseGen 1
                            let! plan = planGen case.Recipes.Length
                            return case, plan
                        }
                    ))
                    (fun (case, plan) ->
                        use net = build case.Seed case.Width case.Recipes dtype None
                        use session = Expand.session net (tokensOf case net.Vocab)
                        let r = session.Expand plan
                        expectExact tolerance r (sprintf "%A" plan))

            testPropertyWithConfig
                config
                "order 0 at layer l around h_{l−1} gives γ_l(h_{l−1}) and h_{l−1} and a zero remainder"
            <| Prop.forAll (Arb.fromGen (Gen.zip (netCaseGen 1) (Gen.choose (1, 4)))) (fun (case, pick) ->
                use net = build case.Seed case.Width case.Recipes torch.float64 None
                let l = 1 + (pick - 1) % net.Depth
                use session = Expand.session net (tokensOf case net.Vocab)
                let r = session.Expand(Expansion.atLayer l [ Centre.Stream(l - 1) ] |> Expansion.withOrder 0)
                let stream = if l = 1 then "Enc" else "h" + Notation.subscript (l - 1)
                Expect.equal
                    (r.Terms |> List.map (fun t -> string t.Path))
                    [ sprintf "γ%s(%s)" (Notation.subscript l) stream; stream ]
                    "term names"
                Expect.tensorClose
                    Accuracy.Float64
                    r.Terms.[0].Value
                    (session.Trace.Gamma l)
                    "the first term is γ_l(h_{l−1})"
                Expect.tensorClose
                    Accuracy.Float64
                    r.Terms.[1].Value
                    (session.Trace.Stream(l - 1))
                    "the second term is h_{l−1}"
                Expect.tensorClose
                    (Accuracy.Of(1e-12, 0.0))
                    r.Remainder
                    (torch.zeros_like r.Remainder)
                    "the remainder is zero")

            testPropertyWithConfig
                config
                "for linear γ, orders ≥ 1 around any centres with weights summing to 1 leave no remainder"
            <| Prop.forAll
                (Arb.fromGen (
                    gen {
                        let! case = netCaseGen 1
                        let! order = Gen.choose (1, 3)
                        let! engine = Gen.elements engines
                        let! centres = Gen.nonEmptyListOf (centreGen 2) |> Gen.map (List.truncate 4)
                        let! raw = Gen.listOfLength centres.Length (Gen.choose (-100, 100))
                        return case, order, engine, centres, raw
                    }
                ))
                (fun (case, order, engine, centres, raw) ->
                    use net = build case.Seed case.Width [ Affine; Affine ] torch.float64 None
                    let raw = raw |> List.map (fun r -> float r / 37.0 + 0.01)
                    let weights = raw |> List.map (fun w -> w / List.sum raw)
                    let weights =
                        if abs (List.sum raw) < 1e-3 then
                            List.replicate raw.Length (1.0 / float raw.Length)
                        else
                            weights
                    use session = Expand.session net (tokensOf case net.Vocab)
                    let plan =
                        Expansion.atLayer 2 centres
                        |> Expansion.withOrder order
                        |> Expansion.withEngine engine
                        |> Expansion.withWeights (Weights.Fixed weights)
                    let r = session.Expand plan
                    Expect.tensorClose
                        (Accuracy.Of(1e-9, 0.0))
                        r.Remainder
                        (torch.zeros_like r.Remainder)
                        (sprintf "remainder with weights %A" weights))

            testPropertyWithConfig
                config
                "composing order-0 expansions from {Enc} through all L layers gives 2^L paths with distinct names"
            <| Prop.forAll (Arb.fromGen (netCaseGen 1)) (fun case ->
                use net = build case.Seed case.Width case.Recipes torch.float64 None
                let ones n = Weights.Fixed(List.replicate n 1.0)
                let step (plan: Expansion option) l =
                    let centres, count =
                        match plan with
                        | None -> [ Centre.Encoder ], 1
                        | Some p -> [ Centre.Terms p ], pown 2 (l - 1)
                    Some(Expansion.atLayer l centres |> Expansion.withOrder 0 |> Expansion.withWeights (ones count))
                let last = [ 1 .. net.Depth ] |> List.fold step None |> Option.get
                let decoder =
                    Expansion.atDecoder [ Centre.Terms last ]
                    |> Expansion.withOrder 0
                    |> Expansion.withWeights (ones (pown 2 net.Depth))
                use session = Expand.session net (tokensOf case net.Vocab)
                let r = session.Expand decoder
                let names = r.Terms |> List.map (fun t -> string t.Path)
                Expect.equal names.Length (pown 2 net.Depth) "2^L paths"
                Expect.equal (List.distinct names).Length names.Length (sprintf "distinct names: %A" names)
                expectExact 1e-9 r "decoder")

            testPropertyWithConfig config "γ semantics: h_l − h_{l−1} = γ_l(h_{l−1}) for every residual layer"
            <| Prop.forAll (Arb.fromGen (netCaseGen 1)) (fun case ->
                use net = build case.Seed case.Width case.Recipes torch.float64 (Some 8)
                use trace = Trace.run net (tokensOf case net.Vocab)
                for l in 1 .. net.Depth do
                    let gamma = Forward.apply net.Parameters net.Spec.Layers.[l - 1].Gamma (trace.Stream(l - 1))
                    Expect.tensorClose
                        Accuracy.Float64
                        (trace.Stream l - trace.Stream(l - 1))
                        gamma
                        (sprintf "layer %d" l))
        ]

let toyTests =
    testList
        "toy carving"
        [
            for engine in engines do
                test (
                    sprintf "the reference's quickstart: 4 paths and Σ paths + remainder = logits (float32, %A)" engine
                ) {
                    use net = Toy.create 0 32 torch.float32
                    let tokens = Carving.randomPrompt 0 net.Vocab 8
                    use session = Expand.session net tokens
                    let inner =
                        session.Expand(
                            Expansion.atLayer 2 [ Centre.Stream 0; Centre.Gamma 1 ] |> Expansion.withEngine engine
                        )
                    let carving = session.Unembed(session.Expand(Carving.twoStep 1 engine))
                    Expect.equal inner.Terms.Length 4 "4 sub-streams"
                    Expect.equal carving.Paths.Length 4 "4 paths"
                    Expect.equal carving.Logits.shape [| 1L; 8L; 100L |] "logits [batch, seq, vocab]"
                    Expect.tensorClose
                        (Accuracy.Of(1e-4, 0.0))
                        (sumOf carving.Paths + carving.Remainder)
                        carving.Logits
                        "reconstruction"
                }

            test "path names of the quickstart" {
                use net = Toy.create 0 8 torch.float64
                use session = Expand.session net (Carving.randomPrompt 1 net.Vocab 3)
                let carving = session.Unembed(session.Expand(Carving.twoStep 1 Engine.Taylor))
                Expect.equal
                    (carving.Paths |> List.map (fun p -> string p.Path))
                    [ "U·J¹LN(J¹γ₂(Enc))"; "U·J¹LN(J¹γ₂(γ₁(Enc)))"; "U·J¹LN(J¹id(Enc))"; "U·J¹LN(J¹id(γ₁(Enc)))" ]
                    "names"
            }

            for engine in engines do
                test (
                    sprintf
                        "decoder around {Emb, h₁, γ₄(h₃)} at orders 0 and 1 on a deeper net; gradients reach softmax weights (%A)"
                        engine
                ) {
                    use net = Toy.createDeep 3 16 5 torch.float64
                    let tokens = Carving.randomPrompt 2 net.Vocab 6
                    use session = Expand.session net tokens
                    for order in [ 0; 1 ] do
                        let logits = torch.tensor([| 0.3; -0.2; 0.5 |], dtype = torch.float64).requires_grad_ (true)
                        let plan =
                            Expansion.atDecoder [ Centre.Embedding; Centre.Stream 1; Centre.Gamma 4 ]
                            |> Expansion.withOrder order
                            |> Expansion.withEngine engine
                            |> Expansion.withWeightTensor (logits.softmax 0L)
                        let r = session.Expand plan
                        expectExact 1e-9 r (sprintf "order %d" order)
                        Expect.tensorClose Accuracy.Float64 r.Target session.Trace.Normed "the target is LN_f(h_L)"
                        let loss = (sumOf r.Terms - r.Target).square().sum ()
                        let grad = torch.autograd.grad([| loss |], [| logits |]).[0]
                        Expect.isTrue
                            (grad.abs().sum().item<float> () > 1e-8)
                            (sprintf "order %d: gradient %O reaches the softmax weights" order grad)
                }
        ]

let plans =
    testList
        "plans as data"
        [
            test "plans compare structurally and print readably" {
                let a = Expansion.atLayer 2 [ Centre.Stream 0; Centre.Gamma 1 ]
                let b = Expansion.atLayer 2 [ Centre.Stream 0; Centre.Gamma 1 ]
                Expect.equal a b "same plan, built twice"
                Expect.notEqual a (a |> Expansion.withOrder 2) "different order"
                Expect.notEqual (Centre.Terms a) (Centre.Terms(a |> Expansion.withEngine Engine.Jvp)) "different engine"
                let plan = Carving.twoStep 1 Engine.Taylor
                let expected =
                    "expand the decoder around {terms of [expand layer 2 around {Enc, γ₁(Enc)} at order 1, uniform weights, Taylor]} at order 1, uniform weights, Taylor"
                Expect.equal (Print.plan plan) expected "the quickstart plan"
                Expect.equal (string plan) expected "ToString delegates to the printer"
                Expect.equal (sprintf "%A" plan) expected "%A prints the same"
                Expect.equal
                    (sprintf "%O" (Centre.Terms plan))
                    (Print.centre (Centre.Terms plan))
                    "a centre prints as in path names"
            }
            test "the toy network prints its structure" {
                let expected =
                    String.concat
                        "\n"
                        [
                            "toy: vocab 100, width 4, 2 residual layers in 2 blocks"
                            "  γ1 [block1, block 1]: Linear(block1.fc1.weight, block1.fc1.bias) ▸ ReLU ▸ Linear(block1.fc2.weight, block1.fc2.bias)"
                            "  γ2 [block2, block 2]: Linear(block2.fc1.weight, block2.fc1.bias) ▸ ReLU ▸ Linear(block2.fc2.weight, block2.fc2.bias)"
                            "  LN_f: LayerNorm(ln_f.weight)"
                            "  U: unembed.weight"
                        ]
                Expect.equal (string (Toy.create 0 4 torch.float32)) expected "Net.ToString"
            }
            test "centre paths print as the paper writes them" {
                let render c = Print.centre c
                Expect.equal (render (Centre.Stream 0)) "Enc" "h₀"
                Expect.equal (render (Centre.Stream 3)) "h₃" "h₃"
                Expect.equal (render (Centre.Gamma 4)) "γ₄(h₃)" "γ₄"
                Expect.equal (render (Centre.Difference(Centre.Stream 6, Centre.Stream 3))) "(h₆ − h₃)" "difference"
                Expect.equal
                    (string (Path.Jet(JetTarget.Gamma 12, 3, Path.Origin Centre.Embedding)))
                    "J³γ₁₂(Emb)"
                    "two-digit layer"
            }
        ]

let caching =
    testSequenced
    <| testList
        "one forward pass"
        [
            test "a composed plan and its parts evaluate with exactly one forward pass" {
                use net = Toy.createDeep 4 8 4 torch.float64
                let before = Trace.forwardPasses ()
                use session = Expand.session net (Carving.randomPrompt 5 net.Vocab 4)
                let l1 = Expansion.atLayer 1 [ Centre.Encoder ]
                let l2 = Expansion.atLayer 2 [ Centre.Terms l1; Centre.Stream 1 ]
                let l3 = Expansion.atLayer 3 [ Centre.Terms l2; Centre.Gamma 2 ]
                let dec = Expansion.atDecoder [ Centre.Terms l3; Centre.Stream 4 ] |> Expansion.withOrder 2
                session.Unembed(session.Expand dec) |> ignore
                session.Expand l2 |> ignore
                session.Expand(Expansion.atDecoder [ Centre.Stream 2 ]) |> ignore
                Expect.equal (Trace.forwardPasses () - before) 1L "forward passes"
                Expect.isTrue (obj.ReferenceEquals(session.Expand l2, session.Expand l2)) "plans are memoised"
            }
            test "repeated sessions do not grow the live tensor count" {
                use net = Toy.create 0 8 torch.float32
                let once () =
                    use session = Expand.session net (Carving.randomPrompt 1 net.Vocab 5)
                    session.Unembed(session.Expand(Carving.twoStep 2 Engine.Taylor)) |> ignore
                Expect.noTensorGrowth 0L 200 once "200 sessions"
            }
        ]

let generic =
    testList
        "generic expand"
        [
            test "Σ terms + remainder = f(variate) for any function, centres and variate of the input" {
                let w = randn 60 [ 5L; 5L ]
                let f = { Name = "f"; Apply = fun (x: Tensor) -> torch.tanh (x.matmul w) }
                let centres =
                    [
                        { Name = "x/2"; Apply = fun (z: Tensor) -> z * 0.5 }
                        { Name = "sin x"; Apply = fun (z: Tensor) -> torch.sin z }
                    ]
                let variate = { Name = "x"; Apply = id }
                let z = randn 61 [ 3L; 5L ]
                for order in 0..3 do
                    let r =
                        Expand.generic
                            {
                                Function = f
                                Centres = centres
                                Variate = variate
                                Order = order
                                Weights = Weights.Fixed [ 0.25; 0.75 ]
                            }
                            z
                    Expect.tensorClose
                        Accuracy.Float64
                        (sumOf r.Terms + r.Remainder)
                        (f.Apply z)
                        (sprintf "order %d" order)
                    Expect.equal
                        (r.Terms |> List.map (fun t -> string t.Path))
                        [
                            (if order = 0 then
                                 "f(x/2)"
                             else
                                 sprintf "J%cf(x/2)" "⁰¹²³".[order])
                            (if order = 0 then
                                 "f(sin x)"
                             else
                                 sprintf "J%cf(sin x)" "⁰¹²³".[order])
                        ]
                        "names"
            }
        ]

let badInput =
    let net = Toy.create 0 8 torch.float32
    let tokens = Carving.randomPrompt 0 net.Vocab 4
    let expand plan () =
        use session = Expand.session net tokens
        session.Expand plan |> ignore
    testList
        "bad plans and inputs"
        [
            test "a layer outside 1..L names the valid range" {
                Expect.throwsWith<IndexRangeException>
                    [ "Residual layer 7"; "1..2" ]
                    (expand (Expansion.atLayer 7 [ Centre.Encoder ]))
                    "layer 7"
                Expect.throwsWith<IndexRangeException>
                    [ "1..2" ]
                    (expand (Expansion.atLayer 0 [ Centre.Encoder ]))
                    "layer 0"
                Expect.throwsWith<IndexRangeException>
                    [ "Site.Decoder" ]
                    (expand (Expansion.atLayer 3 [ Centre.Encoder ]))
                    "layer L+1 points at the decoder"
            }
            test "streams and γ outside their ranges" {
                Expect.throwsWith<IndexRangeException>
                    [ "h_9"; "h_0..h_2" ]
                    (expand (Expansion.atDecoder [ Centre.Stream 9 ]))
                    "stream 9"
                Expect.throwsWith<IndexRangeException>
                    [ "layer 0"; "1..2" ]
                    (expand (Expansion.atDecoder [ Centre.Gamma 0 ]))
                    "γ₀"
            }
            test "decoder misuse" {
                let decoder = Expansion.atDecoder [ Centre.Encoder ]
                Expect.throwsWith<InvalidPlanException>
                    [ "decoder"; "cannot be centres" ]
                    (expand (Expansion.atLayer 2 [ Centre.Terms decoder ]))
                    "decoder terms as centres"
                Expect.throwsWith<InvalidPlanException>
                    [ "Only decoder expansions" ]
                    (fun () ->
                        use session = Expand.session net tokens
                        session.Unembed(session.Expand(Expansion.atLayer 1 [ Centre.Encoder ])) |> ignore)
                    "unembedding a layer expansion"
            }
            test "a bad term index is found when the inner plan is evaluated" {
                let inner = Expansion.atLayer 1 [ Centre.Encoder ]
                Expect.throwsWith<IndexRangeException>
                    [ "Term 5"; "the order-1 expansion at layer 1"; "0..1" ]
                    (expand (Expansion.atLayer 2 [ Centre.Term(inner, 5) ]))
                    "term index"
            }
            test "weights that fit a Terms centre only by count are checked at evaluation, with the same messages" {
                let inner = Expansion.atLayer 1 [ Centre.Encoder ]
                // Terms of `inner` stands for 2 centres; with Embedding that makes 3.
                let fixedPlan =
                    Expansion.atLayer 2 [ Centre.Terms inner; Centre.Embedding ]
                    |> Expansion.withWeights (Weights.Fixed [ 1.0; 2.0 ])
                Expect.throwsWith<InvalidPlanException>
                    [ "2 weights were given for 3 centres"; "one weight per centre" ]
                    (expand fixedPlan)
                    "fixed weights"
                let tensorPlan =
                    Expansion.atLayer 2 [ Centre.Terms inner ] |> Expansion.withWeightTensor (torch.ones 3L)
                Expect.throwsWith<InvalidPlanException>
                    [ "[3]"; "2 centres"; "first dimension must be 2" ]
                    (expand tensorPlan)
                    "weight tensor"
                expand
                    (Expansion.atLayer 2 [ Centre.Terms inner; Centre.Embedding ]
                     |> Expansion.withWeights (Weights.Fixed [ 1.0; 2.0; 3.0 ]))
                    ()
            }
            test "token ids outside the vocabulary and sequences longer than the position table" {
                Expect.throwsWith<IndexRangeException>
                    [ "Token id 100"; "0..99" ]
                    (fun () -> Expand.session net (torch.tensor [| 3L; 100L |]) |> ignore)
                    "id 100"
                Expect.throwsWith<IndexRangeException>
                    [ "Token id -1" ]
                    (fun () -> Expand.session net (torch.tensor [| -1L |]) |> ignore)
                    "id −1"
                Expect.throwsWith<DTypeException>
                    [ "integer" ]
                    (fun () -> Expand.session net (torch.ones 3L) |> ignore)
                    "float ids"
                Expect.throwsWith<ShapeMismatchException>
                    [ "empty" ]
                    (fun () -> Expand.session net (torch.zeros ([| 1L; 0L |], dtype = torch.int64)) |> ignore)
                    "no tokens"
                let positional = build 1 4 [ Mlp Activation.Relu ] torch.float32 (Some 4)
                Expect.throwsWith<IndexRangeException>
                    [ "5 tokens"; "at most 4" ]
                    (fun () -> Expand.session positional (torch.zeros ([| 1L; 5L |], dtype = torch.int64)) |> ignore)
                    "too long"
            }
            test "a centre function with the wrong shape" {
                let bad = Centre.Custom { Name = "bad"; Apply = fun _ -> torch.zeros ([| 2L |]) }
                Expect.throwsWith<ShapeMismatchException>
                    [ "'bad'"; "[batch, seq, d]"; "[1, 4, 8]" ]
                    (expand (Expansion.atDecoder [ bad ]))
                    "custom centre"
            }
        ]

/// Every kind of invalid plan fails where it is made, with one exception type per kind and a message that says what
/// is valid, so no invalid plan reaches a session.
let private fails<'E when 'E :> exn> fragments (make: unit -> Expansion) message =
    Expect.throwsWith<'E> fragments (make >> ignore) message

let invalidPlans =
    let two = Expansion.atLayer 1 [ Centre.Encoder; Centre.Embedding ]
    testList
        "invalid plans cannot be made"
        [
            test "orders outside 0..MaxOrder" {
                for order in [ -1; Expansion.MaxOrder + 1; Int32.MinValue ] do
                    fails<InvalidOrderException>
                        [ "The expansion order must be an integer in 0..64"; sprintf "got %d" order ]
                        (fun () -> two |> Expansion.withOrder order)
                        (sprintf "order %d" order)
                fails<InvalidOrderException>
                    [ "0..64" ]
                    (fun () -> Expansion.Create(Site.Decoder, [ Centre.Encoder ], -3, Weights.Uniform, Engine.Taylor))
                    "the constructor checks too"
                for order in [ 0; Expansion.MaxOrder ] do
                    Expect.equal (two |> Expansion.withOrder order).Order order (sprintf "order %d is valid" order)
            }
            test "no centres, a null centre or a null part" {
                fails<InvalidPlanException>
                    [ "layer 1"; "no centres"; "at least one" ]
                    (fun () -> Expansion.atLayer 1 [])
                    "no centres"
                fails<InvalidPlanException>
                    [ "the decoder"; "no centres" ]
                    (fun () -> Expansion.atDecoder (Unchecked.defaultof<Centre list>))
                    "a null list"
                let nullCentre = Unchecked.defaultof<Centre>
                fails<MissingArgumentException>
                    [ "Centre 1 (0-based)"; "is null" ]
                    (fun () -> Expansion.atDecoder [ Centre.Encoder; nullCentre ])
                    "a null centre"
                fails<MissingArgumentException>
                    [ "Centre 0 (0-based)"; "contains a null centre" ]
                    (fun () -> Expansion.atDecoder [ Centre.Difference(Centre.Stream 2, nullCentre) ])
                    "half a difference"
                fails<MissingArgumentException>
                    [ "Centre 0 (0-based)"; "null plan" ]
                    (fun () -> Expansion.atDecoder [ Centre.Terms(Unchecked.defaultof<Expansion>) ])
                    "terms of a null plan"
                fails<MissingArgumentException>
                    [ "null plan" ]
                    (fun () -> Expansion.atDecoder [ Centre.Term(Unchecked.defaultof<Expansion>, 0) ])
                    "a term of a null plan"
                fails<MissingArgumentException>
                    [ "without a function" ]
                    (fun () -> Expansion.atDecoder [ Centre.Custom { Name = "f"; Apply = Unchecked.defaultof<_> } ])
                    "a custom centre without a function"
                fails<MissingArgumentException>
                    [ "site is null" ]
                    (fun () -> Expansion.at (Unchecked.defaultof<Site>) [ Centre.Encoder ])
                    "a null site"
                fails<MissingArgumentException>
                    [ "engine is null" ]
                    (fun () -> two |> Expansion.withEngine (Unchecked.defaultof<Engine>))
                    "a null engine"
            }
            test "fixed weights: finite, one per centre" {
                fails<InvalidPlanException>
                    [ "3 weights were given for 2 centres"; "one weight per centre" ]
                    (fun () -> two |> Expansion.withWeights (Weights.Fixed [ 1.0; 2.0; 3.0 ]))
                    "too many"
                fails<InvalidPlanException>
                    [ "0 weights were given for 2 centres" ]
                    (fun () -> two |> Expansion.withWeights (Weights.Fixed []))
                    "none"
                for bad in [ nan; infinity; -infinity ] do
                    fails<InvalidPlanException>
                        [ "Weight 1 (0-based)"; "finite" ]
                        (fun () -> two |> Expansion.withWeights (Weights.Fixed [ 0.5; bad ]))
                        (sprintf "weight %g" bad)
                fails<InvalidPlanException>
                    [ "finite" ]
                    (fun () ->
                        Expansion.atLayer 2 [ Centre.Terms two ] |> Expansion.withWeights (Weights.Fixed [ nan ]))
                    "finite even when the count is not known yet"
                fails<MissingArgumentException>
                    [ "weights are null" ]
                    (fun () -> two |> Expansion.withWeights (Unchecked.defaultof<Weights>))
                    "null weights"
                fails<MissingArgumentException>
                    [ "fixed weights are null" ]
                    (fun () -> two |> Expansion.withWeights (Weights.Fixed(Unchecked.defaultof<float list>)))
                    "a null list"
                // With a Terms centre the count is known only at evaluation (see the bad-plans tests).
                Expect.equal
                    (Expansion.atLayer 2 [ Centre.Terms two ] |> Expansion.withWeights (Weights.Fixed [ 1.0; 2.0; 3.0 ]))
                        .Weights
                    (Weights.Fixed [ 1.0; 2.0; 3.0 ])
                    "deferred"
            }
            test "weight tensors: 1..3 dimensions, the first one per centre" {
                fails<ShapeMismatchException>
                    [ "shape []"; "[N], [N, seq] or [N, batch, seq]" ]
                    (fun () -> two |> Expansion.withWeightTensor (torch.tensor 1.0))
                    "a scalar"
                fails<ShapeMismatchException>
                    [ "[2, 1, 1, 1]" ]
                    (fun () -> two |> Expansion.withWeightTensor (torch.ones (2L, 1L, 1L, 1L)))
                    "four dimensions"
                fails<InvalidPlanException>
                    [ "[3, 4]"; "2 centres"; "first dimension must be 2" ]
                    (fun () -> two |> Expansion.withWeightTensor (torch.ones (3L, 4L)))
                    "three rows for two centres"
                fails<MissingArgumentException>
                    [ "weight tensor is null" ]
                    (fun () -> two |> Expansion.withWeightTensor null)
                    "null"
                for shape in [ [| 2L |]; [| 2L; 5L |]; [| 2L; 1L; 5L |] ] do
                    (two |> Expansion.withWeightTensor (torch.ones shape)) |> ignore
            }
            test "Expansion.Create is the only way in" {
                Expect.isEmpty (typeof<Expansion>.GetConstructors()) "no public constructor"
                let plan =
                    Expansion.Create(
                        Site.Layer 2,
                        [ Centre.Stream 0; Centre.Gamma 1 ],
                        1,
                        Weights.Uniform,
                        Engine.Taylor
                    )
                Expect.equal
                    plan
                    (Expansion.atLayer 2 [ Centre.Stream 0; Centre.Gamma 1 ])
                    "the module's functions build the same plans"
            }
            test "valid plans compare by value, so sessions memoise them" {
                let make () =
                    Expansion.atDecoder
                        [
                            Centre.Terms(two |> Expansion.withOrder 2)
                            Centre.Difference(Centre.Stream 2, Centre.Stream 1)
                        ]
                    |> Expansion.withWeights (Weights.Fixed [ 0.5; 0.5; 1.0 ])
                let memo = Collections.Generic.Dictionary<Expansion, int>(HashIdentity.Structural)
                memo.[make ()] <- 1
                Expect.isTrue (memo.ContainsKey(make ())) "a plan built twice finds the first"
                Expect.equal (hash (make ())) (hash (make ())) "equal hashes"
                Expect.isFalse
                    (memo.ContainsKey(make () |> Expansion.withEngine Engine.Jvp))
                    "another engine is another plan"
            }
            test "the generic expansion checks orders and weights with the same messages" {
                let f = { Name = "f"; Apply = torch.tanh }
                let plan = { Function = f; Centres = [ f ]; Variate = f; Order = -1; Weights = Weights.Uniform }
                let x = torch.ones 2L
                Expect.throwsWith<InvalidOrderException>
                    [ "The expansion order must be an integer in 0..64"; "got -1" ]
                    (fun () -> Expand.generic plan x |> ignore)
                    "order"
                Expect.throwsWith<InvalidPlanException>
                    [ "2 weights were given for 1 centre;" ]
                    (fun () -> Expand.generic { plan with Order = 1; Weights = Weights.Fixed [ 1.0; 2.0 ] } x |> ignore)
                    "weights"
            }
        ]

[<Tests>]
let all = testList "expansion" [ properties; toyTests; plans; caching; generic; badInput; invalidPlans ]
