namespace Jet.Core

/// What a residual layer computes, for display and for addressing "the MLP of block 3".
[<RequireQualifiedAccess>]
type LayerKind =
    | Attention
    | Mlp
    /// Attention and MLP read the same input (GPT-NeoX parallel residual): one residual layer per block.
    | Parallel
    /// A whole block as one residual layer (the toy network).
    | Block
    | Other of string

/// One residual layer h_l = h_{l−1} + γ_l(h_{l−1}). γ never contains the skip connection.
type ResidualLayer =
    {
        /// Display name, for example "attn3" or "mlp3".
        Name: string
        /// The transformer block (1-based) this layer belongs to.
        Block: int
        Kind: LayerKind
        /// Pre-norm included: γ(h) for GPT-2's attention layer is Attn(LN₁(h)).
        Gamma: Fn
    }

/// h₀ = Scale · E[z] + P[position]. `TokenEmbedding` names a [vocab, d] parameter, `Positions` a [max_positions, d] one.
type Encoder = { TokenEmbedding: string; Positions: string option; Scale: float option }

/// logits = LN_f(h_L) Uᵀ (+ b), then c·tanh(· / c) when `SoftCap` is c (Gemma 2's final_logit_softcapping). `Weight`
/// names a [vocab, d] parameter (the token embedding itself when tied).
type Unembedding =
    {
        Weight: string
        Bias: string option
        Tied: bool
        /// The final logit soft-cap c, if any: it makes the map after LN_f non-linear (see Decoder).
        SoftCap: float option
    }

/// The structure of a residual network, as data. Parameters are referenced by name and live in `Net.Parameters`.
type NetSpec =
    {
        /// A short description, for example "toy" or "gpt2".
        Name: string
        Vocab: int
        Width: int
        /// The longest sequence the network accepts (the position table's length), if it has a limit.
        MaxPositions: int option
        Encoder: Encoder
        Layers: ResidualLayer list
        FinalNorm: Fn
        Unembedding: Unembedding
    }

    /// The number L of residual layers.
    member s.Depth = List.length s.Layers

    /// The number of transformer blocks.
    member s.BlockCount = s.Layers |> List.map (fun l -> l.Block) |> List.distinct |> List.length

    /// For each block (1-based), its residual layers (1-based), in order.
    member s.BlockLayers: Map<int, int list> =
        s.Layers
        |> List.mapi (fun i l -> l.Block, i + 1)
        |> List.groupBy fst
        |> List.map (fun (b, ls) -> b, List.map snd ls)
        |> Map.ofList
