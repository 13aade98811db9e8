namespace Jet.Core.Apps

open TorchSharp
open Jet.Core
open Jet.Core.Models

/// How close approximate logits are to the model's, per position. Cosine alone is near 1 even when the top
/// tokens differ (raw logits share a large common direction), so the distribution and ranking measures sit beside it.
/// Every tensor is [batch, seq].
type LogitAgreement =
    {
        /// cos(approx, true) of the raw logit vectors.
        Cosine: Tensor
        /// KL(softmax(true) ‖ softmax(approx)) in nats.
        Kl: Tensor
        /// 1 where the top-1 tokens agree, else 0.
        Top1: Tensor
        /// |top-k(approx) ∩ top-k(true)| / k.
        TopKOverlap: Tensor
        /// The k of `TopKOverlap`.
        K: int
    }

    /// Moves every tensor to the enclosing dispose scope (or out of all scopes) and returns the record.
    member a.MoveToOuterDisposeScope() =
        for t in [ a.Cosine; a.Kl; a.Top1; a.TopKOverlap ] do
            t.MoveToOuterDisposeScope() |> ignore
        a

    /// Frees the tensors.
    member a.Dispose() =
        for t in [ a.Cosine; a.Kl; a.Top1; a.TopKOverlap ] do
            t.Dispose()

/// One ranked token: its id, its readable piece and its score.
type RankedToken = { Id: int; Token: string; Score: float }

/// Comparisons of logit tensors and the top tokens of a logit vector.
[<RequireQualifiedAccess>]
module LogitMetrics =

    /// Cosine, KL(true‖approx), top-1 agreement and top-k overlap of approx against true logits [batch, seq, vocab].
    [<CompiledName("Compare")>]
    let compare (k: int) (approx: Tensor) (truth: Tensor) : LogitAgreement =
        Tensors.requireCompatible "The approximate logits" approx "the true logits" truth
        let vocab = int truth.shape.[truth.shape.Length - 1]
        if k < 1 || k > vocab then
            raise (
                IndexRangeException(
                    sprintf "The top-k overlap needs 1 ≤ k ≤ %d (the vocabulary size); got k = %d." vocab k
                )
            )
        use scope = torch.NewDisposeScope()
        let a, t = approx.detach (), truth.detach ()
        let cosine = torch.nn.functional.cosine_similarity(a, t, dim = -1L).clamp (scalar -1.0, scalar 1.0)
        let logP, logQ = t.log_softmax -1L, a.log_softmax -1L
        let kl = (logP.exp () * (logP - logQ)).sum(-1L).clamp_min (scalar 0.0)
        let top1 = a.argmax(-1L).eq(t.argmax -1L).to_type t.dtype
        let struct (_, topA) = a.topk (k, dim = -1)
        let struct (_, topT) = t.topk (k, dim = -1)
        let shared = topA.unsqueeze(-1).eq(topT.unsqueeze -2).any(-1L).sum(-1L).to_type t.dtype
        let overlap = shared / float k
        {
            Cosine = cosine.MoveToOuterDisposeScope()
            Kl = kl.MoveToOuterDisposeScope()
            Top1 = top1.MoveToOuterDisposeScope()
            TopKOverlap = overlap.MoveToOuterDisposeScope()
            K = k
        }

    /// The readable piece of a token id, or "<id N>" for ids the tokenizer does not know (padded vocabularies).
    /// Control and format characters are escaped visibly (`Printable.escape`) whatever the tokenizer returns, so no
    /// table writes a raw NUL, BEL or ESC to a terminal.
    [<CompiledName("Piece")>]
    let piece (tokenizer: ITokenizer) (id: int) =
        if id >= 0 && id < tokenizer.VocabSize then
            // A table must render whatever a tokenizer does with an id it cannot print.
            try
                Printable.escape (tokenizer.Piece id)
            with _ ->
                sprintf "<id %d>" id
        else
            sprintf "<id %d>" id

    /// The n best tokens at every position of logits [seq, vocab], best first: result.[position].[rank].
    [<CompiledName("Top")>]
    let top (tokenizer: ITokenizer) (n: int) (logits: Tensor) : RankedToken[][] =
        if logits.dim () <> 2L then
            raise (
                ShapeMismatchException(
                    sprintf "Top tokens need logits of shape [seq, vocab]; got %s." (Tensors.describe logits)
                )
            )
        let vocab = int logits.shape.[1]
        if n < 1 || n > vocab then
            raise (
                IndexRangeException(
                    sprintf "The number of top tokens must be 1..%d (the vocabulary size); got %d." vocab n
                )
            )
        use scope = torch.NewDisposeScope()
        let struct (best, bestIds) = logits.detach().to_type(torch.float64).cpu().topk (n, dim = -1)
        let values = best.data<float>().ToArray()
        let ids = bestIds.data<int64>().ToArray()
        Array.init (int logits.shape.[0]) (fun p ->
            Array.init n (fun r ->
                let id = int ids.[p * n + r]
                { Id = id; Token = piece tokenizer id; Score = values.[p * n + r] }))

    /// The values of a [batch, seq] metric at batch row `row`, as floats.
    [<CompiledName("Row")>]
    let row (metric: Tensor) (row: int) : float[] =
        use scope = torch.NewDisposeScope()
        metric.[int64 row].detach().to_type(torch.float64).cpu().data<float>().ToArray()
