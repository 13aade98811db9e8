/// OLMo, OLMo-2, Phi-3 and Gemma 2: every stream, γ and logit against the reference implementations in every stored
/// dtype, the expansion invariants with both engines, the Taylor rules of their new primitive pieces (q/k/v clamps,
/// q/k norms over whole projections, soft-capped scores, the soft-cap itself) against nested JVPs, the final
/// soft-cap's treatment by lenses, carvings and sweeps, and each family's quirks and errors.
module Jet.Core.Tests.ModernFamilyTests

open System.IO
open System.Text.Json
open Expecto
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps
open Jet.Core.Primitives
open Jet.Core.Tests.TestKit
open Jet.Core.Tests.FamilyCheckpoints
open Jet.Core.Tests.ModernFamilies

let private tokens = [| 3L; 17L; 0L; 39L; 8L; 8L; 21L; 5L; 12L |]
let private exact = Accuracy.Of(1e-9, 1e-9)
let private load (dir: string) = Model.load dir torch.float64 torch.CPU

let private attentions (net: Net) =
    net.Spec.Layers
    |> List.choose (fun l ->
        Fn.tryPick
            (function
            | Attention a -> Some a
            | _ -> None)
            l.Gamma)

/// Rewrites one key of a checkpoint's config.json (null removes its value).
let private setConfig (dir: string) (key: string) (value: string) =
    let path = Path.Combine(dir, "config.json")
    let json = Nodes.JsonNode.Parse(File.ReadAllText path).AsObject()
    json.[key] <- (if value = "null" then null else Nodes.JsonNode.Parse value)
    File.WriteAllText(path, json.ToJsonString())

/// A random attention spec and parameters (float64) on width 6, for the Taylor-rule cases.
let private attentionCase (seed: int) (projections: bool -> Projections) (scaling: ScoreScaling) =
    use g = new torch.Generator(uint64 seed)
    let store = ResizeArray<string * Tensor>()
    let add name (shape: int64 list) scale offset =
        store.Add(name, torch.randn (Array.ofList shape, dtype = torch.float64, generator = g) * scale + offset)
    let heads, kvHeads, headDim, d = 4, 2, 3, 6
    add "q" [ int64 (heads * headDim); int64 d ] 0.8 0.0
    add "k" [ int64 (kvHeads * headDim); int64 d ] 0.8 0.0
    add "v" [ int64 (kvHeads * headDim); int64 d ] 0.8 0.0
    add "o" [ int64 d; int64 (heads * headDim) ] 0.5 0.0
    add "qn" [ int64 (heads * headDim) ] 0.1 1.0
    add "kn" [ int64 (kvHeads * headDim) ] 0.1 1.0
    let fn =
        Attention
            {
                Heads = heads
                KvHeads = kvHeads
                HeadDim = headDim
                Projections = projections true
                Output = { Weight = "o"; Bias = None }
                Rotary =
                    Some { Fraction = 1.0; Base = 100.0; Style = RotaryStyle.RotateHalf; Scaling = RotaryScaling.Plain }
                Scaling = scaling
                Window = Some 3
            }
    fn, ParameterStore.OfSeq store

let private separate _ =
    Projections.Separate({ Weight = "q"; Bias = None }, { Weight = "k"; Bias = None }, { Weight = "v"; Bias = None })

let private normQk =
    QkvStep.NormQk
        {
            Query = { Weight = Some "qn"; Eps = 1e-5; PlusOne = false }
            Key = { Weight = Some "kn"; Eps = 1e-5; PlusOne = false }
            PerHead = false
        }

