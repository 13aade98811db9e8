namespace Jet.Core.Primitives

open TorchSharp
open Jet.Core

/// Forward definition of affine maps.
[<RequireQualifiedAccess>]
module Affine =
    /// x Wᵀ + b over the last dimension. Shapes: x [..., in], W [out, in], b [out] → [..., out].
    let apply (parameters: ParameterStore) (l: Linear) (x: Tensor) : Tensor =
        let w = parameters.[l.Weight]
        match l.Bias with
        | Some b -> torch.nn.functional.linear (x, w, parameters.[b])
        | None -> torch.nn.functional.linear (x, w)
