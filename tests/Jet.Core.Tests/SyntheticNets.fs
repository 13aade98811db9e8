/// Small randomly initialised networks written in the DSL, for tests (and, linked, for the benchmarks):
/// GPT-2-shaped sequential blocks, GPT-NeoX-shaped parallel blocks and attention-only stacks.
module Jet.Core.Tests.SyntheticNets

open TorchSharp
open Jet.Core

/// The shape of a synthetic transformer.
type Shape =
    {
        Vocab: int
        Width: int
        Heads: int
        Blocks: int
        MaxPositions: int
        /// Unembedding = the token embedding.
        Tied: bool
        /// The unembedding has a bias.
        UnembedBias: bool
    }

let private layerNorm name = LayerNorm { Weight = Some(name + ".weight"); Bias = Some(name + ".bias"); Eps = 1e-5 }

let private attention (shape: Shape) (prefix: string) =
    Attention
        {
            Heads = shape.Heads
            KvHeads = shape.Heads
            HeadDim = shape.Width / shape.Heads
            Projections =
                Projections.Fused(
                    { Weight = prefix + ".c_attn.weight"; Bias = Some(prefix + ".c_attn.bias") },
                    FusedLayout.Blocked
                )
            Output = { Weight = prefix + ".c_proj.weight"; Bias = Some(prefix + ".c_proj.bias") }
            Rotary = None
            Scaling = ScoreScaling.InverseSqrtHeadDim
            Window = None
        }

let private mlp (prefix: string) =
    Chain
        [
            Fn.affine (prefix + ".c_fc.weight") (prefix + ".c_fc.bias")
            Act Activation.GeluTanh
            Fn.affine (prefix + ".c_proj.weight") (prefix + ".c_proj.bias")
        ]

/// The parameters every block layout shares, N(0, std) with a seeded generator.
let private parameters
    (seed: int)
    (shape: Shape)
    (dtype: torch.ScalarType)
    (blockParameters: int -> (string * int64[] * float) list)
    =
    Native.ensure ()
    use g = new torch.Generator(uint64 seed)
    let d, v = int64 shape.Width, int64 shape.Vocab
    let normal (dims: int64[]) (std: float) =
        (torch.randn (dims, dtype = torch.float64, generator = g) * std).to_type dtype
    let wte = normal [| v; d |] 0.5
    [
        "wte", wte
        "wpe", normal [| int64 shape.MaxPositions; d |] 0.1
        for b in 1 .. shape.Blocks do
            for name, dims, std in blockParameters b do
                name,
                (if name.EndsWith ".weight" && dims.Length = 1 then
                     1.0 + normal dims std
                 else
                     normal dims std)
        "ln_f.weight", 1.0 + normal [| d |] 0.1
        "ln_f.bias", normal [| d |] 0.1
        if not shape.Tied then
            "lm_head.weight", normal [| v; d |] (1.0 / sqrt (float d))
        if shape.UnembedBias then
            "lm_head.bias", normal [| v |] 0.2
    ]

let private attentionParameters (shape: Shape) (prefix: string) (norm: string) =
    let d = int64 shape.Width
    [
        norm + ".weight", [| d |], 0.1
        norm + ".bias", [| d |], 0.1
        prefix + ".c_attn.weight", [| 3L * d; d |], 1.0 / sqrt (float d)
        prefix + ".c_attn.bias", [| 3L * d |], 0.02
        prefix + ".c_proj.weight", [| d; d |], 1.0 / sqrt (float d)
        prefix + ".c_proj.bias", [| d |], 0.02
    ]

let private mlpParameters (shape: Shape) (prefix: string) (norm: string) =
    let d = int64 shape.Width
    [
        norm + ".weight", [| d |], 0.1
        norm + ".bias", [| d |], 0.1
        prefix + ".c_fc.weight", [| 4L * d; d |], 1.0 / sqrt (float d)
        prefix + ".c_fc.bias", [| 4L * d |], 0.02
        prefix + ".c_proj.weight", [| d; 4L * d |], 1.0 / sqrt (float (4L * d))
        prefix + ".c_proj.bias", [| d |], 0.02
    ]

