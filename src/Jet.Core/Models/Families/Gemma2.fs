namespace Jet.Core.Models.Families

open System.Text.Json
open Jet.Core
open Jet.Core.Models

/// Gemma 2 (`Gemma2ForCausalLM`): Gemma's (1 + w) RMSNorms, GeGLU (`hidden_activation`, tanh GELU), √d embedding scale
/// and tied head, plus sandwich norms (γ_attn = post_attention_layernorm ∘ attn ∘ input_layernorm,
/// γ_mlp = post_feedforward_layernorm ∘ mlp ∘ pre_feedforward_layernorm), scores scaled by
/// `query_pre_attn_scalar`^(−½) and soft-capped at `attn_logit_softcapping`, local (`sliding_window`) and global layers
/// alternating (`layer_types`, or even 0-based layers local when it is absent), and final logits soft-capped at
/// `final_logit_softcapping` (the decoder's soft-cap, see Decoder).
[<RequireQualifiedAccess>]
module Gemma2 =
    /// Whether each layer (0-based) uses the sliding window: `layer_types` when given, else even layers.
    let private slidingLayers (config: HfConfig) (layers: int) : bool list =
        match config.TryGet "layer_types" with
        | Some v when v.ValueKind = JsonValueKind.Array && v.GetArrayLength() = layers ->
            [
                for t in v.EnumerateArray() ->
                    match
                        (if t.ValueKind = JsonValueKind.String then
                             t.GetString()
                         else
                             "")
                    with
                    | "sliding_attention" -> true
                    | "full_attention" -> false
                    | _ ->
                        config.Invalid(
                            "layer_types",
                            sprintf
                                "has %s; each entry must be \"sliding_attention\" or \"full_attention\"."
                                (t.GetRawText())
                        )
            ]
        | Some _ -> config.Invalid("layer_types", sprintf "must be a list of %d layer types." layers)
        | None -> List.init layers (fun i -> i % 2 = 0)

    /// An optional positive soft-cap.
    let private softCap (config: HfConfig) (key: string) (fallback: float) : float option =
        match config.Root.TryGetProperty key with
        | false, _ -> Some fallback
        | true, v when v.ValueKind = JsonValueKind.Null -> None
        | true, _ ->
            match config.TryFloat key with
            | Some c when c > 0.0 -> Some c
            | _ -> config.Invalid(key, "must be a positive number or null.")

    let private lower (config: HfConfig) (has: string -> bool) : Lowering =
        let s = DecoderConfig.sizes config true
        let eps = config.PositiveOr("rms_norm_eps", 1e-6)
        let activationName = config.StringOr("hidden_activation", "gelu_pytorch_tanh")
        let activation = Lowering.activation config "hidden_activation" activationName
        let bias = config.BoolOr("attention_bias", false)
        let queryScalar = config.FloatOr("query_pre_attn_scalar", 256.0)
        if not (queryScalar > 0.0) then
            config.Invalid("query_pre_attn_scalar", sprintf "is %g; it must be positive." queryScalar)
        let scale = 1.0 / sqrt queryScalar
        let scaling =
            match softCap config "attn_logit_softcapping" 50.0 with
            | Some cap -> ScoreScaling.SoftCapped(scale, cap)
            | None -> ScoreScaling.By scale
        let window =
            match config.Root.TryGetProperty "sliding_window" with
            | false, _ -> Some 4096 // HF's Gemma2Config default
            | _ -> DecoderConfig.slidingWindow config
        let sliding = slidingLayers config s.Layers
        let prefix = Lowering.detectPrefix has "gemma2" [ "model."; "" ] "embed_tokens.weight"
        let plan = TensorPlan(prefix)
        let embedding = plan.Tensor("embed_tokens.weight", [ s.Vocab; s.Width ])
        let norm name = plan.RmsNorm(name, s.Width, eps, true)
        let block i =
            let p n = sprintf "layers.%d.%s" i n
            let projections = DecoderConfig.separateProjections plan s p bias
            let output = plan.Linear(p "self_attn.o_proj", s.Width, s.Heads * s.HeadDim, bias)
            let layerWindow = if sliding.[i] then window else None
            let attention = DecoderConfig.attention s projections output 1.0 scaling layerWindow
            let mlp = DecoderConfig.gatedMlp plan s p activation
            Lowering.sequentialBlock
                (i + 1)
                (Chain [ norm (p "input_layernorm"); attention; norm (p "post_attention_layernorm") ])
                (Chain [ norm (p "pre_feedforward_layernorm"); mlp; norm (p "post_feedforward_layernorm") ])
        let layers =
            [
                for i in 0 .. s.Layers - 1 do
                    yield! block i
            ]
        let unembedding =
            { Lowering.unembedding config has plan true [ "Gemma2Model" ] embedding "lm_head.weight" s.Vocab s.Width with
                SoftCap = softCap config "final_logit_softcapping" 30.0
            }
        let scale = Some(sqrt (float s.Width))
        {
            Spec = DecoderConfig.spec "gemma2" s embedding scale layers (norm "norm") unembedding
            Tensors = plan.Requests
        }

    /// Gemma 2.
    let family: Family =
        { Name = "gemma2"; Architectures = [ "Gemma2ForCausalLM"; "Gemma2Model" ]; Lower = lower }
