namespace Jet.Core

open TorchSharp

/// Taylor-mode jets of the syntax: all k+1 normalised Taylor coefficients (c_j = D^j f(x)[v]^j / j!, see
/// `Series`) propagate through each `Fn` node in one pass, stacked as one tensor [k+1, batch, seq, d].
/// Each primitive's rule sits beside its forward definition (`PrimitiveRule.Taylor`, Primitives/*.fs); this matches
/// the combinators.
///
/// A `Custom` function has no rule: its coefficients come from nested JVPs along the polynomial path
/// x(t) = Σ_j x_j t^j of its input series (`Jet.coefficientsAlongPath`). That gives the same numbers as the
/// nested-JVP engine at that engine's cost for that subtree only; everything around it stays in Taylor mode.
[<RequireQualifiedAccess>]
module Taylor =

    /// The nested-JVP fallback for an opaque function of a series [k+1, ...].
    let private fallback (named: NamedFn) (x: Tensor) : Tensor =
        let order = Series.order x
        let coefficients = Jet.coefficientsAlongPath named.Apply order (List.ofArray (x.unbind 0L))
        // A function that cuts the autograd graph (detach, no_grad, conversions) would give zero derivatives
        // silently; refuse instead.
        if order >= 1 && not coefficients.Head.requires_grad then
            let message =
                sprintf
                    "The custom function '%s' has no Taylor rule, and its nested-JVP fallback failed: its output does not depend differentiably on its input (no autograd graph), so its derivatives cannot be computed. Write it with differentiable TorchSharp operations (no detach, no_grad or conversions to other types), or use order 0."
                    named.Name
            raise (InvalidPlanException message)
        torch.stack (coefficients, 0L)

    /// The series of fn(x(t)) from the series x [k+1, batch, seq, d_in]; returns [k+1, batch, seq, d_out].
    let rec series (parameters: ParameterStore) (fn: Fn) (x: Tensor) : Tensor =
        match Fn.node fn with
        | FnNode.Primitive rule -> rule.Taylor parameters x
        | FnNode.Sum [] -> raise (InvalidPlanException "Sum [] has no branches; give at least one function to add.")
        | FnNode.Sum branches -> branches |> List.map (fun b -> series parameters b x) |> List.reduce (+)
        | FnNode.Chain steps -> steps |> List.fold (fun h step -> series parameters step h) x
        | FnNode.Scale(c, inner) -> c * series parameters inner x
        | FnNode.Custom named -> fallback named x

    /// The coefficients c_0..c_k of fn along centre + t·direction at t = 0, stacked as [k+1, batch, seq, d_out].
    /// Shapes: centre and direction [batch, seq, d_in], same dtype and device.
    let along (parameters: ParameterStore) (fn: Fn) (order: int) (centre: Tensor) (direction: Tensor) : Tensor =
        if order < 0 then
            raise (InvalidOrderException(sprintf "The jet order must be an integer ≥ 0; got %d." order))
        Tensors.requireFloating "The centre" centre
        Tensors.requireFloating "The direction" direction
        Tensors.requireCompatible "The centre" centre "the direction" direction
        series parameters fn (Series.line order centre direction)
