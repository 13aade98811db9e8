/// Llama 3.x rotary scaling, Qwen2 / Qwen2.5 and Qwen3: the quirks of each against the reference implementations
/// (every stream and γ of every family is compared in CheckpointTests), refusals, the Taylor rules of the new
/// attention pieces against nested JVPs, and lens and bigram sweeps on each family.
module Jet.Core.Tests.Llama3QwenTests

open System
open System.IO
open Expecto
open TorchSharp
open Jet.Core
open Jet.Core.Primitives
open Jet.Core.Models
open Jet.Core.Apps
open Jet.Core.Tests.TestKit
open Jet.Core.Tests.TestCheckpoints
open Jet.Core.Tests.ReferenceModels
open Jet.Core.Tests.FamilyCheckpoints
open Jet.Core.Tests.Llama3QwenCheckpoints
open Jet.Core.Tests.CheckpointTests

let private attentions (net: Net) =
    net.Spec.Layers
    |> List.choose (fun l ->
        l.Gamma
        |> Fn.tryPick (function
            | Attention a -> Some a
            | _ -> None))

/// Rewrites the config.json of a checkpoint directory: `edit` gets and returns the JSON object.
let private editConfig (dir: string) (edit: Text.Json.Nodes.JsonObject -> unit) =
    let path = Path.Combine(dir, "config.json")
    let node = Text.Json.Nodes.JsonNode.Parse(File.ReadAllText path).AsObject()
    edit node
    File.WriteAllText(path, node.ToJsonString())

let private rotaryOf (scaling: RotaryScaling) (theta: float) =
    { Fraction = 1.0; Base = theta; Style = RotaryStyle.RotateHalf; Scaling = scaling }

