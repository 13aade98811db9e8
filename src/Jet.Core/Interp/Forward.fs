namespace Jet.Core

open TorchSharp
open Jet.Core.Primitives

/// Forward evaluation of the syntax: one match per node.
[<RequireQualifiedAccess>]
module Forward =
    /// f(x) for x [batch, seq, d].
    let rec apply (parameters: ParameterStore) (f: Fn) (x: Tensor) : Tensor =
        match f with
        | Linear l -> Affine.apply parameters l x
        | Act a -> Activations.apply a x
        | LayerNorm spec -> Norms.layerNorm parameters spec x
        | RmsNorm spec -> Norms.rmsNorm parameters spec x
        | Attention a -> SelfAttention.apply parameters a x
        | GatedMlp g ->
            let gate = Activations.apply g.Activation (Affine.apply parameters g.Gate x)
            Affine.apply parameters g.Down (gate * Affine.apply parameters g.Up x)
        | Sum [] -> raise (InvalidPlanException "Sum [] has no branches; give at least one function to add.")
        | Sum branches -> branches |> List.map (fun b -> apply parameters b x) |> List.reduce (+)
        | Chain steps -> steps |> List.fold (fun h step -> apply parameters step h) x
        | Scale(c, inner) -> c * apply parameters inner x
        | Custom named -> named.Apply x
