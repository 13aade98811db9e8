namespace Jet.Core

open TorchSharp

/// The jet engines behind one interface: Taylor coefficients c_0..c_k of f(centre + t·direction) at t = 0.
/// `Engine.Taylor` propagates all coefficients through the syntax in one pass (Taylor.fs; opaque `Custom`
/// functions inside fall back to nested JVPs); `Engine.Jvp` nests Jacobian-vector products of the forward pass.
/// Both keep the autograd graph, so results are differentiable with respect to parameters, centre and direction.
[<RequireQualifiedAccess>]
module Engines =

    /// Coefficients c_0..c_k of `fn` along centre + t·direction, stacked as [k+1, batch, seq, d_out], by the
    /// chosen engine. Shapes: centre and direction [batch, seq, d_in].
    let series
        (engine: Engine)
        (parameters: ParameterStore)
        (fn: Fn)
        (order: int)
        (centre: Tensor)
        (direction: Tensor)
        : Tensor =
        match engine with
        | Engine.Taylor -> Taylor.along parameters fn order centre direction
        | Engine.Jvp -> torch.stack (Jet.coefficientsAlong (Forward.apply parameters fn) order centre direction, 0L)

    /// Coefficients c_0..c_k of `fn` along centre + t·direction, by the chosen engine, as a list of [batch, seq, d_out].
    let coefficients
        (engine: Engine)
        (parameters: ParameterStore)
        (fn: Fn)
        (order: int)
        (centre: Tensor)
        (direction: Tensor)
        : Tensor list =
        match engine with
        | Engine.Taylor -> Taylor.along parameters fn order centre direction |> fun s -> List.ofArray (s.unbind 0L)
        | Engine.Jvp -> Jet.coefficientsAlong (Forward.apply parameters fn) order centre direction

    /// J^k fn(centre)(point), recentred (direction = point − centre). Shapes: centre and point [batch, seq, d_in].
    let jet
        (engine: Engine)
        (parameters: ParameterStore)
        (fn: Fn)
        (order: int)
        (centre: Tensor)
        (point: Tensor)
        : Tensor =
        if order = 0 then
            Forward.apply parameters fn centre
        else
            match engine with
            | Engine.Taylor -> (Taylor.along parameters fn order centre (point - centre)).sum (0L)
            | Engine.Jvp -> coefficients engine parameters fn order centre (point - centre) |> List.reduce (+)
