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

    /// Taylor rule: x Wᵀ is linear, so it maps the whole series [k+1, ..., in] in one matmul; the bias is a
    /// constant and moves the coefficient x₀ only. Shapes: [k+1, ..., in] → [k+1, ..., out].
    /// Example: for W = [[2]] and b = [1], the line [3; 1] (x = 3 + t) maps to [7; 2] (7 + 2t).
    let taylor (parameters: ParameterStore) (l: Linear) (x: Tensor) : Tensor =
        let y = torch.nn.functional.linear (x, parameters.[l.Weight])
        match l.Bias with
        | Some b ->
            // In place: y is fresh and no backward function saved it, so autograd stays correct.
            y.narrow(0L, 0L, 1L).add_ parameters.[b] |> ignore
            y
        | None -> y
