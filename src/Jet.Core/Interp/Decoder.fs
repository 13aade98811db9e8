namespace Jet.Core

open TorchSharp
open Jet.Core.Primitives

/// The decoder, logits = U·LN_f(h) + b, in one place: the final norm LN_f, the bias-free unembedding U·x (linear,
/// so it maps every term of a decoder expansion exactly), and the bias b, added once to whatever is read as logits.
/// A network with a final logit soft-cap c (Gemma 2) reads logits as cap(z) = c·tanh(z / c) of the pre-cap logits
/// z = U·LN_f(h) + b: decoder expansions and their unembedded paths decompose z (where U is linear), and whatever
/// reads a whole logit vector applies the cap (`capLogits`); jets of the whole decoder use `map` (docs/concepts.md).
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

    /// The final logit soft-cap c, when the network has one.
    let softCap (net: Net) : float option = net.Spec.Unembedding.SoftCap

    /// c·tanh(z / c) of pre-cap logits z [..., vocab] (bias included) when `cap` is c; z itself when it is None.
    /// `cap` is `Decoder.softCap net`, or the `SoftCap` a `LogitPaths` carries.
    let capLogits (cap: float option) (z: Tensor) : Tensor =
        match cap with
        | Some c -> Activations.apply (Activation.SoftCap c) z
        | None -> z

    /// The logits U·x + b of normed streams x [..., d] (soft-capped where the network caps them), as [..., vocab].
    let logits (net: Net) (normed: Tensor) : Tensor = capLogits (softCap net) (addBias (bias net) (unembed net normed))

    /// The whole decoder h ↦ logits as a function of the stream [..., d] → [..., vocab]: LN_f ▸ U (+ b) ▸ soft-cap.
    /// Jets of it go through the soft-cap; without a cap it is linear after LN_f, and U·J^k LN_f gives the same jets.
    let map (net: Net) : Fn =
        let u = net.Spec.Unembedding
        Chain(
            [ net.Spec.FinalNorm; Linear { Weight = u.Weight; Bias = u.Bias } ]
            @ (u.SoftCap |> Option.map (fun c -> Act(Activation.SoftCap c)) |> Option.toList)
        )

    /// The logits of streams h [..., d], U·LN_f(h) + b (soft-capped where the network caps them), as [..., vocab].
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
        match softCap net with
        | Some c -> logits.div_(scalar c).tanh_().mul_ (scalar c) |> ignore
        | None -> ()
        logits

    /// The logit-space metric UᵀU [d, d] (detached): ‖U·x‖² = xᵀ(UᵀU)x, so errors in logit space can be measured
    /// without building a vocabulary-sized tensor.
    let metric (net: Net) : Tensor =
        let u = net.Parameters.[net.Spec.Unembedding.Weight].detach ()
        u.t().matmul u
