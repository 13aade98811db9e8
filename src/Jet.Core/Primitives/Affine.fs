namespace Jet.Core

/// An affine map x ↦ x Wᵀ + b. `Weight` names a parameter of shape [out, in]; `Bias` one of shape [out].
type Linear = { Weight: string; Bias: string option }

namespace Jet.Core.Primitives

open TorchSharp
open Jet.Core

/// The affine map `Linear`: forward definition, Taylor rule, printing and parameters.
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

    /// "Linear(w)" or "Linear(w, b)".
    let print (l: Linear) =
        match l.Bias with
        | Some b -> sprintf "Linear(%s, %s)" l.Weight b
        | None -> sprintf "Linear(%s)" l.Weight

    /// The weight, then the bias if any.
    let parameterNames (l: Linear) = l.Weight :: Option.toList l.Bias

    /// The primitive `Linear l`.
    /// Example: `rule { Weight = "w"; Bias = Some "b" }` prints "Linear(w, b)", reads ["w"; "b"], keeps positions
    /// apart, and maps x [batch, seq, in] to x wᵀ + b [batch, seq, out].
    let rule (l: Linear) : PrimitiveRule =
        {
            Print = fun () -> print l
            Parameters = parameterNames l
            MixesPositions = false
            Forward = fun parameters x -> apply parameters l x
            Taylor = fun parameters x -> taylor parameters l x
        }