let ropeScalingTests =
    testList
        "Llama 3.x rotary scaling"
        [
            test "llama3 frequencies equal HF's _compute_llama3_parameters for Llama 3.1 8B and 3.2 1B settings" {
                // Llama 3.1: factor 8, 3.2: factor 32; both theta 500000, head_dim 128 (3.2 1B: 64), original 8192.
                for factor, headDim in [ 8.0, 128; 32.0, 64 ] do
                    let scaling =
                        RotaryScaling.Llama3
                            { Factor = factor; LowFreqFactor = 1.0; HighFreqFactor = 4.0; OriginalContext = 8192 }
                    let mine = SelfAttention.frequencies (rotaryOf scaling 500000.0) headDim
                    let hf = llama3Frequencies 500000.0 headDim factor 1.0 4.0 8192.0
                    Expect.tensorClose
                        (Accuracy.Of(0.0, 1e-12))
                        mine
                        (torch.tensor (hf, dtype = torch.float64))
                        (sprintf "factor %g, head_dim %d" factor headDim)
                    // All three bands occur: kept, blended and divided.
                    let plain = defaultFrequencies 500000.0 headDim
                    let kept = Array.map2 (fun a b -> a = b) hf plain |> Array.filter id |> Array.length
                    let divided =
                        Array.map2 (fun a b -> abs (a - b / factor) < 1e-15 * b) hf plain
                        |> Array.filter id
                        |> Array.length
                    Expect.isGreaterThan kept 0 "some frequencies kept"
                    Expect.isGreaterThan divided 0 "some frequencies divided"
                    Expect.isGreaterThan (hf.Length - kept - divided) 0 "some frequencies blended"
            }
            test "linear frequencies are the plain ones divided by the factor" {
                let mine = SelfAttention.frequencies (rotaryOf (RotaryScaling.Linear 4.0) 10000.0) 16
                Expect.tensorClose
                    (Accuracy.Of(0.0, 1e-14))
                    mine
                    (torch.tensor (linearFrequencies 10000.0 16 4.0, dtype = torch.float64))
                    "inv_freq / factor"
            }
            test "the llama3 config lowers to the scaled rotary; the unscaled reference differs" {
                let case = llama31 101 "F64" true
                use model = load case.Dir torch.float64
                for a in attentions model.Net do
                    Expect.equal
                        a.Rotary.Value.Scaling
                        (RotaryScaling.Llama3
                            { Factor = 8.0; LowFreqFactor = 1.0; HighFreqFactor = 4.0; OriginalContext = 64 })
                        "llama3 scaling read from rope_scaling"
                Expect.stringContains (string model.Net) "rotary 100% RotateHalf llama3 ×8" "printed in the structure"
                checkAgainstReference exact case model
                use trace = Trace.run model.Net (torch.tensor tokens)
                let unscaled = (llama31 101 "F64" false).Reference tokens
                Expect.tensorNotClose
                    (Accuracy.Of(1e-6, 0.0))
                    (Trace.logits trace).[0]
                    unscaled.Logits
                    "without the scaling the logits differ"
            }
            test "linear rope_scaling (older \"type\" key) matches the reference with inv_freq / factor" {
                let case =
                    modernCase
                        102
                        "F64"
                        { modernDefaults "llama" with
                            Extra = [ "rope_scaling", box (dict [ "type", box "linear"; "factor", box 2.5 ]) ]
                            Frequencies = Some(linearFrequencies 500.0 8 2.5)
                        }
                use model = load case.Dir torch.float64
                Expect.equal (attentions model.Net).Head.Rotary.Value.Scaling (RotaryScaling.Linear 2.5) "linear 2.5"
                checkAgainstReference exact case model
            }
            test "rope_type default and rope_parameters (newer configs) give the plain rotary" {
                let case =
                    modernCase
                        103
                        "F64"
                        { modernDefaults "llama" with
                            Extra = [ "rope_scaling", box (dict [ "rope_type", box "default" ]) ]
                        }
                use model = load case.Dir torch.float64
                Expect.equal (attentions model.Net).Head.Rotary.Value.Scaling RotaryScaling.Plain "default"
                checkAgainstReference exact case model
                let newer = modernCase 104 "F64" (modernDefaults "llama")
                editConfig newer.Dir (fun c ->
                    c.Remove "rope_theta" |> ignore
                    c.["rope_parameters"] <-
                        Text.Json.Nodes.JsonNode.Parse "{\"rope_type\":\"default\",\"rope_theta\":500.0}")
                use newerModel = load newer.Dir torch.float64
                Expect.equal (attentions newerModel.Net).Head.Rotary.Value.Base 500.0 "rope_theta from rope_parameters"
                checkAgainstReference exact newer newerModel
            }
            test "other rope types are refused with an error naming the type and what is supported" {
                for ropeType in [ "yarn"; "dynamic"; "longrope"; "su" ] do
                    let case =
                        modernCase
                            105
                            "F32"
                            { modernDefaults "qwen2" with
                                Extra = [ "rope_scaling", box (dict [ "rope_type", box ropeType; "factor", box 4.0 ]) ]
                            }
                    Expect.throwsWith<CheckpointException>
                        [ "config.json"; "'rope_scaling'"; sprintf "'%s'" ropeType; "default, linear, llama3" ]
                        (fun () -> load case.Dir torch.float32 |> ignore)
                        ropeType
                // Newer configs may give rope parameters per attention type (Gemma 3 style): not read as "default".
                let perType = modernCase 107 "F32" (modernDefaults "llama")
                editConfig perType.Dir (fun c ->
                    c.["rope_parameters"] <-
                        Text.Json.Nodes.JsonNode.Parse
                            "{\"full_attention\":{\"rope_type\":\"linear\",\"factor\":8.0},\"sliding_attention\":{\"rope_type\":\"default\"}}")
                Expect.throwsWith<CheckpointException>
                    [ "'rope_parameters'"; "per attention type" ]
                    (fun () -> load perType.Dir torch.float32 |> ignore)
                    "per attention type"
            }
            test "a llama3 rope_scaling missing a key, or with low ≥ high, is refused naming the key" {
                let broken (entries: (string * obj) list) =
                    let case =
                        modernCase
                            106
                            "F32"
                            { modernDefaults "llama" with Extra = [ "rope_scaling", box (dict entries) ] }
                    fun () -> load case.Dir torch.float32 |> ignore
                Expect.throwsWith<CheckpointException>
                    [ "rope_scaling"; "low_freq_factor" ]
                    (broken [ "rope_type", box "llama3"; "factor", box 8.0; "high_freq_factor", box 4.0 ])
                    "missing low_freq_factor"
                Expect.throwsWith<CheckpointException>
                    [ "rope_scaling"; "low_freq_factor 4"; "high_freq_factor 1"; "0 < low < high" ]
                    (broken
                        [
                            "rope_type", box "llama3"
                            "factor", box 8.0
                            "low_freq_factor", box 4.0
                            "high_freq_factor", box 1.0
                            "original_max_position_embeddings", box 8192
                        ])
                    "low ≥ high"
                Expect.throwsWith<CheckpointException>
                    [ "rope_scaling"; "factor -2"; "positive" ]
                    (broken [ "rope_type", box "linear"; "factor", box -2.0 ])
                    "negative factor"
            }
        ]

