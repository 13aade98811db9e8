namespace Jet.Core.Apps

open TorchSharp
open Jet.Core

/// The paper's Sec. 4.2 carving of a residual network into input→output paths.
[<RequireQualifiedAccess>]
module Carving =
    /// Centres {h₀, γ₁(h₀)}, expand residual layer 2 at `order` (4 sub-streams), then the decoder around those
    /// terms at `order` (4 paths in logit space). Needs a network with at least 2 residual layers.
    let twoStep (order: int) (engine: Engine) =
        let inner =
            Expansion.atLayer 2 [ Centre.Stream 0; Centre.Gamma 1 ]
            |> Expansion.withOrder order
            |> Expansion.withEngine engine
        Expansion.atDecoder [ Centre.Terms inner ]
        |> Expansion.withOrder order
        |> Expansion.withEngine engine

    /// A seeded random prompt [1, length] of ids in 0..vocab−1.
    let randomPrompt (seed: int) (vocab: int) (length: int) =
        Native.ensure ()
        use g = new torch.Generator(uint64 seed)
        torch.randint (int64 vocab, [| 1L; int64 length |], dtype = torch.int64, generator = g)
