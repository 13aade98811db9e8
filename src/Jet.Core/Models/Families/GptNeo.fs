namespace Jet.Core.Models.Families

open System.Text.Json
open Jet.Core
open Jet.Core.Models

/// GPT-Neo (`GPTNeoForCausalLM`, `GPTNeoModel`): GPT-2's block shape with nn.Linear weights, separate q/k/v
/// projections without bias, attention scores that are not scaled by 1/√d_head, and layers alternating between
/// global and local (windowed) attention as `attention_types` says.
[<RequireQualifiedAccess>]
module GptNeo =
    /// Expands `attention_types` ([[["global", "local"], 6]] → global, local, … twelve times) to one kind per layer.
    let attentionLayers (config: HfConfig) (layers: int) : string list =
        let invalid () : 'T =
            config.Invalid(
                "attention_types",
                "must look like [[[\"global\", \"local\"], 12]]: a list of [pattern, repeats] pairs whose patterns use \"global\" and \"local\"."
            )
        let kinds =
            match config.TryGet "attention_types" with
            | None -> List.replicate layers "global"
            | Some v when v.ValueKind = JsonValueKind.Array ->
                [
                    for pair in v.EnumerateArray() do
                        if pair.ValueKind <> JsonValueKind.Array || pair.GetArrayLength() <> 2 then
                            invalid ()
                        let pattern, repeats = pair.[0], pair.[1]
                        let mutable count = 0
                        if
                            pattern.ValueKind <> JsonValueKind.Array
                            || repeats.ValueKind <> JsonValueKind.Number
                            || not (repeats.TryGetInt32(&count))
                            || count < 0
                        then
                            invalid ()
                        let kinds =
                            [
                                for k in pattern.EnumerateArray() ->
                                    if k.ValueKind = JsonValueKind.String then
                                        k.GetString()
                                    else
                                        invalid ()
                            ]
                        if kinds |> List.exists (fun k -> k <> "global" && k <> "local") then
                            invalid ()
                        for _ in 1..count do
                            yield! kinds
                ]
            | Some _ -> invalid ()
        if kinds.Length <> layers then
            config.Invalid("attention_types", sprintf "describes %d layers but num_layers is %d." kinds.Length layers)
        kinds

    let private lower (config: HfConfig) (has: string -> bool) : Lowering =
        let d = config.Int "hidden_size"
        let heads = config.Int "num_heads"
        let layers = config.Int "num_layers"
        let vocab = config.Int "vocab_size"
        let positions = config.Int "max_position_embeddings"
        let inner = config.IntOr("intermediate_size", 4 * d)
        let eps = config.PositiveOr("layer_norm_epsilon", 1e-5)
        let window = config.IntOr("window_size", 256)
        let activation =
            Lowering.activation config "activation_function" (config.StringOr("activation_function", "gelu_new"))
        let headDim = Lowering.headDim config "hidden_size" d "num_heads" heads
        let kinds = attentionLayers config layers
        let prefix = Lowering.detectPrefix has "gpt_neo" [ "transformer."; "" ] "wte.weight"
        let plan = TensorPlan(prefix)
        let wte = plan.Tensor("wte.weight", [ vocab; d ])
        let wpe = plan.Tensor("wpe.weight", [ positions; d ])
        let block i kind =
            let p name = sprintf "h.%d.%s" i name
            let attention =
                Attention
                    {
                        Heads = heads
                        KvHeads = heads
                        HeadDim = headDim
                        Projections =
                            Projections.Separate(
                                plan.Linear(p "attn.attention.q_proj", d, d, false),
                                plan.Linear(p "attn.attention.k_proj", d, d, false),
                                plan.Linear(p "attn.attention.v_proj", d, d, false)
                            )
                        Output = plan.Linear(p "attn.attention.out_proj", d, d, true)
                        Rotary = None
                        // GPT-Neo was trained without the 1/√d_head factor.
                        Scaling = ScoreScaling.Unscaled
                        Window = (if kind = "local" then Some window else None)
                    }
            let mlp =
                [
                    Linear(plan.Linear(p "mlp.c_fc", inner, d, true))
                    Act activation
                    Linear(plan.Linear(p "mlp.c_proj", d, inner, true))
                ]
            Lowering.sequentialBlock
                (i + 1)
                (Chain [ plan.LayerNorm(p "ln_1", d, eps); attention ])
                (Chain(plan.LayerNorm(p "ln_2", d, eps) :: mlp))
        let residual = kinds |> List.mapi block |> List.concat
        let finalNorm = plan.LayerNorm("ln_f", d, eps)
        let unembedding =
            Lowering.unembedding config has plan true [ "GPTNeoModel" ] wte "lm_head.weight" vocab d
        {
            Spec =
                {
                    Name = "gpt_neo"
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

    /// The GPT-Neo family.
    let family: Family =
        { Name = "gpt_neo"; Architectures = [ "GPTNeoForCausalLM"; "GPTNeoModel" ]; Lower = lower }