let private taylorCases: (string * (unit -> Fn * ParameterStore)) list =
    [
        "q/k/v clamped to ±0.7 (OLMo clip_qkv)",
        fun () ->
            attentionCase 5 (fun b -> Projections.Then(separate b, QkvStep.Clip 0.7)) ScoreScaling.InverseSqrtHeadDim
        "q/k RMSNorm over whole projections (OLMo-2)",
        fun () -> attentionCase 6 (fun b -> Projections.Then(separate b, normQk)) ScoreScaling.InverseSqrtHeadDim
        "q/k norms then clamps",
        fun () ->
            attentionCase
                7
                (fun b -> Projections.Then(Projections.Then(separate b, normQk), QkvStep.Clip 1.1))
                ScoreScaling.InverseSqrtHeadDim
        "scores scaled then soft-capped at 1.5 (Gemma 2)",
        fun () -> attentionCase 8 separate (ScoreScaling.SoftCapped(0.5, 1.5))
        "the soft-cap activation c·tanh(x/c)",
        fun () ->
            Chain [ Linear { Weight = "w"; Bias = Some "b" }; Act(Activation.SoftCap 0.8) ],
            ParameterStore.OfSeq [ "w", randn 9 [ 6L; 6L ]; "b", randn 10 [ 6L ] * 0.1 ]
    ]

let taylorTests =
    testList
        "Taylor rules of the new pieces equal nested JVPs (float64, orders 0–4)"
        [
            for name, make in taylorCases do
                test name {
                    use _ = torch.NewDisposeScope()
                    let fn, parameters = make ()
                    for order in 0..4 do
                        let x, y = randn (20 + order) [ 2L; 5L; 6L ], randn (40 + order) [ 2L; 5L; 6L ]
                        let taylor = Engines.series Engine.Taylor parameters fn order x (y - x)
                        let jvp = Engines.series Engine.Jvp parameters fn order x (y - x)
                        TaylorTests.expectAgree taylor jvp (sprintf "%s, order %d" name order)
                }
            test "the clamp's series: inside ±c every coefficient passes, outside only the constant ±c" {
                let x = torch.tensor([| 0.5; 2.0; -3.0; 3.0; 4.0; 5.0 |], dtype = torch.float64).reshape (3L, 2L)
                let clipped = SelfAttention.clipSeries 1.0 x
                Expect.tensorClose
                    exact
                    clipped
                    (torch.tensor([| 0.5; 1.0; -3.0; 0.0; 4.0; 0.0 |], dtype = torch.float64).reshape (3L, 2L))
                    "x₀ = 0.5 keeps its series; x₀ = 2 becomes the constant 1"
            }
        ]

let referenceTests =
    CheckpointTests.referenceTestsFor "OLMo, OLMo-2, Phi-3 and Gemma 2 match their reference implementations" cases

let expansionTests =
    CheckpointTests.expansionTestsFor "expansion invariants hold on OLMo, OLMo-2, Phi-3 and Gemma 2" cases

/// The whole Gemma 2 decoder written from the reference: (1 + w) RMSNorm, tied E, c·tanh(·/c).
let private referenceDecoder (case: FamilyCase) (h: Tensor) : Tensor =
    let w = case.Weights
    let normed = ReferenceModels.rmsNorm h w.["model.norm.weight"] 1e-6 true
    torch.tanh (normed.matmul (w.["model.embed_tokens.weight"].t ()) / 3.0) * 3.0

