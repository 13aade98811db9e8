namespace Jet.Core.Models.Families

open System.Text.Json
open Jet.Core
open Jet.Core.Models

/// The Llama-shaped families: pre-norm blocks of RMSNorm ▸ attention (separate q/k/v, grouped KV heads,
/// full rotate-half rotary embedding with base `rope_theta`) and RMSNorm ▸ gated MLP, no absolute positions.
/// Llama and Mistral use SwiGLU and an untied head by default; Mistral adds a sliding attention window;
/// Gemma scales RMSNorm by (1 + w), uses GeGLU with the tanh GELU, multiplies embeddings by √d, takes
/// head_dim from the config and ties its head. Qwen2 adds biases to q/k/v (not to o) and slides the window only
/// in layers from max_window_layers on; Qwen3 drops those biases and RMS-normalises each query and key head before
/// the rotary embedding. Every variant reads `rope_scaling` (linear, llama3).
[<RequireQualifiedAccess>]
module Llama =
    type private Variant =
        {
            Name: string
            Architectures: string list
            BaseClasses: string list
            /// Gemma's RMSNorm multiplies by (1 + w).
            NormPlusOne: bool
            /// Gemma multiplies token embeddings by √d.
            ScaleEmbedding: bool
            TiedByDefault: bool
            /// The attention window of each layer: config → layer count → layer index → window.
            Windows: HfConfig -> int -> int -> int option
            /// Whether the q/k/v projections and the output projection have biases.
            ProjectionBiases: HfConfig -> bool * bool
            /// Qwen3's q_norm and k_norm: RMSNorm over each head before the rotary embedding.
            QkNormPerHead: bool
            /// The config keys naming the MLP activation, in order of preference, and the default.
            ActivationKeys: string list
            DefaultActivation: string
            DefaultHeadDim: int option
        }

    let private lower (variant: Variant) (config: HfConfig) (has: string -> bool) : Lowering =
        let d = config.Int "hidden_size"
        let heads = config.Int "num_attention_heads"
        let kvHeads = config.IntOr("num_key_value_heads", heads)
        let layers = config.Int "num_hidden_layers"
        let vocab = config.Int "vocab_size"
        let inner = config.Int "intermediate_size"
        let positions = config.Int "max_position_embeddings"
        let eps = config.PositiveOr("rms_norm_eps", 1e-6)
        let rotary = Lowering.rotary config 10000.0 1.0 RotaryStyle.RotateHalf
        let headDim =
            match config.TryInt "head_dim", variant.DefaultHeadDim with
            | Some h, _ when h > 0 -> h
            | Some h, _ -> config.Invalid("head_dim", sprintf "is %d; it must be positive." h)
            | None, Some h -> h
            | None, None -> Lowering.headDim config "hidden_size" d "num_attention_heads" heads
        if kvHeads < 1 || heads % kvHeads <> 0 then
            config.Invalid(
                "num_key_value_heads",
                sprintf "is %d; it must divide num_attention_heads = %d." kvHeads heads
            )
        let activationKey, activationName =
            variant.ActivationKeys
            |> List.tryPick (fun k -> config.TryString k |> Option.map (fun v -> k, v))
            |> Option.defaultValue (List.head variant.ActivationKeys, variant.DefaultActivation)
        let activation = Lowering.activation config activationKey activationName
        let qkvBias, outputBias = variant.ProjectionBiases config
        let mlpBias = config.BoolOr("mlp_bias", false)
        let windowOf = variant.Windows config layers
        let prefix = Lowering.detectPrefix has variant.Name [ "model."; "" ] "embed_tokens.weight"
        let plan = TensorPlan(prefix)
        let embedding = plan.Tensor("embed_tokens.weight", [ vocab; d ])
        let norm name = plan.RmsNorm(name, d, eps, variant.NormPlusOne)
        let block i =
            let p name = sprintf "layers.%d.%s" i name
            let separate =
                Projections.Separate(
                    plan.Linear(p "self_attn.q_proj", heads * headDim, d, qkvBias),
                    plan.Linear(p "self_attn.k_proj", kvHeads * headDim, d, qkvBias),
                    plan.Linear(p "self_attn.v_proj", kvHeads * headDim, d, qkvBias)
                )
            let headNorm name =
                { Weight = Some(plan.Tensor(p name, [ headDim ])); Eps = eps; PlusOne = variant.NormPlusOne }
            let attention =
                Attention
                    {
                        Heads = heads
                        KvHeads = kvHeads
                        HeadDim = headDim
                        Projections =
                            (if variant.QkNormPerHead then
                                 Projections.Then(
                                     separate,
                                     QkvStep.NormQk
                                         {
                                             Query = headNorm "self_attn.q_norm.weight"
                                             Key = headNorm "self_attn.k_norm.weight"
                                             PerHead = true
                                         }
                                 )
                             else
                                 separate)
                        Output = plan.Linear(p "self_attn.o_proj", d, heads * headDim, outputBias)
                        Rotary = Some rotary
                        Scaling = ScoreScaling.InverseSqrtHeadDim
                        Window = windowOf i
                    }
            let mlp =
                GatedMlp
                    {
                        Gate = plan.Linear(p "mlp.gate_proj", inner, d, mlpBias)
                        Up = plan.Linear(p "mlp.up_proj", inner, d, mlpBias)
                        Down = plan.Linear(p "mlp.down_proj", d, inner, mlpBias)
                        Activation = activation
                    }
            Lowering.sequentialBlock
                (i + 1)
                (Chain [ norm (p "input_layernorm"); attention ])
                (Chain [ norm (p "post_attention_layernorm"); mlp ])
        let residual =
            [
                for i in 0 .. layers - 1 do
                    yield! block i
            ]
        let finalNorm = norm "norm"
        let unembedding =
            Lowering.unembedding
                config
                has
                plan
                variant.TiedByDefault
                variant.BaseClasses
                embedding
                "lm_head.weight"
                vocab
                d
        {
            Spec =
                {
                    Name = variant.Name
                    Vocab = vocab
                    Width = d
                    MaxPositions = Some positions
                    Encoder =
                        {
                            TokenEmbedding = embedding
                            Positions = None
                            Scale =
                                (if variant.ScaleEmbedding then
                                     Some(sqrt (float d))
                                 else
                                     None)
                        }
                    Layers = residual
                    FinalNorm = finalNorm
                    Unembedding = unembedding
                }
            Tensors = plan.Requests
        }

    let private family (variant: Variant) : Family =
        { Name = variant.Name; Architectures = variant.Architectures; Lower = lower variant }

    /// A positive `sliding_window`, or None when it is null; `fallback` when the key is absent.
    let private slidingWindow (config: HfConfig) (fallback: int option) =
        match config.Root.TryGetProperty "sliding_window" with
        | false, _ -> fallback
        | true, v when v.ValueKind = JsonValueKind.Null -> None
        | true, _ ->
            match config.TryInt "sliding_window" with
            | Some w when w > 0 -> Some w
            | _ -> config.Invalid("sliding_window", "must be a positive integer or null.")

    /// Mistral: every layer slides `sliding_window` (HF's MistralConfig default 4096 when the key is absent).
    let private mistralWindows (config: HfConfig) (_: int) =
        let window = slidingWindow config (Some 4096)
        fun (_: int) -> window

    /// Qwen2 / Qwen3 (as their HF configs build `layer_types`): without use_sliding_window no layer slides;
    /// with it, the layers `layer_types` marks "sliding_attention" (by default those from max_window_layers on)
    /// see the last `sliding_window` positions (default 4096).
    let private qwenWindows (config: HfConfig) (layers: int) =
        let window =
            if config.BoolOr("use_sliding_window", false) then
                slidingWindow config (Some 4096)
            else
                None
        let types =
            match config.TryGet "layer_types" with
            | Some v when v.ValueKind = JsonValueKind.Array && v.GetArrayLength() = layers ->
                [|
                    for t in v.EnumerateArray() ->
                        let kind =
                            if t.ValueKind = JsonValueKind.String then
                                t.GetString()
                            else
                                ""
                        if kind <> "sliding_attention" && kind <> "full_attention" then
                            config.Invalid(
                                "layer_types",
                                sprintf
                                    "has %s; each entry must be \"full_attention\" or \"sliding_attention\"."
                                    (t.GetRawText())
                            )
                        kind
                |]
            | Some _ ->
                config.Invalid("layer_types", sprintf "must list one attention type for each of the %d layers." layers)
            | None ->
                let first = config.IntOr("max_window_layers", 28)
                Array.init layers (fun i -> if i >= first then "sliding_attention" else "full_attention")
        fun (i: int) -> if types.[i] = "sliding_attention" then window else None

    /// Llama's attention_bias on all four projections (default false).
    let private attentionBias (config: HfConfig) =
        let b = config.BoolOr("attention_bias", false)
        b, b

    let private llamaVariant =
        {
            Name = "llama"
            Architectures = [ "LlamaForCausalLM"; "LlamaModel" ]
            BaseClasses = [ "LlamaModel" ]
            NormPlusOne = false
            ScaleEmbedding = false
            TiedByDefault = false
            Windows = fun _ _ _ -> None
            ProjectionBiases = attentionBias
            QkNormPerHead = false
            ActivationKeys = [ "hidden_act" ]
            DefaultActivation = "silu"
            DefaultHeadDim = None
        }

    /// Llama (1, 2, 3, and 3.1 / 3.2 with their llama3 rope_scaling).
    let llama = family llamaVariant

    /// Mistral: Llama plus a sliding attention window.
    let mistral =
        family
            { llamaVariant with
                Name = "mistral"
                Architectures = [ "MistralForCausalLM"; "MistralModel" ]
                BaseClasses = [ "MistralModel" ]
                Windows = mistralWindows
            }

    /// Gemma (the first generation).
    let gemma =
        family
            { llamaVariant with
                Name = "gemma"
                Architectures = [ "GemmaForCausalLM"; "GemmaModel" ]
                BaseClasses = [ "GemmaModel" ]
                NormPlusOne = true
                ScaleEmbedding = true
                TiedByDefault = true
                // HF's Gemma ignores hidden_act ("gelu" in the released configs) and uses the tanh GELU unless
                // hidden_activation says otherwise.
                ActivationKeys = [ "hidden_activation" ]
                DefaultActivation = "gelu_pytorch_tanh"
                DefaultHeadDim = Some 256
            }

    /// Qwen2 and Qwen2.5: q/k/v biases (always; o_proj has none), tied or untied head, per-layer sliding window.
    let qwen2 =
        family
            { llamaVariant with
                Name = "qwen2"
                Architectures = [ "Qwen2ForCausalLM"; "Qwen2Model" ]
                BaseClasses = [ "Qwen2Model" ]
                Windows = qwenWindows
                ProjectionBiases = fun _ -> true, false
            }

    /// Qwen3: RMSNorm on each query and key head before rotary, attention_bias (default false) on all four
    /// projections, head_dim from the config (default 128), per-layer sliding window as Qwen2.
    let qwen3 =
        family
            { llamaVariant with
                Name = "qwen3"
                Architectures = [ "Qwen3ForCausalLM"; "Qwen3Model" ]
                BaseClasses = [ "Qwen3Model" ]
                Windows = qwenWindows
                QkNormPerHead = true
                DefaultHeadDim = Some 128
            }
