namespace Jet.Core

open System
open System.Collections.Generic
open TorchSharp

/// How a parameter store hands weights stored in one dtype (bfloat16, float16, float32) to computations in another
/// (float32 or float64 on the CPU): which dtype, which tensors are widened once and kept, and how many widened copies
/// of each shape the others may occupy at a time.
type Widening =
    {
        /// The dtype every parameter is handed out in.
        ComputeDType: torch.ScalarType
        /// Parameters widened on first use and kept (the unembedding, which every pass and every sweep batch reads in
        /// full; the token embedding is read by rows, ParameterStore.Rows, and widened by rows).
        Pinned: Set<string>
        /// For each parameter shape (as Tensors.shapeText prints it), how many widened copies of that shape may live
        /// at a time; sized so that any two consecutive residual layers fit, so the layer being computed never loses
        /// its weights mid-computation. A shape not listed gets two.
        Slots: Map<string, int>
    }

/// Widened copies of stored weights, made just in time and reused: each shape has a fixed number of buffers (its
/// slots); a miss beyond them refills the least recently used buffer of that shape in place (or, while gradients are
/// recorded, replaces it with a fresh one), so a steady stream of layers allocates nothing and faults no fresh pages
/// after the first pass. Thread-safe; owns every copy (freed by Dispose).
[<Sealed>]
type internal WideningCache(widening: Widening) =
    let gate = obj ()
    // Keyed by the stored tensor's native handle, so tied parameters share one widened copy.
    let live = Dictionary<nativeint, Tensor>()
    // The handles of each shape's live copies, least recently used first.
    let recent = Dictionary<string, LinkedList<nativeint>>()
    let nodes = Dictionary<nativeint, LinkedListNode<nativeint>>()
    let pinned = Dictionary<nativeint, Tensor>()

    let bytesOf (t: Tensor) = t.numel () * int64 (TensorExtensionMethods.ElementSize widening.ComputeDType)

    let slotsOf (shape: string) =
        match widening.Slots.TryFind shape with
        | Some n -> max 1 n
        | None -> 2

    /// `stored` widened into `buffer`, or into a fresh copy owned by the cache (outside every dispose scope).
    let widen (stored: Tensor) (buffer: Tensor option) =
        use _ = torch.no_grad ()
        match buffer with
        | Some b ->
            b.copy_ stored |> ignore
            b
        | None ->
            use plain = stored.detach ()
            plain.to_type(widening.ComputeDType).DetachFromDisposeScope()

    /// `stored` in the compute dtype.
    member _.Get(name: string, stored: Tensor) : Tensor =
        lock gate (fun () ->
            let handle = stored.Handle
            match pinned.TryGetValue handle with
            | true, t -> t // pinned, perhaps under a tied parameter's other name
            | _ when widening.Pinned.Contains name ->
                let t = widen stored None
                pinned.[handle] <- t
                t
            | _ ->
                match live.TryGetValue handle with
                | true, t ->
                    let node = nodes.[handle]
                    let order = node.List
                    order.Remove node
                    order.AddLast node
                    t
                | _ ->
                    let shape = Tensors.shapeText stored.shape
                    let order =
                        match recent.TryGetValue shape with
                        | true, order -> order
                        | _ ->
                            let order = LinkedList<nativeint>()
                            recent.[shape] <- order
                            order
                    let reuse =
                        if order.Count < slotsOf shape then
                            None
                        else
                            let oldest = order.First.Value
                            order.RemoveFirst()
                            nodes.Remove oldest |> ignore
                            let buffer = live.[oldest]
                            live.Remove oldest |> ignore
                            // While gradients are recorded (nested JVPs), autograd may have saved the buffer for a
                            // derivative still to come: refilling it would corrupt that derivative (libtorch aborts
                            // the process). Release this handle (the graph keeps its own reference) and widen into
                            // fresh memory instead.
                            if torch.is_grad_enabled () then
                                buffer.Dispose()
                                None
                            else
                                Some buffer
                    let t = widen stored reuse
                    live.[handle] <- t
                    nodes.[handle] <- order.AddLast handle
                    t)

    /// The widened copy of `stored` held now (pinned or live), without widening anything.
    member _.TryHeld(stored: Tensor) : Tensor option =
        lock gate (fun () ->
            match pinned.TryGetValue stored.Handle with
            | true, t -> Some t
            | _ ->
                match live.TryGetValue stored.Handle with
                | true, t -> Some t
                | _ -> None)

    /// Bytes of widened copies held now (pinned and live).
    member _.HeldBytes = lock gate (fun () -> Seq.append live.Values pinned.Values |> Seq.sumBy bytesOf)

    /// Frees every widened copy.
    member _.Dispose() =
        lock gate (fun () ->
            for t in Seq.append live.Values pinned.Values do
                t.Dispose()
            live.Clear()
            pinned.Clear()
            recent.Clear()
            nodes.Clear())