let softCapTests =
    testList
        "the final logit soft-cap"
        [
            test "the lens at order 0 is the soft-capped logit lens, and at h_L every order reads the model's logits" {
                let case = gemma2Case 51 "F64" false
                use model = load case.Dir
                let reference = case.Reference tokens
                for order in 0..2 do
                    use lens =
                        IterativeLens.run model.Net (torch.tensor tokens) { LensOptions.Default with Order = order }
                    for s in lens.Streams do
                        if order = 0 || s.Stream = model.Net.Depth then
                            Expect.tensorClose
                                exact
                                s.Logits.[0]
                                (referenceDecoder case reference.Streams.[s.Stream])
                                (sprintf "order %d, stream %d" order s.Stream)
                    Expect.tensorClose exact lens.Logits.[0] reference.Logits "the model's logits"
            }
            test "the order-1 and order-2 lenses are jets of the whole decoder, soft-cap included" {
                let case = gemma2Case 52 "F64" false
                use model = load case.Dir
                let reference = case.Reference tokens
                let hL = reference.Streams.[model.Net.Depth]
                use lens1 = IterativeLens.run model.Net (torch.tensor tokens) { LensOptions.Default with Order = 1 }
                use lens2 = IterativeLens.run model.Net (torch.tensor tokens) { LensOptions.Default with Order = 2 }
                for stream in [ 0; 3; 6 ] do
                    let c = reference.Streams.[stream]
                    let v = hL - c
                    // D(c + t v) by forward differentiation through autograd's double-vjp, on the reference decoder.
                    let coefficients = Jet.coefficientsAlongPath (referenceDecoder case) 2 [ c; v ]
                    let first = coefficients.[0] + coefficients.[1]
                    let second = first + coefficients.[2]
                    Expect.tensorClose exact lens1.Streams.[stream].Logits.[0] first (sprintf "order 1 at h%d" stream)
                    Expect.tensorClose exact lens2.Streams.[stream].Logits.[0] second (sprintf "order 2 at h%d" stream)
                    Expect.equal
                        (string lens1.Streams.[stream].Path)
                        ("J¹(cap·U·LN)(" + Print.centre (Centre.Stream stream) + ")")
                        "path"
                    // Not U·J¹LN with the cap applied afterwards: the two differ once the cap bends.
                    let capAfter = torch.tanh ((coefficients.[0] + coefficients.[1]) / 3.0) * 3.0
                    Expect.tensorNotClose exact lens1.Streams.[stream].Logits.[0] capAfter "the cap is inside the jet"
            }
            test "both engines give the same capped lens" {
                let case = gemma2Case 53 "F64" true
                use model = load case.Dir
                use session = Expand.session model.Net (torch.tensor tokens)
                let trace = session.Trace
                let map = Decoder.map model.Net
                let x, y = trace.Stream 2, trace.Stream model.Net.Depth
                let taylor = Engines.jet Engine.Taylor model.Net.Parameters map 3 x y
                let jvp = Engines.jet Engine.Jvp model.Net.Parameters map 3 x y
                Expect.tensorClose exact taylor jvp "J³ of the decoder map"
            }
            test "carvings decompose the pre-cap logits and reconstruct the capped ones; sweep rows are capped" {
                let case = gemma2Case 54 "F64" false
                use model = load case.Dir
                let net = model.Net
                use session = Expand.session net (torch.tensor tokens)
                let carving = session.Unembed(session.Expand(Carving.twoStep 2 Engine.Taylor))
                Expect.equal carving.SoftCap (Some 3.0) "the carving carries the cap"
                let summary = PathSummary.ofLogitPaths carving
                Expect.isLessThan summary.ReconstructionError 1e-9 "cap(Σ paths + remainder) = logits"
                let h = (session.Trace.Stream net.Depth).[0]
                Expect.tensorClose
                    exact
                    (Decoder.rows net (Decoder.normalize net h))
                    (Decoder.ofStream net h)
                    "rows = ofStream"
                Expect.isLessThan
                    ((Decoder.rows net (Decoder.normalize net h)).abs().max().item<float> ())
                    3.0
                    "|logits| < cap"
            }
            test "a joint lens on a capped network compares capped logits" {
                let case = gemma2Case 55 "F64" false
                use model = load case.Dir
                use result =
                    JointLens.fit
                        model.Net
                        (torch.tensor tokens)
                        { JointLensOptions.Default with Iterations = 3; Streams = [ 2; 8 ] }
                Expect.isLessThan (result.Combined.abs().max().item<float> ()) 3.0 "combined logits are capped"
            }
        ]

