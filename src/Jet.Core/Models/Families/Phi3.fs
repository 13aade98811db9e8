namespace Jet.Core.Models.Families

open Jet.Core
open Jet.Core.Models

/// Phi-3 (`Phi3ForCausalLM`): Llama-shaped pre-norm blocks (RMSNorm, grouped KV heads, rotate-half rotary on
/// `partial_rotary_factor` of each head, SwiGLU, untied head), with a fused `qkv_proj` [(heads + 2·kv_heads)·head_dim, d]
/// holding all query rows, then all key rows, then all value rows, and a fused `gate_up_proj` [2·inner, d] holding the
/// gate rows, then the up rows (each half read as its own linear map, a view of the stored tensor).
/// `sliding_window` masks as in Mistral. `rope_scaling` linear or llama3 is read as for Llama; the 128k models'
/// "longrope" is refused with an error naming it.
[<RequireQualifiedAccess>]
module Phi3 =
    let private lower (config: HfConfig) (has: string -> bool) : Lowering =
        let s = DecoderConfig.sizes config false
        let eps = config.PositiveOr("rms_norm_eps", 1e-5)
        let fraction = config.FloatOr("partial_rotary_factor", 1.0)
        if not (fraction > 0.0 && fraction <= 1.0) then
            config.Invalid("partial_rotary_factor", sprintf "is %g; it must be in (0, 1]." fraction)
        let activation = Lowering.activation config "hidden_act" (config.StringOr("hidden_act", "silu"))
        let window = DecoderConfig.slidingWindow config
        let prefix = Lowering.detectPrefix has "phi3" [ "model."; "" ] "embed_tokens.weight"
        let plan = TensorPlan(prefix)
        let embedding = plan.Tensor("embed_tokens.weight", [ s.Vocab; s.Width ])
        let norm name = plan.RmsNorm(name, s.Width, eps, false)
        let qkvRows = (s.Heads + 2 * s.KvHeads) * s.HeadDim
        let block i =
            let p n = sprintf "layers.%d.%s" i n
            let projections =
                Projections.Fused(plan.Linear(p "self_attn.qkv_proj", qkvRows, s.Width, false), FusedLayout.Blocked)
            let output = plan.Linear(p "self_attn.o_proj", s.Width, s.Heads * s.HeadDim, false)
            let attention =
                DecoderConfig.attention s projections output fraction ScoreScaling.InverseSqrtHeadDim window
            let gateUp = p "mlp.gate_up_proj"
            let mlp =
                GatedMlp
                    {
                        Gate = plan.LinearRows(gateUp, 0, s.Inner, 2 * s.Inner, s.Width)
                        Up = plan.LinearRows(gateUp, s.Inner, s.Inner, 2 * s.Inner, s.Width)
                        Down = plan.Linear(p "mlp.down_proj", s.Width, s.Inner, false)
                        Activation = activation
                    }
            Lowering.sequentialBlock
                (i + 1)
                (Chain [ norm (p "input_layernorm"); attention ])
                (Chain [ norm (p "post_attention_layernorm"); mlp ])
        let layers =
            [
                for i in 0 .. s.Layers - 1 do
                    yield! block i
            ]
        let unembedding =
            Lowering.unembedding config has plan false [ "Phi3Model" ] embedding "lm_head.weight" s.Vocab s.Width
        {
            Spec = DecoderConfig.spec "phi3" s embedding None layers (norm "norm") unembedding
            Tensors = plan.Requests
        }

    /// Phi-3 (mini, small, medium; Phi-4-mini's partial rotary too).
    let family: Family =
        { Name = "phi3"; Architectures = [ "Phi3ForCausalLM"; "Phi3Model" ]; Lower = lower }
