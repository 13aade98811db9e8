namespace Jet.Core

open System.Collections.Generic

/// Named tensors of a network. Lookups of a missing name fail with the name and what is available.
[<Sealed>]
type ParameterStore(tensors: IReadOnlyDictionary<string, Tensor>) =
    member _.Item
        with get (name: string) =
            match tensors.TryGetValue name with
            | true, t -> t
            | _ ->
                let known = tensors.Keys |> Seq.sort |> Seq.truncate 12 |> String.concat ", "
                raise (InvalidPlanException(sprintf "The network has no parameter named '%s' (it has: %s%s)." name known (if tensors.Count > 12 then ", …" else "")))

    member _.TryFind(name: string) =
        match tensors.TryGetValue name with
        | true, t -> Some t
        | _ -> None

    member _.Names = tensors.Keys |> Seq.sort |> List.ofSeq
    member _.Count = tensors.Count
    member _.Tensors = tensors

    /// The total number of scalars, counting tied tensors once.
    member _.ScalarCount =
        tensors.Values |> Seq.distinctBy (fun t -> t.Handle) |> Seq.sumBy (fun t -> t.numel ())

    static member OfSeq(pairs: seq<string * Tensor>) =
        ParameterStore(Dictionary(dict pairs) :> IReadOnlyDictionary<_, _>)
