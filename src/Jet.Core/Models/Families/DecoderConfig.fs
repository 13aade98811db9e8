namespace Jet.Core.Models.Families

open System.Text.Json
open Jet.Core
open Jet.Core.Models

/// The sizes every Llama-shaped `config.json` gives (OLMo, OLMo-2, Phi-3, Gemma 2), read and checked in one place.
type DecoderSizes =
    {
        Width: int
        Heads: int
        KvHeads: int
        HeadDim: int
        Layers: int
        Vocab: int
        Inner: int
        Positions: int
        /// The rotary embedding on whole heads: `rope_theta` and `rope_scaling` as `Lowering.rotary` reads them.
        Rotary: Rotary
    }

/// Reading the common keys of Llama-shaped configs.
[<RequireQualifiedAccess>]
module DecoderConfig =
    /// hidden_size, num_attention_heads, num_key_value_heads (default: the heads; must divide them), head_dim (from
    /// the config when `headDimKey` is given and present, else hidden_size / heads), num_hidden_layers, vocab_size,
    /// intermediate_size, max_position_embeddings, and the rotary embedding (rope_theta, default 10000, and
    /// `rope_scaling` linear or llama3 as Hugging Face computes them; other types refused, naming them).
    let sizes (config: HfConfig) (headDimFromConfig: bool) : DecoderSizes =
        let d = config.Int "hidden_size"
        let heads = config.Int "num_attention_heads"
        let kvHeads = config.IntOr("num_key_value_heads", heads)
        if kvHeads <= 0 || heads % kvHeads <> 0 then
            config.Invalid(
                "num_key_value_heads",
                sprintf "is %d; it must divide num_attention_heads = %d." kvHeads heads
            )
        let headDim =
            match config.TryInt "head_dim" with
            | Some h when headDimFromConfig && h > 0 -> h
            | Some h when headDimFromConfig -> config.Invalid("head_dim", sprintf "is %d; it must be positive." h)
            | _ -> Lowering.headDim config "hidden_size" d "num_attention_heads" heads
        {
            Width = d
            Heads = heads
            KvHeads = kvHeads
            HeadDim = headDim
            Layers = config.Int "num_hidden_layers"
            Vocab = config.Int "vocab_size"
            Inner = config.Int "intermediate_size"
            Positions = config.Int "max_position_embeddings"
            Rotary = Lowering.rotary config 10000.0 1.0 RotaryStyle.RotateHalf
        }

    /// `sliding_window`: None when absent or null, else a positive integer.
    let slidingWindow (config: HfConfig) : int option =
        match config.Root.TryGetProperty "sliding_window" with
        | false, _ -> None
        | true, v when v.ValueKind = JsonValueKind.Null -> None
        | true, _ ->
            match config.TryInt "sliding_window" with
            | Some w when w > 0 -> Some w
            | _ -> config.Invalid("sliding_window", "must be a positive integer or null.")

    /// Attention with separate or fused projections given, rotate-half rotary on `fraction` of each head's coordinates.
    let attention (s: DecoderSizes) (projections: Projections) (output: Linear) (fraction: float) scaling window =
        Attention
            {
                Heads = s.Heads
                KvHeads = s.KvHeads
                HeadDim = s.HeadDim
                Projections = projections
                Output = output
                Rotary = Some { s.Rotary with Fraction = fraction }
                Scaling = scaling
                Window = window
            }

    /// q_proj, k_proj and v_proj of `layers.i.self_attn`, with or without biases.
    let separateProjections (plan: TensorPlan) (s: DecoderSizes) (p: string -> string) (bias: bool) =
        Projections.Separate(
            plan.Linear(p "self_attn.q_proj", s.Heads * s.HeadDim, s.Width, bias),
            plan.Linear(p "self_attn.k_proj", s.KvHeads * s.HeadDim, s.Width, bias),
            plan.Linear(p "self_attn.v_proj", s.KvHeads * s.HeadDim, s.Width, bias)
        )

    /// The gated MLP gate_proj, up_proj, down_proj of `layers.i.mlp` without biases.
    let gatedMlp (plan: TensorPlan) (s: DecoderSizes) (p: string -> string) (activation: Activation) =
        GatedMlp
            {
                Gate = plan.Linear(p "mlp.gate_proj", s.Inner, s.Width, false)
                Up = plan.Linear(p "mlp.up_proj", s.Inner, s.Width, false)
                Down = plan.Linear(p "mlp.down_proj", s.Width, s.Inner, false)
                Activation = activation
            }

    /// The spec of a network without absolute positions.
    let spec (name: string) (s: DecoderSizes) (embedding: string) scale layers finalNorm unembedding : NetSpec =
        {
            Name = name
            Vocab = s.Vocab
            Width = s.Width
            MaxPositions = Some s.Positions
            Encoder = { TokenEmbedding = embedding; Positions = None; Scale = scale }
            Layers = layers
            FinalNorm = finalNorm
            Unembedding = unembedding
        }
