namespace Jet.Core.Apps

open TorchSharp
open Jet.Core

/// Greedy decoding: append the most likely next token, then predict again.
[<RequireQualifiedAccess>]
module Generate =
    /// The logits [vocab] after the last position of one sequence `ids` [1, seq]: the whole forward pass, but only
    /// the last row is normed and unembedded, and no stream is kept.
    let private lastLogits (net: Net) (ids: Tensor) =
        use _ = torch.no_grad ()
        use scope = torch.NewDisposeScope()
        let h0 = Trace.encode net (Trace.embed net ids)
        let h = net.Spec.Layers |> List.fold (fun h layer -> h + Forward.apply net.Parameters layer.Gamma h) h0
        let last = h.narrow (1L, h.shape.[1] - 1L, 1L)
        let logits = Decoder.logits net (Decoder.normalize net last)
        logits.reshape(-1L).MoveToOuterDisposeScope()

    /// The `count` token ids greedy decoding appends to the prompt `tokens` ([seq] or [1, seq] ids, seq ≥ 1): at
    /// each step one forward pass over the whole sequence so far (no key/value cache: each step costs a full
    /// pass, fine for short continuations), then the argmax of the last position's logits (the lowest id on a
    /// tie). Every step runs in the network's dtype. Fails before any work when the prompt plus `count` tokens
    /// exceed the network's positions, or when `tokens` is not one sequence of valid ids.
    [<CompiledName("Greedy")>]
    let greedy (net: Net) (tokens: Tensor) (count: int) : int[] =
        Native.ensure ()
        if count < 0 then
            raise (IndexRangeException(sprintf "Asked for %d new tokens; give a count of 0 or more." count))
        if not (isNull (box tokens)) && tokens.dim () = 2L && tokens.shape.[0] <> 1L then
            raise (
                ShapeMismatchException(
                    sprintf
                        "Greedy decoding continues one sequence; the prompt has %d rows ([1, seq] or [seq] expected)."
                        tokens.shape.[0]
                )
            )
        use outer = torch.NewDisposeScope()
        let ids = (Net.checkTokens tokens net).reshape (1L, -1L)
        let promptLength = ids.shape.[1]
        match net.Spec.MaxPositions with
        | Some most when promptLength + int64 count > int64 most ->
            raise (
                IndexRangeException(
                    sprintf
                        "The prompt's %d tokens plus %d new ones exceed the network's %d positions; ask for at most %d new tokens."
                        promptLength
                        count
                        most
                        (max 0L (int64 most - promptLength))
                )
            )
        | _ -> ()
        MemoryEstimate.requireForward net 1L (promptLength + int64 count)
        let generated = Array.zeroCreate<int> count
        let mutable sequence = ids
        for step in 0 .. count - 1 do
            use scope = torch.NewDisposeScope()
            let next = (lastLogits net sequence).argmax().item<int64> ()
            generated.[step] <- int next
            let appended = torch.tensor([| next |], dtype = torch.int64).reshape (1L, 1L)
            let longer = torch.cat ([| sequence; appended |], 1L)
            // The previous sequence belongs to the outer scope; free it now rather than at the end.
            sequence.Dispose()
            sequence <- longer.MoveToOuterDisposeScope()
        generated
