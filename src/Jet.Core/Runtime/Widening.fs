namespace Jet.Core

open System
open System.Collections.Generic
open TorchSharp

/// How a parameter store hands weights stored in one dtype (bfloat16, float16, float32) to computations in another
/// (float32 or float64 on the CPU): which dtype, which tensors are widened once and kept, and how many bytes of the
/// others may be held widened at a time.
type Widening =
    {
        /// The dtype every parameter is handed out in.
        ComputeDType: torch.ScalarType
        /// Parameters widened on first use and kept (the embedding and unembedding, which every pass and every sweep
        /// batch reads).
        Pinned: Set<string>
        /// Widened bytes the other parameters may occupy at a time, least recently used freed first; sized to hold
        /// at least two residual layers, so the layer being computed never loses its weights mid-computation.
        BudgetBytes: int64
    }

/// Widened copies of stored weights, made just in time and reused: at most `BudgetBytes` of unpinned copies live at a
/// time (least recently used released first); a released copy's buffer is refilled in place for the next tensor of the
/// same shape instead of allocating fresh memory. Thread-safe; owns every copy (freed by Dispose).
[<Sealed>]
type internal WideningCache(widening: Widening) =
    let gate = obj ()
    // Keyed by the stored tensor's native handle, so tied parameters share one widened copy.
    let live = Dictionary<nativeint, Tensor>()
    let recent = LinkedList<nativeint>()
    let nodes = Dictionary<nativeint, LinkedListNode<nativeint>>()
    let pinned = Dictionary<nativeint, Tensor>()
    // Released buffers by shape, reused by the next miss of that shape.
    let spare = Dictionary<string, Stack<Tensor>>()
    let mutable liveBytes = 0L
    let mutable spareBytes = 0L

    let bytesOf (t: Tensor) = t.numel () * int64 (TensorExtensionMethods.ElementSize widening.ComputeDType)

    let shapeKey (t: Tensor) = Tensors.shapeText t.shape

    let release () =
        let handle = recent.First.Value
        recent.RemoveFirst()
        nodes.Remove handle |> ignore
        let buffer = live.[handle]
        live.Remove handle |> ignore
        liveBytes <- liveBytes - bytesOf buffer
        let key = shapeKey buffer
        match spare.TryGetValue key with
        | true, stack -> stack.Push buffer
        | _ -> spare.[key] <- Stack [ buffer ]
        spareBytes <- spareBytes + bytesOf buffer

    let dropSpares (need: int64) =
        // Frees released buffers until `need` fits beside the live ones.
        let keys = List.ofSeq spare.Keys
        for key in keys do
            let stack = spare.[key]
            while stack.Count > 0 && liveBytes + spareBytes + need > widening.BudgetBytes do
                let b = stack.Pop()
                spareBytes <- spareBytes - bytesOf b
                b.Dispose()
            if stack.Count = 0 then
                spare.Remove key |> ignore

    /// A fresh widened copy of `stored`, owned by the cache (outside every dispose scope).
    let widen (stored: Tensor) (reuse: Tensor option) =
        use _ = torch.no_grad ()
        match reuse with
        | Some buffer ->
            buffer.copy_ stored |> ignore
            buffer
        | None ->
            use plain = stored.detach ()
            plain.to_type(widening.ComputeDType).DetachFromDisposeScope()

    /// `stored` in the compute dtype.
    member _.Get(name: string, stored: Tensor) : Tensor =
        lock gate (fun () ->
            let handle = stored.Handle
            if widening.Pinned.Contains name then
                match pinned.TryGetValue handle with
                | true, t -> t
                | _ ->
                    let t = widen stored None
                    pinned.[handle] <- t
                    t
            else
                match pinned.TryGetValue handle with
                | true, t -> t // a tied parameter pinned under its other name
                | _ ->
                    match live.TryGetValue handle with
                    | true, t ->
                        let node = nodes.[handle]
                        recent.Remove node
                        recent.AddLast node
                        t
                    | _ ->
                        let need = bytesOf stored
                        while recent.Count > 0 && liveBytes + need > widening.BudgetBytes do
                            release ()
                        let key = Tensors.shapeText stored.shape
                        let reuse =
                            match spare.TryGetValue key with
                            | true, stack when stack.Count > 0 ->
                                let b = stack.Pop()
                                spareBytes <- spareBytes - bytesOf b
                                Some b
                            | _ ->
                                dropSpares need
                                None
                        let t = widen stored reuse
                        live.[handle] <- t
                        nodes.[handle] <- recent.AddLast handle
                        liveBytes <- liveBytes + need
                        t)

    /// Bytes of widened copies held now (pinned, live and released-for-reuse).
    member _.HeldBytes = lock gate (fun () -> liveBytes + spareBytes + (pinned.Values |> Seq.sumBy bytesOf))

    /// Frees every widened copy.
    member _.Dispose() =
        lock gate (fun () ->
            for t in Seq.concat [ live.Values :> seq<_>; pinned.Values; spare.Values |> Seq.collect id ] do
                t.Dispose()
            live.Clear()
            pinned.Clear()
            spare.Clear()
            recent.Clear()
            nodes.Clear()
            liveBytes <- 0L
            spareBytes <- 0L)
