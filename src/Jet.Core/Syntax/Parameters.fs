namespace Jet.Core

open System
open System.Collections.Generic
open System.Threading

/// Named tensors of a network, and their owner: `Dispose` frees each distinct native tensor once (a tensor that tied
/// parameters share is freed once). Lookups of a missing name fail with the name and what is available; every access
/// after `Dispose` fails with an ObjectDisposedException instead of touching freed memory.
[<Sealed>]
type ParameterStore(tensors: IReadOnlyDictionary<string, Tensor>) =
    // 0 while the tensors are live, 1 once Dispose has started (Interlocked, so two Dispose calls free nothing twice).
    let mutable disposed = 0

    let live () =
        if Volatile.Read &disposed <> 0 then
            let message =
                "This network's weights were disposed (Net.Dispose, Model.Dispose or JetModel.Dispose); "
                + "load or build the model again."
            raise (ObjectDisposedException("ParameterStore", message))
        tensors

    member _.Item
        with get (name: string) =
            let tensors = live ()
            match tensors.TryGetValue name with
            | true, t -> t
            | _ ->
                let known = tensors.Keys |> Seq.sort |> Seq.truncate 12 |> String.concat ", "
                raise (
                    InvalidPlanException(
                        sprintf
                            "The network has no parameter named '%s' (it has: %s%s)."
                            name
                            known
                            (if tensors.Count > 12 then ", …" else "")
                    )
                )

    member _.TryFind(name: string) =
        match (live ()).TryGetValue name with
        | true, t -> Some t
        | _ -> None

    member _.Names = (live ()).Keys |> Seq.sort |> List.ofSeq
    member _.Count = (live ()).Count
    member _.Tensors = live ()

    /// The total number of scalars, counting tied tensors once.
    member _.ScalarCount =
        (live ()).Values |> Seq.distinctBy (fun t -> t.Handle) |> Seq.sumBy (fun t -> t.numel ())

    /// True once `Dispose` has run.
    member _.IsDisposed = Volatile.Read &disposed <> 0

    /// Frees every distinct tensor once (tied parameters share one); later calls do nothing.
    member _.Dispose() =
        if Interlocked.Exchange(&disposed, 1) = 0 then
            // A tensor its caller disposed already has no handle left to compare or free.
            for t in tensors.Values |> Seq.filter (fun t -> not t.IsInvalid) |> Seq.distinctBy (fun t -> t.Handle) do
                t.Dispose()

    interface IDisposable with
        member s.Dispose() = s.Dispose()

    /// A store that owns the given tensors: disposing it disposes them.
    static member OfSeq(pairs: seq<string * Tensor>) =
        new ParameterStore(Dictionary(dict pairs) :> IReadOnlyDictionary<_, _>)
