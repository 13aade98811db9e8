namespace Jet.Core

open TorchSharp

/// The jet engines behind one interface: Taylor coefficients c_0..c_k of f(centre + t·direction) at t = 0.
[<RequireQualifiedAccess>]
module Engines =

    /// Coefficients c_0..c_k of `fn` along centre + t·direction, by the chosen engine.
    let coefficients (engine: Engine) (parameters: ParameterStore) (fn: Fn) (order: int) (centre: Tensor) (direction: Tensor) : Tensor list =
        match engine with
        | Engine.Jvp
        | Engine.Taylor -> Jet.coefficientsAlong (Forward.apply parameters fn) order centre direction

    /// J^k fn(centre)(point), recentred (direction = point − centre).
    let jet (engine: Engine) (parameters: ParameterStore) (fn: Fn) (order: int) (centre: Tensor) (point: Tensor) : Tensor =
        if order = 0 then
            Forward.apply parameters fn centre
        else
            coefficients engine parameters fn order centre (point - centre) |> List.reduce (+)