let qwenTests =
    testList
        "Qwen2 and Qwen3"
        [
            test "Qwen2 has q/k/v biases but no o_proj bias, and an untied head when tie_word_embeddings is false" {
                let case = qwen2 111 "F64"
                use model = load case.Dir torch.float64
                for a in attentions model.Net do
                    match a.Projections with
                    | Projections.Separate(q, k, v) ->
                        Expect.isTrue (q.Bias.IsSome && k.Bias.IsSome && v.Bias.IsSome) "q, k and v have biases"
                    | other -> failtestf "Qwen2 projections should be separate, got %A" other
                    Expect.isNone a.Output.Bias "o_proj has no bias"
                    Expect.isNone a.Window "use_sliding_window false: no window although sliding_window is set"
                Expect.equal
                    model.Net.Parameters.["layers.0.self_attn.k_proj.bias"].shape
                    [| 8L |]
                    "k_proj.bias is [kv · head_dim]"
                Expect.isFalse model.Net.Spec.Unembedding.Tied "untied"
                Expect.equal model.Net.Spec.Unembedding.Weight "lm_head.weight" "U is lm_head"
                checkAgainstReference exact case model
            }
            test "Qwen2.5 with use_sliding_window slides only from max_window_layers on; tied head" {
                let case = qwen25Windowed 112 "F64" [ None; Some 3 ]
                use model = load case.Dir torch.float64
                Expect.equal (attentions model.Net |> List.map (fun a -> a.Window)) [ None; Some 3 ] "windows"
                Expect.isTrue model.Net.Spec.Unembedding.Tied "tied to embed_tokens"
                Expect.equal model.Net.Spec.Unembedding.Weight "embed_tokens.weight" "U is embed_tokens"
                checkAgainstReference exact case model
                use trace = Trace.run model.Net (torch.tensor tokens)
                for windows in [ [ None; None ]; [ Some 3; Some 3 ] ] do
                    let other = (qwen25Windowed 112 "F64" windows).Reference tokens
                    Expect.tensorNotClose
                        (Accuracy.Of(1e-6, 0.0))
                        (Trace.logits trace).[0]
                        other.Logits
                        (sprintf "windows %A differ" windows)
            }
            test "Qwen3 RMS-normalises each query and key head before rotary, with head_dim from the config" {
                let case = qwen3 113 "F64"
                use model = load case.Dir torch.float64
                for a in attentions model.Net do
                    Expect.equal (a.Heads, a.KvHeads, a.HeadDim) (4, 2, 8) "4 heads of 8 (2 KV) although d = 16"
                    match a.Projections with
                    | Projections.Then(Projections.Separate(q, _, _), QkvStep.NormQk norm) ->
                        Expect.isTrue norm.PerHead "per head"
                        Expect.isNone q.Bias "no q/k/v biases"
                        Expect.stringEnds norm.Query.Weight.Value "self_attn.q_norm.weight" "q_norm"
                        Expect.stringEnds norm.Key.Weight.Value "self_attn.k_norm.weight" "k_norm"
                        Expect.isFalse norm.Query.PlusOne "w · x̂"
                    | other -> failtestf "Qwen3 projections should be normed separate ones, got %A" other
                Expect.equal
                    model.Net.Parameters.["layers.1.self_attn.k_norm.weight"].shape
                    [| 8L |]
                    "k_norm is [head_dim]"
                Expect.equal (attentions model.Net |> List.map (fun a -> a.Window)) [ Some 2; None ] "layer_types"
                Expect.stringContains
                    (string model.Net)
                    "q-norm RMSNorm(layers.0.self_attn.q_norm.weight), k-norm RMSNorm(layers.0.self_attn.k_norm.weight) per head"
                    "printed"
                checkAgainstReference exact case model
                let withoutNorms =
                    modern
                        (fun n -> case.Weights.[n])
                        case.Weights.["model.embed_tokens.weight"]
                        {
                            Layers = 2
                            Heads = 4
                            KvHeads = 2
                            HeadDim = 8
                            Eps = 1e-6
                            Frequencies = defaultFrequencies 500.0 8
                            QkvBias = false
                            OutputBias = false
                            QkNorm = false
                            Windows = [ Some 2; None ]
                        }
                        tokens
                use trace = Trace.run model.Net (torch.tensor tokens)
                Expect.tensorNotClose
                    (Accuracy.Of(1e-6, 0.0))
                    (Trace.logits trace).[0]
                    withoutNorms.Logits
                    "without the q/k norms the logits differ"
            }
            test "Qwen3 without head_dim in config.json expects HF's default 128" {
                let case = qwen3 114 "F32"
                editConfig case.Dir (fun c -> c.Remove "head_dim" |> ignore)
                Expect.throwsWith<CheckpointException>
                    [ "self_attn.q_proj.weight"; "[32, 16]"; "[512, 16]" ]
                    (fun () -> load case.Dir torch.float32 |> ignore)
                    "head_dim 128 by default"
            }
            test "Qwen2 layer_types of the wrong length or kind are refused" {
                let case = qwen25Windowed 115 "F32" [ None; Some 3 ]
                editConfig case.Dir (fun c ->
                    c.["layer_types"] <- Text.Json.Nodes.JsonNode.Parse "[\"full_attention\"]")
                Expect.throwsWith<CheckpointException>
                    [ "layer_types"; "2 layers" ]
                    (fun () -> load case.Dir torch.float32 |> ignore)
                    "length"
                editConfig case.Dir (fun c ->
                    c.["layer_types"] <- Text.Json.Nodes.JsonNode.Parse "[\"full_attention\", \"chunked\"]")
                Expect.throwsWith<CheckpointException>
                    [ "layer_types"; "\"chunked\""; "sliding_attention" ]
                    (fun () -> load case.Dir torch.float32 |> ignore)
                    "kind"
            }
            test "Model.summary and the printed structure describe Qwen3 (what jet info shows)" {
                let case = qwen3 116 "F32"
                use model = load case.Dir torch.float32
                let s = Model.summary model
                Expect.equal s.Family "qwen3" "family"
                Expect.equal (s.Heads, s.KvHeads, s.Blocks, s.ResidualLayers) (4, 2, 2, 4) "sizes"
                let printed = string model.Net
                for piece in [ "Attention(4 heads/2 kv × 8"; "window 2"; "GatedMlp"; "RMSNorm(norm" ] do
                    Expect.stringContains printed piece piece
            }
        ]

