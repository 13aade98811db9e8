namespace Jet.Core

open TorchSharp

/// Upper estimates of the memory a forward pass or an expansion of a network needs, checked (`Memory.require`)
/// before anything is allocated. They are deliberately generous: their job is to refuse requests that cannot fit
/// (a 100 000-token prompt, an order-64 expansion of a long prompt through attention) at once, with the estimate and
/// the limit, instead of letting libtorch fail or the kernel kill the process after minutes.
[<RequireQualifiedAccess>]
module MemoryEstimate =

    /// Bytes per element of the compute dtype: at least 4, since float16 and bfloat16 layers compute in float32.
    let private elementBytes (net: Net) = if net.DType = torch.float64 then 8.0 else 4.0

    /// The query heads of the widest attention layer (0 when the network has none).
    let private heads (net: Net) =
        net.Spec.Layers
        |> List.choose (fun l ->
            l.Gamma
            |> Fn.tryPick (function
                | Attention a -> Some a.Heads
                | _ -> None))
        |> List.fold max 0

    /// One forward pass on a [batch, seq] batch: every stream h_0..h_L kept, each layer's activations (4d wide)
    /// and attention scores, the logits.
    [<CompiledName("Forward")>]
    let forward (net: Net) (batch: int64) (seq: int64) : float =
        let b, s, d = float batch, float seq, float net.Width
        let perToken = float (net.Depth + 2) * d + 8.0 * d + 3.0 * float net.Vocab
        elementBytes net * b * (s * perToken + 4.0 * float (heads net) * s * s)

    /// An expansion of order k around `centres` centres on a [batch, seq] batch, at a residual layer (γ's
    /// activations and, through attention, scores per pair of positions) or at the decoder (the final norm only).
    /// Coefficient recurrences keep every earlier coefficient, and Cauchy products of k+1 coefficients make
    /// (k+1)(k+2)/2 partial products, so the estimate grows with (k+1)².
    [<CompiledName("Expansion")>]
    let expansion (net: Net) (batch: int64) (seq: int64) (order: int) (centres: int) (atDecoder: bool) : float =
        let b, s, d = float batch, float seq, float net.Width
        let coefficients = float (order + 1)
        let perToken =
            if atDecoder then
                4.0 * d
            else
                8.0 * d + 4.0 * float (heads net) * s
        let products = coefficients * (coefficients + 1.0) / 2.0
        elementBytes net * float centres * b * s * (products * perToken + 2.0 * float net.Vocab)

    /// Fails with a MemoryLimitException when one forward pass on [batch, seq] tokens cannot fit.
    [<CompiledName("RequireForward")>]
    let requireForward (net: Net) (batch: int64) (seq: int64) =
        Memory.require
            (sprintf "A forward pass on %d × %d tokens" batch seq)
            (forward net batch seq)
            "Use a shorter prompt or fewer rows."

    /// Fails with a MemoryLimitException when the expansion cannot fit.
    [<CompiledName("RequireExpansion")>]
    let requireExpansion (net: Net) (batch: int64) (seq: int64) (order: int) (centres: int) (atDecoder: bool) =
        Memory.require
            (sprintf "An order-%d expansion around %d centre(s) on %d × %d tokens" order centres batch seq)
            (expansion net batch seq order centres atDecoder)
            "Lower the order, use fewer centres or streams, or a shorter prompt."