let sweepTests =
    testList
        "vocabulary sweeps"
        [
            for name, make in cases do
                test (sprintf "%s: the embed and mlp:1 bigram paths read every row through the decoder" name) {
                    let case = make "F64"
                    use model = load case.Dir
                    let net = model.Net
                    let options = { SweepOptions.Default with Space = ScoreSpace.Logit }
                    let first = torch.arange (int64 net.Vocab, dtype = torch.int64)
                    let embedded = Trace.embed net (first.unsqueeze 1L)
                    let mlp = net.Spec.Layers.[1].Gamma
                    for path, through in
                        [
                            Readouts.embedding, embedded
                            Readouts.mlpPath net 1, Forward.apply net.Parameters mlp embedded
                        ] do
                        let scores = Bigrams.scores net path options first
                        Expect.tensorClose exact scores ((Decoder.ofStream net through).squeeze 1L) (sprintf "%A" path)
                        match Decoder.softCap net with
                        | Some c -> Expect.isLessThan (scores.abs().max().item<float> ()) c "capped rows"
                        | None -> ()
                    let best = Bigrams.globalTopK net (Readouts.mlpPath net 1) 5 SweepOptions.Default
                    Expect.equal best.Length 5 "top 5 pairs"
                }
        ]

let quirkTests =
    testList
        "OLMo, OLMo-2, Phi-3 and Gemma 2 quirks"
        [
            test "OLMo: clip_qkv clamps (the model without it differs); LayerNorms have no parameters" {
                let case = olmoLike 61 "F64" false (Some 1.0) false
                use model = load case.Dir
                CheckpointTests.checkAgainstReference exact case model
                Expect.stringContains (string model.Net.Spec.Layers.[0].Gamma) "clipped to ±1" "printed"
                Expect.stringContains (string model.Net.Spec.FinalNorm) "LayerNorm(—)" "no weight"
                setConfig case.Dir "clip_qkv" "null"
                use unclipped = load case.Dir
                use trace = Trace.run unclipped.Net (torch.tensor tokens)
                Expect.tensorNotClose exact (Trace.logits trace).[0] (case.Reference tokens).Logits "clip_qkv matters"
            }
            test "OLMo-2: q/k norms of widths heads·head_dim and kv_heads·head_dim; post-norms inside γ; no clip_qkv" {
                let case = olmoLike 62 "F64" true None false
                use model = load case.Dir
                let gamma = string model.Net.Spec.Layers.[0].Gamma
                Expect.stringContains
                    gamma
                    "q-norm RMSNorm(layers.0.self_attn.q_norm.weight), k-norm RMSNorm(layers.0.self_attn.k_norm.weight), out"
                    "whole-projection q/k norms (no \"per head\")"
                Expect.stringContains gamma "▸ RMSNorm(layers.0.post_attention_layernorm.weight)" "post-norm"
                setConfig case.Dir "clip_qkv" "8"
                Expect.throwsWith<CheckpointException>
                    [ "clip_qkv"; "OLMo-2" ]
                    (fun () -> load case.Dir |> ignore)
                    "clip"
            }
            test "Phi-3: gate_up_proj is read as two views of the stored rows; longrope is refused by name" {
                let case = phi3Case 63 "F64" true
                use model = load case.Dir
                let stored = case.Weights.["model.layers.1.mlp.gate_up_proj.weight"]
                Expect.tensorClose
                    exact
                    model.Net.Parameters.["layers.1.mlp.gate_up_proj.weight[20:40]"]
                    (stored.narrow (0L, 20L, 20L))
                    "up rows"
                for a in attentions model.Net do
                    Expect.equal a.Window (Some 3) "sliding_window"
                setConfig case.Dir "rope_scaling" """{"type":"longrope","short_factor":[1.0],"long_factor":[1.0]}"""
                Expect.throwsWith<CheckpointException>
                    [ "'rope_scaling'"; "rope_type 'longrope'"; "default, linear, llama3" ]
                    (fun () -> load case.Dir |> ignore)
                    "longrope"
            }
            test "OLMo, OLMo-2 and Gemma 2 read llama3 and linear rope_scaling as HF computes the frequencies" {
                let llama3 =
                    {
                        Json =
                            dict
                                [
                                    "rope_type", box "llama3"
                                    "factor", box 4.0
                                    "low_freq_factor", box 1.0
                                    "high_freq_factor", box 4.0
                                    "original_max_position_embeddings", box 12
                                ]
                        Frequencies =
                            fun theta dim -> Llama3QwenCheckpoints.llama3Frequencies theta dim 4.0 1.0 4.0 12.0
                    }
                let linear =
                    {
                        Json = dict [ "type", box "linear"; "factor", box 2.5 ]
                        Frequencies = fun theta dim -> Llama3QwenCheckpoints.linearFrequencies theta dim 2.5
                    }
                let makers =
                    [
                        "olmo", (fun seed rope -> olmoScaled seed "F64" false (Some 1.0) false (Some rope))
                        "olmo2", (fun seed rope -> olmoScaled seed "F64" true None false (Some rope))
                        "gemma2", (fun seed rope -> gemma2Scaled seed "F64" false (Some rope))
                    ]
                for name, make in makers do
                    for ropeName, rope, expected in
                        [
                            "llama3",
                            llama3,
                            RotaryScaling.Llama3
                                { Factor = 4.0; LowFreqFactor = 1.0; HighFreqFactor = 4.0; OriginalContext = 12 }
                            "linear", linear, RotaryScaling.Linear 2.5
                        ] do
                        let case = make 71 rope
                        let scaled =
                            use model = load case.Dir
                            for a in attentions model.Net do
                                Expect.equal a.Rotary.Value.Scaling expected (sprintf "%s: %s scaling" name ropeName)
                            CheckpointTests.checkAgainstReference exact case model
                            use trace = Trace.run model.Net (torch.tensor tokens)
                            (Trace.logits trace).[0].clone ()
                        setConfig case.Dir "rope_scaling" "null"
                        use plain = load case.Dir
                        use trace = Trace.run plain.Net (torch.tensor tokens)
                        Expect.tensorNotClose
                            exact
                            (Trace.logits trace).[0]
                            scaled
                            (sprintf "%s: the %s scaling changes the logits" name ropeName)
            }
            test "Phi-3: a gate_up_proj of the wrong height names the fused weight" {
                let case = phi3Case 64 "F32" false
                setConfig case.Dir "intermediate_size" "21"
                Expect.throwsWith<CheckpointException>
                    [ "gate_up_proj"; "[42, 16]"; "fused" ]
                    (fun () -> load case.Dir |> ignore)
                    "shape"
            }
            test "Gemma 2: windows follow layer_types, scores capped, logits capped; null caps turn them off" {
                let case = gemma2Case 65 "F64" true
                use model = load case.Dir
                Expect.equal
                    (attentions model.Net |> List.map (fun a -> a.Window))
                    [ None; Some 3; Some 3; None ]
                    "layer_types"
                for a in attentions model.Net do
                    Expect.equal a.Scaling (ScoreScaling.SoftCapped(0.5, 2.0)) "query_pre_attn_scalar 4, cap 2"
                Expect.equal model.Net.Spec.Unembedding.SoftCap (Some 3.0) "final cap"
                Expect.stringContains (string model.Net) "logits soft-capped at 3" "printed"
                setConfig case.Dir "final_logit_softcapping" "null"
                setConfig case.Dir "attn_logit_softcapping" "null"
                use uncapped = load case.Dir
                Expect.equal uncapped.Net.Spec.Unembedding.SoftCap None "no final cap"
                for a in attentions uncapped.Net do
                    Expect.equal a.Scaling (ScoreScaling.By 0.5) "no score cap"
            }
            test "the families are found by class name; jet info's summary counts every stored scalar once" {
                for name, make in cases do
                    let case = make "F32"
                    use model = Model.load case.Dir torch.float32 torch.CPU
                    Expect.equal model.Family case.Name name
                    Expect.stringStarts (string model.Net) (case.Name + ":") "printed structure"
                    let summary = Model.summary model
                    Expect.equal (summary.Heads, summary.KvHeads) (4, 2) (name + ": heads")
                    // Fused halves are views and a tied head is the embedding: neither counts twice.
                    let stored = case.Weights |> Map.toSeq |> Seq.sumBy (fun (_, t) -> t.numel ())
                    Expect.equal summary.Parameters stored (name + ": parameters")
            }
        ]

[<Tests>]
let tests =
    testList "modern families" [ taylorTests; referenceTests; expansionTests; softCapTests; sweepTests; quirkTests ]
