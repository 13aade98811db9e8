namespace Jet.Core

open System

/// A function with a name, compared by its name only, so syntax that holds it keeps structural equality.
[<CustomEquality; NoComparison>]
type NamedFn =
    {
        Name: string
        Apply: Tensor -> Tensor
    }

    override f.Equals(other) =
        match other with
        | :? NamedFn as g -> f.Name = g.Name
        | _ -> false

    override f.GetHashCode() = hash f.Name
    override f.ToString() = f.Name

/// Pointwise activations.
[<RequireQualifiedAccess>]
type Activation =
    | Relu
    /// GELU with the exact erf.
    | Gelu
    /// GELU with the tanh approximation (GPT-2's `gelu_new`, Gemma's `gelu_pytorch_tanh`).
    | GeluTanh
    | Silu
    | Elu of alpha: float
    | Tanh
    | Sigmoid

/// An affine map x ↦ x Wᵀ + b. `Weight` names a parameter of shape [out, in]; `Bias` one of shape [out].
type Linear = { Weight: string; Bias: string option }

/// How rotary position embedding pairs the coordinates it rotates.
[<RequireQualifiedAccess>]
type RotaryStyle =
    /// Pairs coordinate i with i + r/2 (GPT-NeoX, Llama in Hugging Face layout).
    | RotateHalf
    /// Pairs coordinate 2i with 2i + 1 (GPT-J, the original RoFormer).
    | Interleaved

/// Rotary position embedding applied to queries and keys: the first `Fraction` of each head's
/// coordinates are rotated by angles position · Base^(−2i/r).
type Rotary = { Fraction: float; Base: float; Style: RotaryStyle }

/// How fused query/key/value rows are laid out in one projection.
[<RequireQualifiedAccess>]
type FusedLayout =
    /// [all query heads; all key heads; all value heads] (GPT-2's c_attn after transposing).
    | Blocked
    /// For each head h: [query_h; key_h; value_h] (GPT-NeoX's query_key_value).
    | PerHead

/// The query, key and value projections of an attention layer.
[<RequireQualifiedAccess>]
type Projections =
    | Separate of query: Linear * key: Linear * value: Linear
    | Fused of qkv: Linear * layout: FusedLayout

/// How attention scores q·k are scaled before the softmax.
[<RequireQualifiedAccess>]
type ScoreScaling =
    /// 1/√head_dim (almost every model).
    | InverseSqrtHeadDim
    /// No scaling (GPT-Neo).
    | Unscaled
    /// A fixed factor.
    | By of float

/// Causal multi-head self-attention over [batch, seq, d]. `KvHeads` < `Heads` is grouped-query attention.
type Attention =
    {
        Heads: int
        KvHeads: int
        HeadDim: int
        Projections: Projections
        Output: Linear
        Rotary: Rotary option
        Scaling: ScoreScaling
        /// Each position attends to at most this many positions, itself included (local / sliding-window attention).
        Window: int option
    }

/// LayerNorm over the last dimension: (x − mean) / √(var + eps) · w + b.
type LayerNormSpec = { Weight: string option; Bias: string option; Eps: float }

/// RMSNorm over the last dimension: x / √(mean(x²) + eps) · w, or · (1 + w) when `PlusOne` (Gemma).
type RmsNormSpec = { Weight: string option; Eps: float; PlusOne: bool }

/// act(x W_gᵀ) ⊙ (x W_uᵀ), then W_d.
type GatedMlpSpec = { Gate: Linear; Up: Linear; Down: Linear; Activation: Activation }

