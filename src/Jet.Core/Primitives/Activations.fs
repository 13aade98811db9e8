namespace Jet.Core.Primitives

open System
open TorchSharp
open Jet.Core

/// Forward definitions of the pointwise activations.
[<RequireQualifiedAccess>]
module Activations =
    let private sqrt2OverPi = Math.Sqrt(2.0 / Math.PI)

    /// GELU, tanh approximation: ½x(1 + tanh(√(2/π)(x + 0.044715x³))), as GPT-2's gelu_new.
    let geluTanh (x: Tensor) =
        0.5 * x * (1.0 + torch.tanh (sqrt2OverPi * (x + 0.044715 * x * x * x)))

    /// GELU with erf: ½x(1 + erf(x/√2)).
    let gelu (x: Tensor) = 0.5 * x * (1.0 + torch.special.erf (x / Math.Sqrt 2.0))

    let apply (activation: Activation) (x: Tensor) : Tensor =
        match activation with
        | Activation.Relu -> torch.nn.functional.relu x
        | Activation.Gelu -> gelu x
        | Activation.GeluTanh -> geluTanh x
        | Activation.Silu -> x * torch.sigmoid x
        | Activation.Elu alpha -> torch.nn.functional.elu (x, alpha)
        | Activation.Tanh -> torch.tanh x
        | Activation.Sigmoid -> torch.sigmoid x
