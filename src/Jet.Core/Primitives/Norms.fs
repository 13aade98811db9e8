namespace Jet.Core

/// LayerNorm over the last dimension: (x − mean) / √(var + eps) · w + b.
type LayerNormSpec = { Weight: string option; Bias: string option; Eps: float }

/// RMSNorm over the last dimension: x / √(mean(x²) + eps) · w, or · (1 + w) when `PlusOne` (Gemma).
type RmsNormSpec = { Weight: string option; Eps: float; PlusOne: bool }

namespace Jet.Core.Primitives

open TorchSharp
open Jet.Core

/// LayerNorm and RMSNorm over the last dimension (`LayerNorm spec`, `RmsNorm spec`): forward definitions, Taylor
/// rules, printing and parameters. They share their maths (a mean, a power −½ and a weight), so they share a file.
[<RequireQualifiedAccess>]
module Norms =
    /// (x − mean) / √(var + eps) · w + b, with the biased variance (as torch.nn.LayerNorm).
    let layerNorm (parameters: ParameterStore) (spec: LayerNormSpec) (x: Tensor) : Tensor =
        let centred = x - x.mean ([| -1L |], keepdim = true)
        let variance = (centred * centred).mean ([| -1L |], keepdim = true)
        let normed = centred * torch.rsqrt (variance + spec.Eps)
        let scaled =
            match spec.Weight with
            | Some w -> normed * parameters.[w]
            | None -> normed
        match spec.Bias with
        | Some b -> scaled + parameters.[b]
        | None -> scaled

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
        let scaled =
            match spec.Weight with
            | Some w -> normed * parameters.[w]
            | None -> normed
        match spec.Bias with
        | Some b -> Series.shift parameters.[b] scaled
        | None -> scaled

    /// Taylor rule of `rmsNorm`: mean(x·x) by a Cauchy square, 1/√(· + eps) by the power recurrence, a Cauchy
    /// product with x, then the (linear) weight w or 1 + w. Shapes: [k+1, ..., d] → [k+1, ..., d].
    let rmsNormTaylor (parameters: ParameterStore) (spec: RmsNormSpec) (x: Tensor) : Tensor =
        let meanSquare = (Series.square x).mean ([| -1L |], keepdim = true)
        let normed = Series.mul x (Series.rsqrt (Series.shiftBy spec.Eps meanSquare))
        match spec.Weight with
        | Some w when spec.PlusOne -> normed * (1.0 + parameters.[w])
        | Some w -> normed * parameters.[w]
        | None -> normed

    /// The primitive `LayerNorm spec`: normalises each position on its own, so it keeps positions apart.
    /// Example: `layerNormRule { Weight = Some "g"; Bias = Some "b"; Eps = 1e-5 }` prints "LayerNorm(g)", reads
    /// ["g"; "b"], and maps the row (3, 1) (mean 2, variance 1) to (1, −1) ⊙ g + b, up to eps.
    let layerNormRule (spec: LayerNormSpec) : PrimitiveRule =
        {
            Print = fun () -> sprintf "LayerNorm(%s)" (defaultArg spec.Weight "—")
            Parameters = Option.toList spec.Weight @ Option.toList spec.Bias
            MixesPositions = false
            Forward = fun parameters x -> layerNorm parameters spec x
            Taylor = fun parameters x -> layerNormTaylor parameters spec x
        }

    /// "RMSNorm(w)", "RMSNorm(w, 1+w)", or "RMSNorm(—)" without a weight.
    let printRms (spec: RmsNormSpec) =
        sprintf "RMSNorm(%s%s)" (defaultArg spec.Weight "—") (if spec.PlusOne then ", 1+w" else "")

    /// The primitive `RmsNorm spec`: normalises each position on its own, so it keeps positions apart.
    /// Example: `rmsNormRule { Weight = Some "g"; Eps = 1e-6; PlusOne = true }` prints "RMSNorm(g, 1+w)", reads
    /// ["g"], and maps the row (3, 4) (root mean square √12.5) to (3, 4) / √12.5 · (1 + g).
    let rmsNormRule (spec: RmsNormSpec) : PrimitiveRule =
        {
            Print = fun () -> printRms spec
            Parameters = Option.toList spec.Weight
            MixesPositions = false
            Forward = fun parameters x -> rmsNorm parameters spec x
            Taylor = fun parameters x -> rmsNormTaylor parameters spec x
        }