/// A function of the residual stream, as data. Parameters are referenced by name (see `Net`).
/// Shapes: every Fn maps [batch, seq, d_in] to [batch, seq, d_out]; only `Attention` mixes positions.
type Fn =
    | Linear of Linear
    | Act of Activation
    | LayerNorm of LayerNormSpec
    | RmsNorm of RmsNormSpec
    | Attention of Attention
    | GatedMlp of GatedMlpSpec
    /// Σ of branches applied to the same input.
    | Sum of Fn list
    /// Applies the functions left to right: Chain [f; g] is g ∘ f. Chain [] is the identity.
    | Chain of Fn list
    /// c · f(x).
    | Scale of float * Fn
    /// A user function with no rule of its own (evaluated as given; jets of it use nested JVPs).
    | Custom of NamedFn

    override f.ToString() =
        let linear (l: Linear) =
            match l.Bias with
            | Some b -> sprintf "Linear(%s, %s)" l.Weight b
            | None -> sprintf "Linear(%s)" l.Weight
        let act a =
            match a with
            | Activation.Relu -> "ReLU"
            | Activation.Gelu -> "GELU"
            | Activation.GeluTanh -> "GELUtanh"
            | Activation.Silu -> "SiLU"
            | Activation.Elu alpha -> sprintf "ELU(%g)" alpha
            | Activation.Tanh -> "tanh"
            | Activation.Sigmoid -> "sigmoid"
        match f with
        | Linear l -> linear l
        | Act a -> act a
        | LayerNorm n -> sprintf "LayerNorm(%s)" (defaultArg n.Weight "—")
        | RmsNorm n -> sprintf "RMSNorm(%s%s)" (defaultArg n.Weight "—") (if n.PlusOne then ", 1+w" else "")
        | Attention a ->
            let rotary =
                match a.Rotary with
                | Some r -> sprintf ", rotary %g%% %A" (100.0 * r.Fraction) r.Style
                | None -> ""
            let window = a.Window |> Option.map (sprintf ", window %d") |> Option.defaultValue ""
            let projections =
                match a.Projections with
                | Projections.Separate(q, k, v) -> sprintf "q %s, k %s, v %s" (linear q) (linear k) (linear v)
                | Projections.Fused(qkv, layout) -> sprintf "qkv %s %A" (linear qkv) layout
            let scaling =
                match a.Scaling with
                | ScoreScaling.InverseSqrtHeadDim -> ""
                | ScoreScaling.Unscaled -> ", unscaled"
                | ScoreScaling.By c -> sprintf ", scale %g" c
            sprintf "Attention(%d heads%s × %d%s%s%s, %s, out %s)" a.Heads (if a.KvHeads <> a.Heads then sprintf "/%d kv" a.KvHeads else "") a.HeadDim rotary window scaling projections (linear a.Output)
        | GatedMlp g -> sprintf "GatedMlp(%s ⊙ %s → %s)" (act g.Activation) (linear g.Up) (linear g.Down)
        | Sum branches -> "(" + (branches |> List.map string |> String.concat " + ") + ")"
        | Chain [] -> "id"
        | Chain steps -> steps |> List.map string |> String.concat " ▸ "
        | Scale(c, (Chain(_ :: _ :: _) as f)) -> sprintf "%g·(%O)" c f
        | Scale(c, f) -> sprintf "%g·%O" c f
        | Custom f -> f.Name

/// Helpers to write Fn values briefly.
[<RequireQualifiedAccess>]
module Fn =
    let identity = Chain []
    let linear weight = Linear { Weight = weight; Bias = None }
    let affine weight bias = Linear { Weight = weight; Bias = Some bias }
    let custom name (apply: Tensor -> Tensor) = Custom { Name = name; Apply = apply }

    /// Every parameter name the function refers to, in first-use order.
    let rec parameterNames (f: Fn) : string list =
        let linear (l: Linear) = l.Weight :: Option.toList l.Bias
        match f with
        | Linear l -> linear l
        | Act _ -> []
        | LayerNorm n -> Option.toList n.Weight @ Option.toList n.Bias
        | RmsNorm n -> Option.toList n.Weight
        | Attention a ->
            let projections =
                match a.Projections with
                | Projections.Separate(q, k, v) -> linear q @ linear k @ linear v
                | Projections.Fused(qkv, _) -> linear qkv
            projections @ linear a.Output
        | GatedMlp g -> linear g.Gate @ linear g.Up @ linear g.Down
        | Sum fs
        | Chain fs -> fs |> List.collect parameterNames
        | Scale(_, f) -> parameterNames f
        | Custom _ -> []
        |> List.distinct
