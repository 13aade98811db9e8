namespace Jet.Core.Models

open TorchSharp
open Jet.Core

/// The built-in toy network of the paper's Sec. 4.2: vocabulary 100, width d, two residual blocks
/// h + W₂ ReLU(W₁ h + b₁) + b₂ (hidden width 4d), a final LayerNorm and an untied unembedding.
[<RequireQualifiedAccess>]
module Toy =
    /// The toy's vocabulary size.
    [<Literal>]
    let Vocab = 100

    /// The structure of the toy network of width d with `blocks` residual blocks (the paper's toy has 2).
    let spec (width: int) (blocks: int) : NetSpec =
        let layer b =
            let p name = sprintf "block%d.%s" b name
            {
                Name = sprintf "block%d" b
                Block = b
                Kind = LayerKind.Block
                Gamma =
                    Chain
                        [
                            Fn.affine (p "fc1.weight") (p "fc1.bias")
                            Act Activation.Relu
                            Fn.affine (p "fc2.weight") (p "fc2.bias")
                        ]
            }
        {
            Name = "toy"
            Vocab = Vocab
            Width = width
            MaxPositions = None
            Encoder = { TokenEmbedding = "embed.weight"; Positions = None; Scale = None }
            Layers = [ for b in 1..blocks -> layer b ]
            FinalNorm = LayerNorm { Weight = Some "ln_f.weight"; Bias = Some "ln_f.bias"; Eps = 1e-5 }
            Unembedding = { Weight = "unembed.weight"; Bias = None; Tied = false; SoftCap = None }
        }

    /// A seeded toy network (weights N(0, 1/fan_in), embeddings N(0, 1)) in the given dtype. The caller owns it.
    let createDeep (seed: int) (width: int) (blocks: int) (dtype: torch.ScalarType) : Net =
        if width < 1 then
            raise (IndexRangeException(sprintf "The toy width must be ≥ 1; got %d." width))
        if blocks < 1 then
            raise (IndexRangeException(sprintf "The toy needs at least one block; got %d." blocks))
        // float64 draws and their converted copies: 2 V d + blocks (8 d² + 5 d) + 2 d values of 8 + 8 bytes at most.
        let values (d: float) = 2.0 * float Vocab * d + float blocks * (8.0 * d * d + 5.0 * d) + 2.0 * d
        // The d² term dominates any width that does not fit.
        let widest = sqrt (float (Memory.available ()) / (16.0 * 8.0 * float blocks))
        Memory.require
            (sprintf "A toy network of width %d with %d blocks" width blocks)
            (16.0 * values (float width))
            (sprintf "Use a width of at most about %.0f." (floor widest))
        Native.ensure ()
        // The scope frees the float64 draws; only the parameters leave it, owned by the network.
        use scope = torch.NewDisposeScope()
        use g = new torch.Generator(uint64 seed)
        let d, h = int64 width, int64 (4 * width)
        let normal (shape: int64[]) (std: float) =
            (torch.randn (shape, dtype = torch.float64, generator = g) * std).to_type dtype
        let parameters =
            [
                "embed.weight", normal [| int64 Vocab; d |] 1.0
                for b in 1..blocks do
                    let p name = sprintf "block%d.%s" b name
                    p "fc1.weight", normal [| h; d |] (1.0 / sqrt (float d))
                    p "fc1.bias", normal [| h |] 0.1
                    p "fc2.weight", normal [| d; h |] (1.0 / sqrt (float h))
                    p "fc2.bias", normal [| d |] 0.1
                "ln_f.weight", (1.0 + normal [| d |] 0.1)
                "ln_f.bias", normal [| d |] 0.1
                "unembed.weight", normal [| int64 Vocab; d |] (1.0 / sqrt (float d))
            ]
        for _, t in parameters do
            t.DetachFromDisposeScope() |> ignore
        Net.create (spec width blocks) (ParameterStore.OfSeq parameters)

    /// The paper's two-block toy network.
    let create (seed: int) (width: int) (dtype: torch.ScalarType) : Net = createDeep seed width 2 dtype
