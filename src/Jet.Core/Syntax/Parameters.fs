namespace Jet.Core

open System
open System.Collections.Generic
open System.Threading
open TorchSharp

/// Named tensors of a network, and their owner: `Dispose` frees each distinct native tensor once (a tensor that tied
/// parameters share is freed once). Lookups of a missing name fail with the name and what is available; every access
/// after `Dispose` fails with an ObjectDisposedException instead of touching freed memory.
/// With a `Widening`, the tensors stay in their stored dtype and every lookup hands out the parameter in the compute
/// dtype, widened just in time (the one place where storage and compute dtypes meet: every interpreter, lens, sweep
/// and readout reads weights through `Item`).
[<Sealed>]
type ParameterStore(tensors: IReadOnlyDictionary<string, Tensor>, widening: Widening option) =
    // 0 while the tensors are live, 1 once Dispose has started (Interlocked, so two Dispose calls free nothing twice).
    let mutable disposed = 0
    let cache = widening |> Option.map (fun w -> new WideningCache(w))

    // The cache and compute dtype a stored tensor is widened with, when it is stored narrower.
    let widenerOf (t: Tensor) =
        match cache, widening with
        | Some c, Some w when t.dtype <> w.ComputeDType -> Some(c, w.ComputeDType)
        | _ -> None

    let computed (name: string) (t: Tensor) =
        match widenerOf t with
        | Some(c, _) -> c.Get(name, t)
        | None -> t

    let live () =
        if Volatile.Read &disposed <> 0 then
            let message =
                "This network's weights were disposed (Net.Dispose, Model.Dispose or JetModel.Dispose); "
                + "load or build the model again."
            raise (ObjectDisposedException("ParameterStore", message))
        tensors

    /// The parameter in the compute dtype (widened just in time when stored narrower); fails naming what exists.
    member s.Item
        with get (name: string) = computed name (s.Stored name)

    /// Rows `indices` (int64, any shape) of a matrix parameter in the compute dtype: [indices…, columns]. Only the
    /// rows are widened (the token embedding of a 7B model is 0.5 GB in float32), unless a widened copy of the whole
    /// parameter is held anyway (an embedding tied to the unembedding).
    member s.Rows(name: string, indices: Tensor) : Tensor =
        let stored = s.Stored name
        let flat = indices.flatten ()
        let rows =
            match widenerOf stored with
            | Some(c, compute) ->
                match c.TryHeld stored with
                | Some held -> held.index_select (0L, flat)
                | None ->
                    use narrow = stored.index_select (0L, flat)
                    narrow.to_type compute
            | None -> stored.index_select (0L, flat)
        if indices.dim () = 1L then
            rows
        else
            use _ = rows
            rows.unflatten (0L, indices.shape)

    /// The parameter as stored (never widened): for shapes, checks and conversions.
    member _.Stored(name: string) : Tensor =
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

    /// The parameter in the compute dtype, if the store has it.
    member _.TryFind(name: string) =
        match (live ()).TryGetValue name with
        | true, t -> Some(computed name t)
        | _ -> None

    /// A store owning `tensors`, each handed out as stored.
    new(tensors: IReadOnlyDictionary<string, Tensor>) = new ParameterStore(tensors, None)

    member _.Names = (live ()).Keys |> Seq.sort |> List.ofSeq
    member _.Count = (live ()).Count
    /// The tensors as stored (not widened): for conversions, checks and byte counts.
    member _.Tensors = live ()

    /// How lookups widen stored tensors (None: handed out as stored).
    member _.Widening = widening

    /// The dtype lookups hand out: the widening's compute dtype, else that of the tensors as stored (None when the
    /// store is empty).
    member _.ComputeDType =
        match widening with
        | Some w -> Some w.ComputeDType
        | None -> (live ()).Values |> Seq.tryHead |> Option.map (fun t -> t.dtype)

    /// Bytes of the tensors as stored, counting tied tensors once.
    member _.StoredBytes =
        (live ()).Values
        |> Seq.distinctBy (fun t -> t.Handle)
        |> Seq.sumBy (fun t -> t.numel () * int64 (TensorExtensionMethods.ElementSize t.dtype))

    /// Bytes of widened copies held now (0 without a widening).
    member _.WidenedBytes = cache |> Option.map (fun c -> c.HeldBytes) |> Option.defaultValue 0L

    /// The total number of scalars, counting tied tensors once.
    member _.ScalarCount =
        (live ()).Values |> Seq.distinctBy (fun t -> t.Handle) |> Seq.sumBy (fun t -> t.numel ())

    /// True when some parameter records gradients (requires_grad): only then can a pass from token ids build an
    /// autograd graph.
    member _.RequireGrad = (live ()).Values |> Seq.exists (fun t -> t.requires_grad)

    /// True once `Dispose` has run.
    member _.IsDisposed = Volatile.Read &disposed <> 0

    /// Frees every distinct tensor once (tied parameters share one); later calls do nothing.
    member _.Dispose() =
        if Interlocked.Exchange(&disposed, 1) = 0 then
            cache |> Option.iter (fun c -> c.Dispose())
            // A tensor its caller disposed already has no handle left to compare or free.
            for t in tensors.Values |> Seq.filter (fun t -> not t.IsInvalid) |> Seq.distinctBy (fun t -> t.Handle) do
                t.Dispose()

    interface IDisposable with
        member s.Dispose() = s.Dispose()

    /// A store that owns the given tensors: disposing it disposes them.
    static member OfSeq(pairs: seq<string * Tensor>) =
        new ParameterStore(Dictionary(dict pairs) :> IReadOnlyDictionary<_, _>)

    /// A store that owns the given tensors and hands them out widened as `widening` says.
    static member OfSeq(pairs: seq<string * Tensor>, widening: Widening option) =
        new ParameterStore(Dictionary(dict pairs) :> IReadOnlyDictionary<_, _>, widening)
