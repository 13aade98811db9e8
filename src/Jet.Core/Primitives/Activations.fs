namespace Jet.Core

/// Pointwise activations.
[<RequireQualifiedAccess>]
type Activation =
    | Relu
    /// GELU with the exact erf.
    | Gelu
    /// GELU with the tanh approximation (GPT-2's `gelu_new`, Gemma's `gelu_pytorch_tanh`).
    | GeluTanh
    | Silu
    | Elu of alpha: float
    | Tanh
    | Sigmoid
    /// Soft-capping c·tanh(x / c) (Gemma 2's attention and final logit soft-capping): about x for |x| ≪ c, never
    /// beyond ±c.
    | SoftCap of cap: float

namespace Jet.Core.Primitives

open System
open TorchSharp
open Jet.Core

/// The pointwise activations `Act a`: forward definitions, Taylor rules, printing.
[<RequireQualifiedAccess>]
module Activations =
    let private sqrt2OverPi = Math.Sqrt(2.0 / Math.PI)

    /// GELU, tanh approximation: ½x(1 + tanh(√(2/π)(x + 0.044715x³))), as GPT-2's gelu_new.
    let geluTanh (x: Tensor) = 0.5 * x * (1.0 + torch.tanh (sqrt2OverPi * (x + 0.044715 * x * x * x)))

    /// GELU with erf: ½x(1 + erf(x/√2)).
    let gelu (x: Tensor) = 0.5 * x * (1.0 + torch.special.erf (x / Math.Sqrt 2.0))

    /// The activation applied elementwise to x [..., d].
    let apply (activation: Activation) (x: Tensor) : Tensor =
        match activation with
        | Activation.Relu -> torch.nn.functional.relu x
        | Activation.Gelu -> gelu x
        | Activation.GeluTanh -> geluTanh x
        | Activation.Silu -> x * torch.sigmoid x
        | Activation.Elu alpha -> torch.nn.functional.elu (x, alpha)
        | Activation.Tanh -> torch.tanh x
        | Activation.Sigmoid -> torch.sigmoid x
        | Activation.SoftCap cap -> cap * torch.tanh (x / cap)

    /// Taylor rule: the series of act(x(t)) from the series x [k+1, ...] (see `Series` for the convention).
    /// Smooth activations compose the series recurrences: GELU = ½(x + x·erf(x/√2)), tanh-GELU
    /// = ½(x + x·tanh(√(2/π)(x + 0.044715·x³))), SiLU = x·σ(x), with Cauchy products for every x·(…).
    /// ReLU and ELU are piecewise: each element follows the branch its x₀ selects, so away from the kink ReLU keeps
    /// x_j (x₀ > 0) or gives 0, and ELU keeps x_j or expands α(eˣ − 1). At the kink x₀ = 0 each takes the branch
    /// the forward definition takes there and keeps it at every order: ReLU gives the zero series (as nested JVPs
    /// do: autograd's subgradient at 0 is 0), ELU the series of α(eˣ − 1). For ELU autograd is not consistent at
    /// x₀ = 0 (its first derivative is α, from the exponential branch, but its second and higher are 0, from the
    /// identity branch), so there, and only there, the nested-JVP engine returns [0; α·x₁; 0; …] instead.
    /// Soft-capping scales the tanh series: c·tanh(x(t)/c).
    /// Example: tanh of the line x(t) = t is [0; 1; 0; −1/3; 0] (tanh t = t − t³/3 + …).
    let taylor (activation: Activation) (x: Tensor) : Tensor =
        let positive () = x.[0L].gt (torch.tensor (0.0, dtype = x.dtype, device = x.device))
        match activation with
        | Activation.Relu -> x * positive().to_type x.dtype
        // The scalar steps run in place on fresh Cauchy products, which no backward function saved.
        | Activation.Gelu -> (Series.mul x (Series.erf (x / Math.Sqrt 2.0))).add_(x).mul_ (scalar 0.5)
        | Activation.GeluTanh ->
            let inner =
                (Series.mul x (Series.square x)).mul_(scalar (0.044715 * sqrt2OverPi)).add_ (x, scalar sqrt2OverPi)
            (Series.mul x (Series.tanh inner)).add_(x).mul_ (scalar 0.5)
        | Activation.Silu -> Series.mul x (Series.sigmoid x)
        | Activation.Elu alpha ->
            // The exponential branch is evaluated at min(x₀, 0) so that elements taking the other branch cannot
            // overflow (an infinite unused branch would still poison the gradient with NaN).
            let negative =
                alpha * Series.shiftBy -1.0 (Series.exp (Series.shift (-(x.[0L].clamp_min (scalar 0.0))) x))
            torch.where (positive (), x, negative)
        | Activation.Tanh -> Series.tanh x
        | Activation.Sigmoid -> Series.sigmoid x
        | Activation.SoftCap cap -> Series.tanh (x / cap) * cap

    /// The printed name: "ReLU", "GELU", "GELUtanh", "SiLU", "ELU(α)", "tanh", "sigmoid", "softcap(c)".
    let print (activation: Activation) =
        match activation with
        | Activation.Relu -> "ReLU"
        | Activation.Gelu -> "GELU"
        | Activation.GeluTanh -> "GELUtanh"
        | Activation.Silu -> "SiLU"
        | Activation.Elu alpha -> sprintf "ELU(%g)" alpha
        | Activation.Tanh -> "tanh"
        | Activation.Sigmoid -> "sigmoid"
        | Activation.SoftCap cap -> sprintf "softcap(%g)" cap

    /// The primitive `Act a`: elementwise, so it has no parameters and keeps positions apart.
    /// Example: `rule Activation.Tanh` prints "tanh", maps x to tanh x, and the line x(t) = t to [0; 1; 0; −1/3; …].
    let rule (activation: Activation) : PrimitiveRule =
        {
            Print = fun () -> print activation
            Parameters = []
            MixesPositions = false
            Forward = fun _ x -> apply activation x
            Taylor = fun _ x -> taylor activation x
        }
