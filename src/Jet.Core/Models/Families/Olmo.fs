namespace Jet.Core.Models.Families

open Jet.Core
open Jet.Core.Models

/// OLMo (`OlmoForCausalLM`) and OLMo-2 (`Olmo2ForCausalLM`), Llama-shaped: separate q/k/v, grouped KV heads,
/// rotate-half rotary on whole heads (`rope_theta`), SwiGLU, no absolute positions, untied head by default.
/// OLMo normalises with a LayerNorm without weight or bias (eps 1e-5, fixed in HF's OlmoLayerNorm) before attention,
/// the MLP and the head, and clamps q, k and v to ±`clip_qkv` when the config sets it. OLMo-2 puts its RMSNorms after
/// each sublayer instead, inside γ (h + norm(attn(h)), h + norm(mlp(h))), and RMS-normalises the whole query and key
/// projections (q_norm [heads·head_dim], k_norm [kv_heads·head_dim]) before splitting heads and rotating.
[<RequireQualifiedAccess>]
module Olmo =
    let private lower (second: bool) (config: HfConfig) (has: string -> bool) : Lowering =
        let name = if second then "olmo2" else "olmo"
        let s = DecoderConfig.sizes config false
        let activation = Lowering.activation config "hidden_act" (config.StringOr("hidden_act", "silu"))
        let bias = config.BoolOr("attention_bias", false)
        let clip =
            match config.TryFloat "clip_qkv" with
            | Some c when second -> config.Invalid("clip_qkv", sprintf "is %g; OLMo-2 has no q/k/v clipping." c)
            | Some c when c > 0.0 -> Some c
            | Some c -> config.Invalid("clip_qkv", sprintf "is %g; it must be a positive number or null." c)
            | None -> None
        let eps = config.PositiveOr("rms_norm_eps", 1e-5)
        let prefix = Lowering.detectPrefix has name [ "model."; "" ] "embed_tokens.weight"
        let plan = TensorPlan(prefix)
        let embedding = plan.Tensor("embed_tokens.weight", [ s.Vocab; s.Width ])
        // HF's OlmoLayerNorm: F.layer_norm without weight or bias, eps 1e-5 whatever the config says.
        let layerNorm = Lowering.plainLayerNorm 1e-5
        let block i =
            let p n = sprintf "layers.%d.%s" i n
            let projections = DecoderConfig.separateProjections plan s p bias
            let projections =
                if second then
                    let norm n width = { Weight = Some(plan.Tensor(p n, [ width ])); Eps = eps; PlusOne = false }
                    Projections.Then(
                        projections,
                        QkvStep.NormQk
                            {
                                Query = norm "self_attn.q_norm.weight" (s.Heads * s.HeadDim)
                                Key = norm "self_attn.k_norm.weight" (s.KvHeads * s.HeadDim)
                                PerHead = false
                            }
                    )
                else
                    match clip with
                    | Some c -> Projections.Then(projections, QkvStep.Clip c)
                    | None -> projections
            let output = plan.Linear(p "self_attn.o_proj", s.Width, s.Heads * s.HeadDim, bias)
            let attention = DecoderConfig.attention s projections output 1.0 ScoreScaling.InverseSqrtHeadDim None
            let mlp = DecoderConfig.gatedMlp plan s p activation
            if second then
                let post n = plan.RmsNorm(p n, s.Width, eps, false)
                Lowering.sequentialBlock
                    (i + 1)
                    (Chain [ attention; post "post_attention_layernorm" ])
                    (Chain [ mlp; post "post_feedforward_layernorm" ])
            else
                Lowering.sequentialBlock (i + 1) (Chain [ layerNorm; attention ]) (Chain [ layerNorm; mlp ])
        let layers =
            [
                for i in 0 .. s.Layers - 1 do
                    yield! block i
            ]
        let finalNorm =
            if second then
                plan.RmsNorm("norm", s.Width, eps, false)
            else
                layerNorm
        let baseClass = if second then "Olmo2Model" else "OlmoModel"
        let unembedding =
            Lowering.unembedding config has plan false [ baseClass ] embedding "lm_head.weight" s.Vocab s.Width
        {
            Spec = DecoderConfig.spec name s embedding None layers finalNorm unembedding
            Tensors = plan.Requests
        }

    /// OLMo (the first generation, Hugging Face layout: allenai/OLMo-1B-hf, OLMo-7B-0424-hf, …).
    let olmo: Family =
        { Name = "olmo"; Architectures = [ "OlmoForCausalLM"; "OlmoModel" ]; Lower = lower false }

    /// OLMo-2.
    let olmo2: Family =
        { Name = "olmo2"; Architectures = [ "Olmo2ForCausalLM"; "Olmo2Model" ]; Lower = lower true }
