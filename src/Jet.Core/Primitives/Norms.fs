namespace Jet.Core.Primitives

open TorchSharp
open Jet.Core

/// Forward definitions of LayerNorm and RMSNorm over the last dimension.
[<RequireQualifiedAccess>]
module Norms =
    /// (x − mean) / √(var + eps) · w + b, with the biased variance (as torch.nn.LayerNorm).
    let layerNorm (parameters: ParameterStore) (spec: LayerNormSpec) (x: Tensor) : Tensor =
        let centred = x - x.mean ([| -1L |], keepdim = true)
        let variance = (centred * centred).mean ([| -1L |], keepdim = true)
        let normed = centred * torch.rsqrt (variance + spec.Eps)
        let scaled = match spec.Weight with Some w -> normed * parameters.[w] | None -> normed
        match spec.Bias with Some b -> scaled + parameters.[b] | None -> scaled

    /// x / √(mean(x²) + eps) · w, or · (1 + w) when `PlusOne`.
    let rmsNorm (parameters: ParameterStore) (spec: RmsNormSpec) (x: Tensor) : Tensor =
        let normed = x * torch.rsqrt ((x * x).mean ([| -1L |], keepdim = true) + spec.Eps)
        match spec.Weight with
        | Some w when spec.PlusOne -> normed * (1.0 + parameters.[w])
        | Some w -> normed * parameters.[w]
        | None -> normed
