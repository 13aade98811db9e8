namespace Jet.Core.Models.Families

open System.Text.Json
open Jet.Core
open Jet.Core.Models

/// The Llama-shaped families: pre-norm blocks of RMSNorm ▸ attention (separate q/k/v, grouped KV heads,
/// full rotate-half rotary embedding with base `rope_theta`) and RMSNorm ▸ gated MLP, no absolute positions.
/// Llama and Mistral use SwiGLU and an untied head by default; Mistral adds a sliding attention window;
/// Gemma scales RMSNorm by (1 + w), uses GeGLU with the tanh GELU, multiplies embeddings by √d, takes
/// head_dim from the config and ties its head.
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
            /// Mistral's sliding_window (HF default 4096 when the key is absent; null means none).
            SlidingWindow: bool
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
        let theta = config.PositiveOr("rope_theta", 10000.0)
        Lowering.requireNoRopeScaling config
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
        let attentionBias = config.BoolOr("attention_bias", false)
        let mlpBias = config.BoolOr("mlp_bias", false)
        let window =
            if not variant.SlidingWindow then
                None
            else
                match config.Root.TryGetProperty "sliding_window" with
                | false, _ -> Some 4096 // HF's MistralConfig default
                | true, v when v.ValueKind = JsonValueKind.Null -> None
                | true, _ ->
                    match config.TryInt "sliding_window" with
                    | Some w when w > 0 -> Some w
                    | _ -> config.Invalid("sliding_window", "must be a positive integer or null.")
        let prefix = Lowering.detectPrefix has variant.Name [ "model."; "" ] "embed_tokens.weight"
        let plan = TensorPlan(prefix)
        let embedding = plan.Tensor("embed_tokens.weight", [ vocab; d ])
        let norm name = plan.RmsNorm(name, d, eps, variant.NormPlusOne)
        let block i =
            let p name = sprintf "layers.%d.%s" i name
            let attention =
                Attention
                    {
                        Heads = heads
                        KvHeads = kvHeads
                        HeadDim = headDim
                        Projections =
                            Projections.Separate(
                                plan.Linear(p "self_attn.q_proj", heads * headDim, d, attentionBias),
                                plan.Linear(p "self_attn.k_proj", kvHeads * headDim, d, attentionBias),
                                plan.Linear(p "self_attn.v_proj", kvHeads * headDim, d, attentionBias)
                            )
                        Output = plan.Linear(p "self_attn.o_proj", d, heads * headDim, attentionBias)
                        Rotary = Some { Fraction = 1.0; Base = theta; Style = RotaryStyle.RotateHalf }
                        Scaling = ScoreScaling.InverseSqrtHeadDim
                        Window = window
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

    let private llamaVariant =
        {
            Name = "llama"
            Architectures = [ "LlamaForCausalLM"; "LlamaModel" ]
            BaseClasses = [ "LlamaModel" ]
            NormPlusOne = false
            ScaleEmbedding = false
            TiedByDefault = false
            SlidingWindow = false
            ActivationKeys = [ "hidden_act" ]
            DefaultActivation = "silu"
            DefaultHeadDim = None
        }

    /// Llama (1, 2, 3 without rope_scaling).
    let llama = family llamaVariant

    /// Mistral: Llama plus a sliding attention window.
    let mistral =
        family
            { llamaVariant with
                Name = "mistral"
                Architectures = [ "MistralForCausalLM"; "MistralModel" ]
                BaseClasses = [ "MistralModel" ]
                SlidingWindow = true
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
