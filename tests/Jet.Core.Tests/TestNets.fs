/// Small random networks written with the DSL, for expansion properties.
module Jet.Core.Tests.TestNets

open TorchSharp
open FsCheck
open FsCheck.FSharp
open Jet.Core

/// What one residual layer computes.
type LayerRecipe =
    /// W₂ act(W₁ h + b₁) + b₂.
    | Mlp of Activation
    /// W₂ gelu_tanh(W₁ LN(h) + b₁) + b₂ (GPT-2's MLP layer).
    | PreNormMlp
    /// Attn(RMSNorm(h)) with rotary positions and grouped KV heads.
    | RotaryAttention of window: int option
    /// Attn(LN(h)) with fused QKV and biases.
    | FusedAttention
    /// SwiGLU gated MLP after RMSNorm.
    | Gated
    /// An affine map W h + b (a linear γ).
    | Affine

/// Builds a network of width d (even, ≥ 4) from recipes, with seeded random parameters in `dtype`.
let build
    (seed: int)
    (width: int)
    (recipes: LayerRecipe list)
    (dtype: torch.ScalarType)
    (withPositions: int option)
    : Net =
    Native.ensure ()
    let g = new torch.Generator(uint64 seed)
    let d = int64 width
    let normal (shape: int64 list) (std: float) : Tensor =
        (torch.randn (Array.ofList shape, dtype = torch.float64, generator = g) * std).to_type dtype
    let parameters = ResizeArray<string * Tensor>()
    let param name shape std =
        parameters.Add(name, normal shape std)
        name
    let ones name =
        parameters.Add(name, (1.0 + normal [ d ] 0.1))
        name
    let linear name (inputs: int64) (outputs: int64) bias =
        {
            Weight = param (name + ".weight") [ outputs; inputs ] (1.0 / sqrt (float inputs))
            Bias =
                (if bias then
                     Some(param (name + ".bias") [ outputs ] 0.1)
                 else
                     None)
        }
    let vocab = 23
    let heads = 2
    let headDim = width / heads
    let layers =
        recipes
        |> List.mapi (fun i recipe ->
            let p name = sprintf "l%d.%s" (i + 1) name
            let gamma, kind =
                match recipe with
                | Mlp act ->
                    Chain
                        [ Linear(linear (p "fc1") d (2L * d) true); Act act; Linear(linear (p "fc2") (2L * d) d true) ],
                    LayerKind.Mlp
                | PreNormMlp ->
                    Chain
                        [
                            LayerNorm
                                {
                                    Weight = Some(ones (p "ln.weight"))
                                    Bias = Some(param (p "ln.bias") [ d ] 0.1)
                                    Eps = 1e-5
                                }
                            Linear(linear (p "fc") d (4L * d) true)
                            Act Activation.GeluTanh
                            Linear(linear (p "proj") (4L * d) d true)
                        ],
                    LayerKind.Mlp
                | RotaryAttention window ->
                    let attention =
                        {
                            Heads = heads
                            KvHeads = 1
                            HeadDim = headDim
                            Projections =
                                Projections.Separate(
                                    linear (p "q") d (int64 (heads * headDim)) false,
                                    linear (p "k") d (int64 headDim) false,
                                    linear (p "v") d (int64 headDim) false
                                )
                            Output = linear (p "o") (int64 (heads * headDim)) d false
                            Rotary =
                                Some
                                    {
                                        Fraction = 1.0
                                        Base = 10000.0
                                        Style = RotaryStyle.RotateHalf
                                        Scaling = RotaryScaling.Plain
                                    }
                            Scaling = ScoreScaling.InverseSqrtHeadDim
                            Window = window
                        }
                    Chain
                        [
                            RmsNorm { Weight = Some(ones (p "norm.weight")); Eps = 1e-6; PlusOne = false }
                            Attention attention
                        ],
                    LayerKind.Attention
                | FusedAttention ->
                    let attention =
                        {
                            Heads = heads
                            KvHeads = heads
                            HeadDim = headDim
                            Projections = Projections.Fused(linear (p "qkv") d (3L * d) true, FusedLayout.Blocked)
                            Output = linear (p "o") d d true
                            Rotary = None
                            Scaling = ScoreScaling.InverseSqrtHeadDim
                            Window = None
                        }
                    Chain
                        [
                            LayerNorm
                                {
                                    Weight = Some(ones (p "ln.weight"))
                                    Bias = Some(param (p "ln.bias") [ d ] 0.1)
                                    Eps = 1e-5
                                }
                            Attention attention
                        ],
                    LayerKind.Attention
                | Gated ->
                    Chain
                        [
                            RmsNorm { Weight = Some(param (p "norm.weight") [ d ] 0.1); Eps = 1e-6; PlusOne = true }
                            GatedMlp
                                {
                                    Gate = linear (p "gate") d (2L * d) false
                                    Up = linear (p "up") d (2L * d) false
                                    Down = linear (p "down") (2L * d) d false
                                    Activation = Activation.Silu
                                }
                        ],
                    LayerKind.Mlp
                | Affine -> Linear(linear (p "map") d d true), LayerKind.Other "affine"
            { Name = sprintf "layer%d" (i + 1); Block = i + 1; Kind = kind; Gamma = gamma })
    let spec =
        {
            Name = "test"
            Vocab = vocab
            Width = width
            MaxPositions = withPositions
            Encoder =
                {
                    TokenEmbedding = param "embed" [ int64 vocab; d ] 1.0
                    Positions = withPositions |> Option.map (fun n -> param "positions" [ int64 n; d ] 0.3)
                    Scale = None
                }
            Layers = layers
            FinalNorm =
                LayerNorm { Weight = Some(ones "ln_f.weight"); Bias = Some(param "ln_f.bias" [ d ] 0.1); Eps = 1e-5 }
            Unembedding = { Weight = "embed"; Bias = None; Tied = true; SoftCap = None }
        }
    Net.create spec (ParameterStore.OfSeq parameters)

let recipeGen =
    Gen.oneof
        [
            Gen.elements
                [
                    Activation.Relu
                    Activation.Gelu
                    Activation.Tanh
                    Activation.Sigmoid
                    Activation.Silu
                    Activation.Elu 1.0
                ]
            |> Gen.map Mlp
            Gen.constant PreNormMlp
            Gen.elements [ None; Some 2 ] |> Gen.map RotaryAttention
            Gen.constant FusedAttention
            Gen.constant Gated
        ]

/// A random network description: seed, width, layers (1..4), tokens [batch, seq].
type NetCase = { Seed: int; Width: int; Recipes: LayerRecipe list; Batch: int; Seq: int }

let netCaseGen (minLayers: int) =
    gen {
        let! seed = Gen.choose (0, 1_000_000)
        let! width = Gen.elements [ 4; 6; 8 ]
        let! depth = Gen.choose (minLayers, 4)
        let! recipes = Gen.listOfLength depth recipeGen
        let! batch = Gen.choose (1, 2)
        let! seq = Gen.choose (1, 5)
        return { Seed = seed; Width = width; Recipes = recipes; Batch = batch; Seq = seq }
    }

/// Seeded random token ids [batch, seq] for a case.
let tokensOf (case: NetCase) (vocab: int) =
    use g = new torch.Generator(uint64 (case.Seed + 17))
    torch.randint (int64 vocab, [| int64 case.Batch; int64 case.Seq |], dtype = torch.int64, generator = g)