/// A random attention layer on width 6 with Qwen3-style per-head or OLMo-2-style whole-projection q/k norms, then
/// optionally an OLMo-style clamp of q, k and v, and a scaled rotary embedding, with its parameters.
let private normedAttention (perHead: bool) (clip: float option) (scaling: RotaryScaling) =
    let g = new torch.Generator(7UL)
    let d, heads, kvHeads, headDim = 6L, 4, 2, 4
    let randn (shape: int64 list) (scale: float) (offset: float) =
        torch.randn (Array.ofList shape, dtype = torch.float64, generator = g) * scale + offset
    let normWidth (h: int) = if perHead then int64 headDim else int64 (h * headDim)
    let parameters =
        [
            "q", randn [ int64 (heads * headDim); d ] 0.5 0.0
            "k", randn [ int64 (kvHeads * headDim); d ] 0.5 0.0
            "v", randn [ int64 (kvHeads * headDim); d ] 0.5 0.0
            "qb", randn [ int64 (heads * headDim) ] 0.1 0.0
            "o", randn [ d; int64 (heads * headDim) ] 0.5 0.0
            "qn", randn [ normWidth heads ] 0.2 1.0
            "kn", randn [ normWidth kvHeads ] 0.2 1.0
        ]
    let attention =
        Attention
            {
                Heads = heads
                KvHeads = kvHeads
                HeadDim = headDim
                Projections =
                    let normed =
                        Projections.Then(
                            Projections.Separate(
                                { Weight = "q"; Bias = Some "qb" },
                                { Weight = "k"; Bias = None },
                                { Weight = "v"; Bias = None }
                            ),
                            QkvStep.NormQk
                                {
                                    Query = { Weight = Some "qn"; Eps = 1e-6; PlusOne = false }
                                    Key = { Weight = Some "kn"; Eps = 1e-6; PlusOne = false }
                                    PerHead = perHead
                                }
                        )
                    match clip with
                    | Some c -> Projections.Then(normed, QkvStep.Clip c)
                    | None -> normed
                Output = { Weight = "o"; Bias = None }
                Rotary = Some { Fraction = 1.0; Base = 10.0; Style = RotaryStyle.RotateHalf; Scaling = scaling }
                Scaling = ScoreScaling.InverseSqrtHeadDim
                Window = Some 3
            }
    attention, ParameterStore.OfSeq parameters

