/// One record per primitive: every case of `Fn` is either a combinator or a primitive whose rule lists exactly the
/// parameters it reads and whose Taylor rule at order 0 (a constant series) equals its forward definition. The
/// samples are checked against the union's cases by reflection, so a new primitive fails here until it has one.
module Jet.Core.Tests.PrimitiveTests

open Expecto
open Microsoft.FSharp.Reflection
open TorchSharp
open Jet.Core
open Jet.Core.Tests.TestKit
open Jet.Core.Tests.NetGen

/// Every activation, each case built by reflection (a parameter such as ELU's α gets 0.7), so a new one is covered.
let private everyActivation =
    [
        for case in FSharpType.GetUnionCases typeof<Activation> ->
            FSharpValue.MakeUnion(case, case.GetFields() |> Array.map (fun _ -> box 0.7)) :?> Activation
    ]

/// Samples of every case of Fn, as NetGen pieces (width 5), several variants where a spec has options.
let private samples: Piece list =
    let attention = AttentionShape.Plain
    [
        Affine true
        Affine false
        for a in everyActivation do
            Act a
        LayerNorm true
        LayerNorm false
        RmsNorm(true, true)
        RmsNorm(true, false)
        RmsNorm(false, false)
        Attention attention
        Attention
            { attention with
                Heads = 4
                KvHeads = 2
                Fused = Some FusedLayout.Blocked
                Biases = true
                Window = Some 2
            }
        Attention
            { attention with
                HeadDim = 4
                Fused = Some FusedLayout.PerHead
                Rotary =
                    Some { Fraction = 0.5; Base = 10.0; Style = RotaryStyle.Interleaved; Scaling = RotaryScaling.Plain }
            }
        Attention
            { attention with
                HeadDim = 4
                Rotary =
                    Some { Fraction = 1.0; Base = 100.0; Style = RotaryStyle.RotateHalf; Scaling = RotaryScaling.Plain }
                Scaling = ScoreScaling.By 0.3
            }
        Gated(4, Activation.Silu)
        Sum [ Affine true; Act Activation.Tanh ]
        Chain [ LayerNorm true; Affine false ]
        Scale(-1.5, Affine true)
        Opaque
    ]

let private caseName (f: Fn) = (fst (FSharpValue.GetUnionFields(f, typeof<Fn>))).Name

/// The sample as the DSL prints it (the test's name).
let private printed (piece: Piece) =
    use _ = torch.NewDisposeScope()
    string (fst (compile 3 5 piece))

[<Tests>]
let tests =
    testList
        "primitives"
        [
            test "the samples cover every case of Fn" {
                let covered = samples |> List.map (fun piece -> caseName (fst (compile 3 5 piece))) |> Set.ofList
                let all = FSharpType.GetUnionCases typeof<Fn> |> Array.map (fun c -> c.Name) |> Set.ofArray
                let missing = Set.difference all covered
                Expect.isEmpty
                    missing
                    (sprintf
                        "Fn cases without a sample (add one to PrimitiveTests.samples, and a Piece to NetGen): %A"
                        missing)
            }

            for i, piece in List.indexed samples do
                test (
                    sprintf
                        "%d. %s: Taylor at order 0 equals forward; a rule reads exactly the parameters it lists"
                        (i + 1)
                        (printed piece)
                ) {
                    use _ = torch.NewDisposeScope()
                    let fn, parameters = compile 3 5 piece
                    let x = randn 19 [ 2L; 4L; 5L ]
                    match Fn.node fn with
                    | FnNode.Primitive rule ->
                        Expect.equal
                            (List.sort rule.Parameters)
                            parameters.Names
                            (sprintf "%O lists the parameters it was built with" fn)
                        Expect.equal (List.distinct rule.Parameters) rule.Parameters "each parameter listed once"
                        // Only the listed parameters: a rule that reads another one fails with the missing name.
                        let listed = ParameterStore.OfSeq [ for name in rule.Parameters -> name, parameters.[name] ]
                        let forward = rule.Forward listed x
                        let taylor = rule.Taylor listed (x.unsqueeze 0L)
                        Expect.equal
                            taylor.shape
                            (Array.append [| 1L |] forward.shape)
                            "the series is [1, batch, seq, d]"
                        Expect.tensorClose Accuracy.Float64 taylor.[0L] forward (sprintf "%O: Taylor c₀ = forward" fn)
                        Expect.equal (rule.Print()) (string fn) "the rule prints the node"
                    | FnNode.Sum _
                    | FnNode.Chain _
                    | FnNode.Scale _
                    | FnNode.Custom _ ->
                        let forward = Forward.apply parameters fn x
                        Expect.tensorClose
                            Accuracy.Float64
                            (Taylor.series parameters fn (x.unsqueeze 0L)).[0L]
                            forward
                            (sprintf "%O: Taylor c₀ = forward" fn)
                }
        ]
