namespace Jet.Core

open System
open System.Threading
open TorchSharp

/// Everything one forward pass of a network computes for a token batch: the embedding, every residual
/// stream h_0..h_L, every update γ_l(h_{l−1}) and the normed final stream LN_f(h_L).
/// Shapes: tokens [batch, seq]; streams [batch, seq, d].
[<Sealed>]
type Trace(net: Net, tokens: Tensor, embedding: Tensor, streams: Tensor[], gammas: Tensor[], normed: Tensor) =
    member _.Net = net
    member _.Tokens = tokens
    /// The scaled token embedding, without positions.
    member _.Embedding = embedding
    /// h_l for l = 0..L.
    member _.Stream(l: int) =
        Net.checkStream l net
        streams.[l]
    /// γ_l(h_{l−1}) for l = 1..L (exactly the value added to the stream).
    member _.Gamma(l: int) =
        Net.checkLayer l net
        gammas.[l - 1]
    /// LN_f(h_L).
    member _.Normed = normed
    member _.Depth = net.Depth

    interface IDisposable with
        member _.Dispose() =
            for t in Seq.concat [ [| tokens; embedding; normed |]; streams; gammas ] do
                t.Dispose()

/// Running networks forward.
[<RequireQualifiedAccess>]
module Trace =
    let mutable private passes = 0L

    /// How many full forward passes have run in this process (tests use it to prove caching).
    let forwardPasses () = Interlocked.Read &passes

    /// The scaled token embedding of a validated token batch.
    let embed (net: Net) (tokens: Tensor) =
        let spec = net.Spec.Encoder
        let e = net.Parameters.Rows(spec.TokenEmbedding, tokens)
        match spec.Scale with
        | Some s -> e * s
        | None -> e

    /// h₀ from the scaled embedding: adds absolute positions where the network has them.
    let encode (net: Net) (embedding: Tensor) =
        match net.Spec.Encoder.Positions with
        | Some p ->
            let seq = embedding.shape.[1]
            embedding + net.Parameters.[p].narrow(0L, 0L, seq).unsqueeze 0
        | None -> embedding.alias ()

    /// One forward pass. `tokens` is [batch, seq] or [seq] of ids in 0..vocab−1.
    let run (net: Net) (tokens: Tensor) : Trace =
        Native.ensure ()
        use scope = torch.NewDisposeScope()
        // Token ids carry no gradient, so unless a parameter does, the pass records no graph: run it without, which
        // also lets widened weights be refilled in place (WideningCache).
        let gradients: IDisposable =
            if net.Parameters.RequireGrad then
                null
            else
                torch.no_grad ()
        use _ = gradients
        // An alias owned by the trace: disposing the trace never disposes the caller's tensor.
        // Before the ids are validated: checking a billion ids takes longer than refusing them.
        if not (isNull (box tokens)) && (tokens.dim () = 1L || tokens.dim () = 2L) then
            let shape = tokens.shape
            MemoryEstimate.requireForward net (if shape.Length = 2 then shape.[0] else 1L) (Array.last shape)
        let tokens = (Net.checkTokens tokens net).alias ()
        Interlocked.Increment &passes |> ignore
        let embedding = embed net tokens
        let streams: Tensor[] = Array.zeroCreate (net.Depth + 1)
        let gammas: Tensor[] = Array.zeroCreate net.Depth
        streams.[0] <- encode net embedding
        net.Spec.Layers
        |> List.iteri (fun i layer ->
            let update = Forward.apply net.Parameters layer.Gamma streams.[i]
            gammas.[i] <- update
            streams.[i + 1] <- streams.[i] + update)
        let normed = Decoder.normalize net streams.[net.Depth]
        for t in Seq.concat [ [| tokens; embedding; normed |]; streams; gammas ] do
            t.MoveToOuterDisposeScope() |> ignore
        new Trace(net, tokens, embedding, streams, gammas, normed)

    /// The model's logits [batch, seq, vocab] for a trace (bias included).
    let logits (trace: Trace) = Decoder.logits trace.Net trace.Normed
