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

    /// Taylor rule of `layerNorm`: the mean and the weight are linear; the variance is the mean of a Cauchy
    /// square; 1/√(var + eps) uses the power recurrence (eps moves only the constant coefficient); the bias moves
    /// x₀ only. Shapes: [k+1, ..., d] → [k+1, ..., d].
    /// Example: in d = 2 without weights, the line x(t) = (1, −1) + t(1, 1) only shifts the mean, so the series is
    /// [LN(1, −1); 0; 0; …].
    let layerNormTaylor (parameters: ParameterStore) (spec: LayerNormSpec) (x: Tensor) : Tensor =
        let centred = x - x.mean ([| -1L |], keepdim = true)
        let variance = (Series.square centred).mean ([| -1L |], keepdim = true)
        let normed = Series.mul centred (Series.rsqrt (Series.shiftBy spec.Eps variance))
        let scaled = match spec.Weight with Some w -> normed * parameters.[w] | None -> normed
        match spec.Bias with Some b -> Series.shift parameters.[b] scaled | None -> scaled

    /// Taylor rule of `rmsNorm`: mean(x·x) by a Cauchy square, 1/√(· + eps) by the power recurrence, a Cauchy
    /// product with x, then the (linear) weight w or 1 + w. Shapes: [k+1, ..., d] → [k+1, ..., d].
    let rmsNormTaylor (parameters: ParameterStore) (spec: RmsNormSpec) (x: Tensor) : Tensor =
        let meanSquare = (Series.square x).mean ([| -1L |], keepdim = true)
        let normed = Series.mul x (Series.rsqrt (Series.shiftBy spec.Eps meanSquare))
        match spec.Weight with
        | Some w when spec.PlusOne -> normed * (1.0 + parameters.[w])
        | Some w -> normed * parameters.[w]
        | None -> normed