let taylorTests =
    testList
        "the Taylor rules of the new attention pieces equal nested JVPs (float64, order 4)"
        [
            for perHead in [ true; false ] do
                for clip in [ None; Some 0.9 ] do
                    for scaling in
                        [
                            RotaryScaling.Plain
                            RotaryScaling.Linear 2.0
                            RotaryScaling.Llama3
                                { Factor = 4.0; LowFreqFactor = 1.0; HighFreqFactor = 2.0; OriginalContext = 6 }
                        ] do
                        test (
                            sprintf
                                "q/k norm %s%s, rotary %A"
                                (if perHead then "per head" else "over the projection")
                                (match clip with
                                 | Some c -> sprintf ", clamped to ±%g" c
                                 | None -> "")
                                scaling
                        ) {
                            use _ = torch.NewDisposeScope()
                            let fn, parameters = normedAttention perHead clip scaling
                            let g = new torch.Generator(3UL)
                            let x = torch.randn ([| 2L; 5L; 6L |], dtype = torch.float64, generator = g)
                            let v = torch.randn ([| 2L; 5L; 6L |], dtype = torch.float64, generator = g)
                            let taylor = Engines.series Engine.Taylor parameters fn 4 x v
                            let jvp = Engines.series Engine.Jvp parameters fn 4 x v
                            Expect.equal taylor.shape [| 5L; 2L; 5L; 6L |] "[k+1, batch, seq, d]"
                            for j in 0L .. 4L do
                                let scale = jvp.[j].abs().max().item<float> ()
                                Expect.tensorClose
                                    (Accuracy.Of(1e-9 * scale + 1e-12, 1e-9))
                                    taylor.[j]
                                    jvp.[j]
                                    (sprintf "coefficient c%d" j)
                            // Order 0 is the forward map.
                            Expect.tensorClose Accuracy.Float64 taylor.[0L] (Forward.apply parameters fn x) "c₀ = f(x)"
                            Expect.equal
                                (Fn.parameterNames fn)
                                [ "q"; "qb"; "k"; "v"; "qn"; "kn"; "o" ]
                                "projections, then the q/k norm weights, then the output"
                        }
        ]

/// The cases the lens and bigram smoke tests run on.
let private sweepCases () =
    [
        llama31 121 "F64" true
        qwen2 122 "F64"
        qwen25Windowed 123 "F64" [ None; Some 3 ]
        qwen3 124 "F64"
    ]

let sweepTests =
    testList
        "lenses and bigram sweeps on Llama 3.1, Qwen2 and Qwen3"
        [
            test "the iterative lens at h_L is the reference logits at orders 0 and 1; order 0 at h_l is U·norm(h_l)" {
                for case in sweepCases () do
                    use model = load case.Dir torch.float64
                    let reference = case.Reference tokens
                    let z = (torch.tensor tokens).unsqueeze 0L
                    for order in [ 0; 1 ] do
                        use result =
                            IterativeLens.run
                                model.Net
                                z
                                { LensOptions.Default with Streams = [ 1; model.Net.Depth ]; Order = order }
                        let last = result.Streams |> List.find (fun s -> s.Stream = model.Net.Depth)
                        Expect.tensorClose
                            exact
                            last.Logits.[0]
                            reference.Logits
                            (sprintf "%s: lens of order %d at h_L" case.Name order)
                        if order = 0 then
                            let first = result.Streams |> List.find (fun s -> s.Stream = 1)
                            let head =
                                case.Weights.TryFind "lm_head.weight"
                                |> Option.defaultValue case.Weights.["model.embed_tokens.weight"]
                            let byHand =
                                (rmsNorm reference.Streams.[1] case.Weights.["model.norm.weight"] 1e-6 false)
                                    .matmul (head.t ())
                            Expect.tensorClose exact first.Logits.[0] byHand (sprintf "%s: logit lens at h₁" case.Name)
            }
            test "embedding → MLP₁ → decoder bigrams are U·norm(SwiGLU(norm(E[z]))) for every first token" {
                for case in sweepCases () do
                    use model = load case.Dir torch.float64
                    use table =
                        Bigrams.full
                            model.Net
                            (Readouts.mlpPath model.Net 1)
                            { SweepOptions.Default with Space = ScoreSpace.Logit; BatchSize = 16 }
                    let w (name: string) = case.Weights.["model." + name]
                    let e = w "embed_tokens.weight"
                    let y = rmsNorm e (w "layers.0.post_attention_layernorm.weight") 1e-6 false
                    let linear name (x: Tensor) = x.matmul (w(name + ".weight").t ())
                    let mlp =
                        linear
                            "layers.0.mlp.down_proj"
                            (torch.nn.functional.silu (linear "layers.0.mlp.gate_proj" y)
                             * linear "layers.0.mlp.up_proj" y)
                    let head = case.Weights.TryFind "lm_head.weight" |> Option.defaultValue e
                    let byHand = (rmsNorm mlp (w "norm.weight") 1e-6 false).matmul (head.t ())
                    Expect.tensorClose exact table byHand case.Name
            }
        ]

[<Tests>]
let tests = testList "Llama 3.x and Qwen" [ ropeScalingTests; qwenTests; taylorTests; sweepTests ]
