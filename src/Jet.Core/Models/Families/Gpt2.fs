namespace Jet.Core.Models.Families

open Jet.Core
open Jet.Core.Models

/// GPT-2 (`GPT2LMHeadModel`, `GPT2Model`): learned absolute positions, pre-norm blocks of
/// LN₁ ▸ attention and LN₂ ▸ MLP, Conv1D weights stored [in, out], a head tied to `wte` unless
/// `lm_head.weight` is saved. Tensor names carry a `transformer.` prefix in the LM-head class and none in the
/// base class; the causal-mask buffers `attn.bias` / `attn.masked_bias` are ignored.
[<RequireQualifiedAccess>]
module Gpt2 =
    let private lower (config: HfConfig) (has: string -> bool) : Lowering =
        let d = config.Int "n_embd"
        let heads = config.Int "n_head"
        let layers = config.Int "n_layer"
        let vocab = config.Int "vocab_size"
        let positions = config.Int "n_positions"
        let inner = config.IntOr("n_inner", 4 * d)
        let eps = config.PositiveOr("layer_norm_epsilon", 1e-5)
        let activation =
            Lowering.activation config "activation_function" (config.StringOr("activation_function", "gelu_new"))
        let headDim = Lowering.headDim config "n_embd" d "n_head" heads
        if config.BoolOr("add_cross_attention", false) then
            config.Invalid("add_cross_attention", "is true; only decoder-only GPT-2 models are supported.")
        let scaleWeights = config.BoolOr("scale_attn_weights", true)
        let byLayerIndex = config.BoolOr("scale_attn_by_inverse_layer_idx", false)
        let prefix = Lowering.detectPrefix has "gpt2" [ "transformer."; "" ] "wte.weight"
        let plan = TensorPlan(prefix)
        let wte = plan.Tensor("wte.weight", [ vocab; d ])
        let wpe = plan.Tensor("wpe.weight", [ positions; d ])
        let block i =
            let p name = sprintf "h.%d.%s" i name
            let b = i + 1
            let scaling =
                match scaleWeights, byLayerIndex with
                | true, false -> ScoreScaling.InverseSqrtHeadDim
                | false, false -> ScoreScaling.Unscaled
                | true, true -> ScoreScaling.By(1.0 / sqrt (float headDim) / float b)
                | false, true -> ScoreScaling.By(1.0 / float b)
            let attention =
                Attention
                    {
                        Heads = heads
                        KvHeads = heads
                        HeadDim = headDim
                        // c_attn transposed is [3d, d]: all query rows, then all key rows, then all value rows.
                        Projections = Projections.Fused(plan.Conv1D(p "attn.c_attn", d, 3 * d), FusedLayout.Blocked)
                        Output = plan.Conv1D(p "attn.c_proj", d, d)
                        Rotary = None
                        Scaling = scaling
                        Window = None
                    }
            let mlp =
                [
                    Linear(plan.Conv1D(p "mlp.c_fc", d, inner))
                    Act activation
                    Linear(plan.Conv1D(p "mlp.c_proj", inner, d))
                ]
            Lowering.sequentialBlock
                b
                (Chain [ plan.LayerNorm(p "ln_1", d, eps); attention ])
                (Chain(plan.LayerNorm(p "ln_2", d, eps) :: mlp))
        let residual =
            [
                for i in 0 .. layers - 1 do
                    yield! block i
            ]
        let finalNorm = plan.LayerNorm("ln_f", d, eps)
        // HF ties lm_head to wte (save_pretrained then omits lm_head.weight); GPT2Model has no head at all.
        let unembedding = Lowering.unembedding config has plan true [ "GPT2Model" ] wte "lm_head.weight" vocab d
        {
            Spec =
                {
                    Name = "gpt2"
                    Vocab = vocab
                    Width = d
                    MaxPositions = Some positions
                    Encoder = { TokenEmbedding = wte; Positions = Some wpe; Scale = None }
                    Layers = residual
                    FinalNorm = finalNorm
                    Unembedding = unembedding
                }
            Tensors = plan.Requests
        }

    /// The GPT-2 family.
    let family: Family =
        { Name = "gpt2"; Architectures = [ "GPT2LMHeadModel"; "GPT2Model" ]; Lower = lower }
