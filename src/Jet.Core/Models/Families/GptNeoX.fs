namespace Jet.Core.Models.Families

open Jet.Core
open Jet.Core.Models

/// GPT-NeoX / Pythia (`GPTNeoXForCausalLM`, `GPTNeoXModel`): no absolute positions; one fused query_key_value
/// projection laid out per head ([q_h; k_h; v_h] for each head h); rotary embedding on the first
/// rotary_pct · head_dim coordinates of each head, rotate-half pairing, base `rotary_emb_base`; with
/// `use_parallel_residual` a block is one residual layer whose γ = attn(LN₁ h) + mlp(LN₂ h), otherwise two;
/// an untied `embed_out` head.
[<RequireQualifiedAccess>]
module GptNeoX =
    let private lower (config: HfConfig) (has: string -> bool) : Lowering =
        let d = config.Int "hidden_size"
        let heads = config.Int "num_attention_heads"
        let layers = config.Int "num_hidden_layers"
        let vocab = config.Int "vocab_size"
        let positions = config.Int "max_position_embeddings"
        let inner = config.IntOr("intermediate_size", 4 * d)
        let eps = config.PositiveOr("layer_norm_eps", 1e-5)
        let activation = Lowering.activation config "hidden_act" (config.StringOr("hidden_act", "gelu"))
        let headDim = Lowering.headDim config "hidden_size" d "num_attention_heads" heads
        let rotaryPct =
            match config.TryFloat "rotary_pct" with
            | Some p -> p
            | None -> config.FloatOr("partial_rotary_factor", 0.25)
        if rotaryPct < 0.0 || rotaryPct > 1.0 then
            config.Invalid("rotary_pct", sprintf "is %g; it must lie in [0, 1]." rotaryPct)
        // HF truncates: rotary_ndims = int(head_size · rotary_pct).
        let rotaryDims = int (float headDim * rotaryPct)
        if rotaryDims % 2 <> 0 then
            config.Invalid(
                "rotary_pct",
                sprintf
                    "gives %d rotary dimensions per head (head_dim %d); rotary embedding needs an even number."
                    rotaryDims
                    headDim
            )
        let rotaryBase =
            if config.Has "rotary_emb_base" then
                config.PositiveOr("rotary_emb_base", 10000.0)
            else
                config.PositiveOr("rope_theta", 10000.0)
        Lowering.requireNoRopeScaling config
        let parallelResidual = config.BoolOr("use_parallel_residual", true)
        let bias = config.BoolOr("attention_bias", true)
        let prefix = Lowering.detectPrefix has "gpt_neox" [ "gpt_neox."; "" ] "embed_in.weight"
        let plan = TensorPlan(prefix)
        let embedding = plan.Tensor("embed_in.weight", [ vocab; d ])
        let block i =
            let p name = sprintf "layers.%d.%s" i name
            let attention =
                Attention
                    {
                        Heads = heads
                        KvHeads = heads
                        HeadDim = headDim
                        Projections =
                            Projections.Fused(
                                plan.Linear(p "attention.query_key_value", 3 * d, d, bias),
                                FusedLayout.PerHead
                            )
                        Output = plan.Linear(p "attention.dense", d, d, bias)
                        // The fraction is exact, so the DSL's rounding recovers rotaryDims.
                        Rotary =
                            (if rotaryDims = 0 then
                                 None
                             else
                                 Some
                                     {
                                         Fraction = float rotaryDims / float headDim
                                         Base = rotaryBase
                                         Style = RotaryStyle.RotateHalf
                                         Scaling = RotaryScaling.Plain
                                     })
                        Scaling = ScoreScaling.InverseSqrtHeadDim
                        Window = None
                    }
            let attentionBranch = Chain [ plan.LayerNorm(p "input_layernorm", d, eps); attention ]
            let mlpBranch =
                Chain
                    [
                        plan.LayerNorm(p "post_attention_layernorm", d, eps)
                        Linear(plan.Linear(p "mlp.dense_h_to_4h", inner, d, true))
                        Act activation
                        Linear(plan.Linear(p "mlp.dense_4h_to_h", d, inner, true))
                    ]
            if parallelResidual then
                [
                    {
                        Name = sprintf "block%d" (i + 1)
                        Block = i + 1
                        Kind = LayerKind.Parallel
                        Gamma = Sum [ attentionBranch; mlpBranch ]
                    }
                ]
            else
                Lowering.sequentialBlock (i + 1) attentionBranch mlpBranch
        let residual =
            [
                for i in 0 .. layers - 1 do
                    yield! block i
            ]
        let finalNorm = plan.LayerNorm("final_layer_norm", d, eps)
        let unembedding =
            Lowering.unembedding config has plan false [ "GPTNeoXModel" ] embedding "embed_out.weight" vocab d
        {
            Spec =
                {
                    Name = "gpt_neox"
                    Vocab = vocab
                    Width = d
                    MaxPositions = Some positions
                    Encoder = { TokenEmbedding = embedding; Positions = None; Scale = None }
                    Layers = residual
                    FinalNorm = finalNorm
                    Unembedding = unembedding
                }
            Tensors = plan.Requests
        }

    /// The GPT-NeoX (Pythia) family.
    let family: Family =
        { Name = "gpt_neox"; Architectures = [ "GPTNeoXForCausalLM"; "GPTNeoXModel" ]; Lower = lower }
