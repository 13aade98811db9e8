namespace Jet.Core

open TorchSharp

/// Forward evaluation of the syntax: each primitive evaluates by its own rule (`PrimitiveRule.Forward`); this
/// matches the combinators.
[<RequireQualifiedAccess>]
module Forward =
    /// f(x) for x [batch, seq, d].
    let rec apply (parameters: ParameterStore) (f: Fn) (x: Tensor) : Tensor =
        match Fn.node f with
        | FnNode.Primitive rule -> rule.Forward parameters x
        | FnNode.Sum [] -> raise (InvalidPlanException "Sum [] has no branches; give at least one function to add.")
        | FnNode.Sum branches -> branches |> List.map (fun b -> apply parameters b x) |> List.reduce (+)
        | FnNode.Chain steps -> steps |> List.fold (fun h step -> apply parameters step h) x
        | FnNode.Scale(c, inner) -> c * apply parameters inner x
        | FnNode.Custom named -> named.Apply x