let private spec (name: string) (shape: Shape) (layers: ResidualLayer list) : NetSpec =
    {
        Name = name
        Vocab = shape.Vocab
        Width = shape.Width
        MaxPositions = Some shape.MaxPositions
        Encoder = { TokenEmbedding = "wte"; Positions = Some "wpe"; Scale = None }
        Layers = layers
        FinalNorm = layerNorm "ln_f"
        Unembedding =
            {
                Weight = (if shape.Tied then "wte" else "lm_head.weight")
                Bias = (if shape.UnembedBias then Some "lm_head.bias" else None)
                Tied = shape.Tied
                SoftCap = None
            }
    }

/// GPT-2-shaped: per block an attention layer LN₁ ▸ Attn and an MLP layer LN₂ ▸ fc ▸ GELU(tanh) ▸ proj.
let gpt2Like (seed: int) (shape: Shape) (dtype: torch.ScalarType) : Net =
    let layers =
        [
            for b in 1 .. shape.Blocks do
                let p = sprintf "h%d" b
                {
                    Name = sprintf "attn%d" b
                    Block = b
                    Kind = LayerKind.Attention
                    Gamma = Chain [ layerNorm (p + ".ln_1"); attention shape (p + ".attn") ]
                }
                {
                    Name = sprintf "mlp%d" b
                    Block = b
                    Kind = LayerKind.Mlp
                    Gamma = Chain [ layerNorm (p + ".ln_2"); mlp (p + ".mlp") ]
                }
        ]
    let ps =
        parameters seed shape dtype (fun b ->
            let p = sprintf "h%d" b in
            attentionParameters shape (p + ".attn") (p + ".ln_1")
            @ mlpParameters shape (p + ".mlp") (p + ".ln_2"))
    Net.create (spec "gpt2-like" shape layers) (ParameterStore.OfSeq ps)

/// GPT-NeoX-shaped: one parallel residual layer per block, γ = Attn(LN₁ h) + MLP(LN₂ h).
let neoxLike (seed: int) (shape: Shape) (dtype: torch.ScalarType) : Net =
    let layers =
        [
            for b in 1 .. shape.Blocks ->
                let p = sprintf "h%d" b
                {
                    Name = sprintf "block%d" b
                    Block = b
                    Kind = LayerKind.Parallel
                    Gamma =
                        Sum
                            [
                                Chain [ layerNorm (p + ".ln_1"); attention shape (p + ".attn") ]
                                Chain [ layerNorm (p + ".ln_2"); mlp (p + ".mlp") ]
                            ]
                }
        ]
    let ps =
        parameters seed shape dtype (fun b ->
            let p = sprintf "h%d" b in
            attentionParameters shape (p + ".attn") (p + ".ln_1")
            @ mlpParameters shape (p + ".mlp") (p + ".ln_2"))
    Net.create (spec "neox-like" shape layers) (ParameterStore.OfSeq ps)

/// Attention layers only (no MLP anywhere).
let attentionOnly (seed: int) (shape: Shape) (dtype: torch.ScalarType) : Net =
    let layers =
        [
            for b in 1 .. shape.Blocks ->
                let p = sprintf "h%d" b
                {
                    Name = sprintf "attn%d" b
                    Block = b
                    Kind = LayerKind.Attention
                    Gamma = Chain [ layerNorm (p + ".ln_1"); attention shape (p + ".attn") ]
                }
        ]
    let ps =
        parameters seed shape dtype (fun b ->
            let p = sprintf "h%d" b in attentionParameters shape (p + ".attn") (p + ".ln_1"))
    Net.create (spec "attention-only" shape layers) (ParameterStore.OfSeq ps)

/// A small shape: vocabulary 50, width 16, 2 heads, 2 blocks, 32 positions.
let small =
    {
        Vocab = 50
        Width = 16
        Heads = 2
        Blocks = 2
        MaxPositions = 32
        Tied = false
        UnembedBias = true
    }
