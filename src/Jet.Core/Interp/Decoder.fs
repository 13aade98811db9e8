namespace Jet.Core

open TorchSharp

/// The decoder, logits = U·LN_f(h) + b, in one place: the final norm LN_f, the bias-free unembedding U·x (linear,
/// so it maps every term of a decoder expansion exactly), and the bias b, added once to whatever is read as logits.
/// Everything that reads logits (traces, sessions, lenses, carvings, n-gram sweeps) goes through here.
/// Shapes: streams [..., d]; logits [..., vocab]; the bias [vocab].
[<RequireQualifiedAccess>]
module Decoder =
    /// LN_f(h): the final norm of streams [..., d], as [..., d].
    let normalize (net: Net) (h: Tensor) : Tensor = Forward.apply net.Parameters net.Spec.FinalNorm h

    /// U·x without the bias: normed-stream vectors [..., d] to logit space [..., vocab]. Linear, so it distributes
    /// over the terms of a decoder expansion exactly.
    let unembed (net: Net) (x: Tensor) : Tensor =
        torch.nn.functional.linear (x, net.Parameters.[net.Spec.Unembedding.Weight])

    /// The unembedding bias b [vocab], when the network has one.
    let bias (net: Net) : Tensor option = net.Spec.Unembedding.Bias |> Option.map (fun name -> net.Parameters.[name])

    /// x + b for bias-free logit-space values x [..., vocab] (a new tensor); x itself when there is no bias. `bias` is
    /// `Decoder.bias net`, or the `Bias` a `LogitPaths` carries.
    let addBias (bias: Tensor option) (x: Tensor) : Tensor =
        match bias with
        | Some b -> x + b
        | None -> x

    /// The logits U·x + b of normed streams x [..., d], as [..., vocab].
    let logits (net: Net) (normed: Tensor) : Tensor = addBias (bias net) (unembed net normed)

    /// The logits U·LN_f(h) + b of streams h [..., d], as [..., vocab].
    let ofStream (net: Net) (h: Tensor) : Tensor = logits net (normalize net h)

    /// The logits of B normed rows x [B, d] (already through LN_f) as rows [B, vocab], contiguous, laid out for
    /// vocabulary sweeps: the same values as `logits`, computed as (U·xᵀ)ᵀ with the bias added in place.
    let rows (net: Net) (normed: Tensor) : Tensor =
        let u = net.Parameters.[net.Spec.Unembedding.Weight]
        // U·xᵀ ([V, d]·[d, B]) runs markedly closer to the matmul peak on CPU than x·Uᵀ ([B, d]·[d, V]), and
        // the transposing copy costs far less than the difference.
        let product = u.matmul (normed.t ())
        let logits = product.t().contiguous ()
        // Freed at once rather than at the end of the batch, so a batch never holds three [B, V] buffers; the bias
        // goes in place for the same reason.
        product.Dispose()
        match bias net with
        | Some b -> logits.add_ b |> ignore
        | None -> ()
        logits

    /// The logit-space metric UᵀU [d, d] (detached): ‖U·x‖² = xᵀ(UᵀU)x, so errors in logit space can be measured
    /// without building a vocabulary-sized tensor.
    let metric (net: Net) : Tensor =
        let u = net.Parameters.[net.Spec.Unembedding.Weight].detach ()
        u.t().matmul u
