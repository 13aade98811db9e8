namespace Jet.Core.Apps

open System
open TorchSharp
open Jet.Core

/// The buffers one vocabulary sweep reuses from batch to batch (native memory, freed by `Dispose`): the logits
/// product, laid out [vocab, batch], and, when a sweep needs rows, the same logits transposed to [batch, vocab]
/// (padded to a whole number of top-k blocks). Made by `Sweeps.workspace`; one per sweep, never shared between
/// threads or between two networks.
type SweepWorkspace internal (net: Net, batch: int64) =
    let vocab = int64 net.Vocab
    // U·xᵀ ([V, d]·[d, B]) runs at the matmul peak on CPU where x·Uᵀ runs ~25% slower, and writing into a buffer
    // that already exists saves the page faults of a fresh 100 MB allocation every batch (~8% of the product).
    // The workspace owns its buffers: they outlive the per-batch dispose scopes they may be created in.
    let product =
        torch.empty([| vocab * batch |], dtype = net.DType, device = net.Device).DetachFromDisposeScope()
    let mutable rows: Tensor option = None

    /// The network the buffers are shaped for.
    member _.Net = net
    /// The most first tokens one batch may hold.
    member _.Batch = batch
    /// Columns of the row buffer: the vocabulary rounded up to a whole number of the widest top-k block.
    member _.PaddedVocab = (vocab + 511L) / 512L * 512L

    /// The product buffer as [vocab, n] (a view; valid until the next batch writes it).
    member internal _.Columns(n: int64) = product.narrow(0L, 0L, vocab * n).view (vocab, n)

    /// The row buffer as [n, padded vocab], the padding −∞ (a view; allocated on first use).
    member internal w.Rows(n: int64) =
        let buffer =
            match rows with
            | Some r -> r
            | None ->
                let r =
                    torch.empty([| batch; w.PaddedVocab |], dtype = net.DType, device = net.Device).DetachFromDisposeScope()
                r.narrow(1L, vocab, w.PaddedVocab - vocab).fill_ (scalar Double.NegativeInfinity) |> ignore
                rows <- Some r
                r
        buffer.narrow (0L, 0L, n)

    interface IDisposable with
        member _.Dispose() =
            product.Dispose()
            rows |> Option.iter (fun r -> r.Dispose())
            rows <- None

/// The logits of one batch of first tokens, held in a workspace: `Columns` [vocab, n] (column b is the logit row of
/// first token b, bias included, the diagonal −∞ when dropped), its column maxima and, once asked for, its
/// log-sum-exp (so log P(z₂ | z₁) = logit − lse without materialising a softmax).
type SweepBatch =
    {
        Workspace: SweepWorkspace
        /// [vocab, n]: a view of the workspace, valid until the next batch.
        Columns: Tensor
        /// The first-token ids [n] (int64).
        First: Tensor
        /// The largest logit of each first token's row [n].
        Max: Tensor
        mutable LogSumExp: Tensor option
    }

    /// The number of first tokens.
    member b.Count = b.First.shape.[0]

/// The kernel of vocabulary sweeps, after the readout's normed rows x [B, d] are known: the product U·xᵀ + b into a
/// reused buffer, then per-row statistics and selections that never build a softmax: row top-k on logits (with
/// probabilities exp(logit − lse)), global top-k candidates, mass sums and full rows. `Bigrams` calls only these.
/// Rankings equal those of the log-softmax (it shifts each row by a constant); ties may come back in another order.
[<RequireQualifiedAccess>]
module Sweeps =

    /// Buffers for sweeping `net` in batches of up to `batch` first tokens: [vocab, batch] for the product, plus
    /// [batch, vocab] for rows when a sweep needs them.
    [<CompiledName("Workspace")>]
    let workspace (net: Net) (batch: int) : SweepWorkspace =
        if batch < 1 then
            raise (InvalidPlanException(sprintf "The batch size must be ≥ 1; got %d." batch))
        new SweepWorkspace(net, int64 (min batch net.Vocab))

    /// The logits of normed rows x [n, d] (after LN_f) for first tokens `first` [n] (int64, on the network's device),
    /// computed as U·xᵀ + b into the workspace; the diagonal (z₂ = z₁) set to −∞ when `dropDiagonal`.
    [<CompiledName("Batch")>]
    let batch (workspace: SweepWorkspace) (dropDiagonal: bool) (x: Tensor) (first: Tensor) : SweepBatch =
        let net = workspace.Net
        let n = first.shape.[0]
        if n < 1L || n > workspace.Batch || x.dim () <> 2L || x.shape.[0] <> n then
            raise (
                ShapeMismatchException(
                    sprintf
                        "A sweep batch takes normed rows [n, d] and n first ids with 1 ≤ n ≤ %d; got %s and %d ids."
                        workspace.Batch
                        (Tensors.describe x)
                        n
                )
            )
        let u = net.Parameters.[net.Spec.Unembedding.Weight]
        let columns = workspace.Columns n
        match Decoder.bias net with
        | Some b ->
            columns.copy_ (b.unsqueeze(1L).expand (int64 net.Vocab, n)) |> ignore
            columns.addmm_ (u, x.t (), beta = 1.0f, alpha = 1.0f) |> ignore
        | None -> columns.addmm_ (u, x.t (), beta = 0.0f, alpha = 1.0f) |> ignore
        if dropDiagonal then
            let minusInfinity =
                torch.full ([| 1L; n |], scalar Double.NegativeInfinity, dtype = columns.dtype, device = columns.device)
            columns.scatter_ (0L, first.unsqueeze 0L, minusInfinity) |> ignore
        {
            Workspace = workspace
            Columns = columns
            First = first
            Max = columns.amax [| 0L |]
            LogSumExp = None
        }

    // Rows of the product per exp-and-sum step: about 8 MB of float32, so each step's temporary stays in cache.
    let private chunkElements = 1L <<< 21

    /// log Σ_{z₂} exp(logit) of every first token [n]. Exponentials are summed a cache-sized block of rows at a
    /// time; without the max-shift when every row maximum is small enough that no exp can overflow or vanish (the
    /// shift costs a pass over the whole [vocab, n] block).
    [<CompiledName("LogSumExp")>]
    let logSumExp (b: SweepBatch) : Tensor =
        match b.LogSumExp with
        | Some lse -> lse
        | None ->
            let vocab = b.Columns.shape.[0]
            let n = b.Count
            // float32 exp overflows above ~88; 60 keeps V·e⁶⁰ finite and e⁻⁶⁰ far above the smallest normal.
            let limit =
                if b.Columns.dtype = torch.float64 then
                    600.0
                else
                    60.0
            let largest = b.Max.abs().max().to_type(torch.float64).item<float> ()
            let shift = not (largest <= limit)
            let sums = torch.zeros ([| n |], dtype = b.Columns.dtype, device = b.Columns.device)
            let step = max 1L (chunkElements / n)
            let mutable start = 0L
            while start < vocab do
                let rows = min step (vocab - start)
                use _ = torch.NewDisposeScope()
                let block = b.Columns.narrow (0L, start, rows)
                let e =
                    if shift then
                        (block - b.Max).exp_ ()
                    else
                        block.exp ()
                sums.add_ (e.sum 0L) |> ignore
                start <- start + rows
            let lse =
                if shift then
                    sums.log_().add_ b.Max
                else
                    sums.log_ ()
            b.LogSumExp <- Some lse
            lse

    /// The block width for a top-k of `k` in rows of `width`: a power of two near √(width / k), or 0 when blocks do
    /// not pay (small rows, or k so large that the k best blocks hold half the row).
    let private blockWidth (width: int64) (k: int) =
        let mutable g = 8L
        while g < 512L && g * g * int64 k < width do
            g <- g * 2L
        if width < 4096L || 2L * g * int64 k > width then 0L else g

    /// Top-k of rows [n, W] (W a multiple of `g`, contiguous in the last dimension) by blocks of g: the k blocks with
    /// the largest maxima hold every one of the row's k largest values (a block outside them has k blocks whose
    /// maxima are at least its own), so a top-k over those k·g values gives the row's top-k values.
    let private topKInBlocks (g: int64) (k: int) (rows: Tensor) =
        let n, width = rows.shape.[0], rows.shape.[1]
        let blocks = rows.view (n, width / g, g)
        let struct (_, bestBlocks) = blocks.amax([| 2L |]).topk (k, dim = 1, sorted = false)
        let gathered = blocks.gather(1L, bestBlocks.unsqueeze(2L).expand (n, int64 k, g)).view (n, int64 k * g)
        let struct (values, at) = gathered.topk (k, dim = 1)
        values, bestBlocks.gather(1L, at.div (g.ToScalar(), rounding_mode = torch.RoundingMode.floor)) * g + at.remainder (g.ToScalar())

    /// The k largest values of each row of `rows` [n, W] and their column ids, best first: `topk`, by blocks when the
    /// rows are long (several times faster than a top-k over whole rows; the same values, ties possibly in another
    /// order). `blockWidth` forces a block width (a power of two; 0 = a plain top-k), for tests and measurements.
    [<CompiledName("TopKRows")>]
    let topKRows (blockWidthOverride: int option) (k: int) (rows: Tensor) : Tensor * Tensor =
        let width = rows.shape.[1]
        if k < 1 || int64 k > width then
            raise (IndexRangeException(sprintf "k must be 1..%d for rows of %d; got %d." width width k))
        let g =
            match blockWidthOverride with
            | Some g -> int64 g
            | None -> blockWidth width k
        if g <= 0L || int64 k * g > width then
            let struct (values, ids) = rows.topk (k, dim = 1)
            values, ids
        elif width % g = 0L && rows.is_contiguous () then
            topKInBlocks g k rows
        else
            // Padding with −∞ never enters a top-k of at most `width` values unless the row holds −∞ itself.
            let padded =
                torch.full (
                    [| rows.shape.[0]; (width + g - 1L) / g * g |],
                    scalar Double.NegativeInfinity,
                    dtype = rows.dtype,
                    device = rows.device
                )
            padded.narrow(1L, 0L, width).copy_ rows |> ignore
            topKInBlocks g k padded

    /// The batch's logit rows in the workspace's row buffer, [n, padded vocab] with −∞ padding (a view, valid until
    /// the next batch): one transposing copy of the product.
    let private paddedRows (b: SweepBatch) =
        let rows = b.Workspace.Rows b.Count
        rows.narrow(1L, 0L, b.Columns.shape.[0]).copy_ (b.Columns.t ()) |> ignore
        rows

    /// The batch's logits as rows [n, vocab]: a new contiguous tensor, for callers that keep or combine rows.
    [<CompiledName("LogitRows")>]
    let logitRows (b: SweepBatch) : Tensor =
        // Not `contiguous ()`: for one first token the transposed view is already contiguous and would alias the
        // workspace.
        let rows = torch.empty ([| b.Count; b.Columns.shape.[0] |], dtype = b.Columns.dtype, device = b.Columns.device)
        rows.copy_ (b.Columns.t ())

    /// The k best next tokens of every first token of the batch: scores and ids [n, k], best first; probabilities
    /// exp(logit − lse) when `probability`, else logits.
    [<CompiledName("RowTopK")>]
    let rowTopK (probability: bool) (k: int) (b: SweepBatch) : Tensor * Tensor =
        let vocab = b.Columns.shape.[0]
        let values, ids =
            match blockWidth vocab k with
            | g when g > 0L -> topKInBlocks g k (paddedRows b)
            | _ ->
                let struct (values, ids) = b.Columns.t().topk (k, dim = 1)
                values, ids
        if probability then
            values.sub_(logSumExp(b).unsqueeze 1L).exp_ (), ids
        else
            values, ids

    /// Candidates for a global top-k: the best `perRow` scores of each first token whose best score beats
    /// `threshold` (all of them when `threshold` is None), ranked in log-probability (`probability`) or logit space,
    /// as flat scores and flat pair indices z₁·vocab + z₂; None when no row can beat the threshold.
    [<CompiledName("GlobalCandidates")>]
    let globalCandidates
        (probability: bool)
        (perRow: int)
        (threshold: Tensor option)
        (b: SweepBatch)
        : (Tensor * Tensor) option =
        let vocab = b.Columns.shape.[0]
        let best =
            if probability then
                b.Max - logSumExp b
            else
                b.Max
        let chosen = threshold |> Option.map (fun t -> best.gt(t).nonzero().squeeze 1L)
        match chosen with
        | Some r when r.shape.[0] = 0L -> None
        | _ ->
            let values, ids =
                match chosen with
                // A few rows: their columns alone, transposed.
                | Some r when r.shape.[0] * 8L <= b.Count ->
                    topKRows None perRow (b.Columns.index_select(1L, r).t().contiguous ())
                | _ ->
                    let values, ids = rowTopK false perRow b
                    match chosen with
                    | Some r -> values.index_select (0L, r), ids.index_select (0L, r)
                    | None -> values, ids
            let firsts, shift =
                match chosen with
                | Some r -> b.First.index_select (0L, r), (if probability then Some(logSumExp(b).index_select (0L, r)) else None)
                | None -> b.First, (if probability then Some(logSumExp b) else None)
            let scores =
                match shift with
                | Some lse -> values - lse.unsqueeze 1L
                | None -> values
            Some(scores.flatten (), (firsts.unsqueeze 1L * vocab + ids).flatten ())

    /// Σ_{z₂ ∈ columns} P(z₂ | z₁) for every first token of the batch [n] (float64).
    [<CompiledName("MassSums")>]
    let massSums (columns: Tensor) (b: SweepBatch) : Tensor =
        let inSet = b.Columns.index_select (0L, columns)
        inSet.sub_(logSumExp b).exp_().sum(0L).to_type torch.float64

    /// Writes the batch's rows into `destination` [n, vocab]: probabilities (a softmax, computed as
    /// exp(logit − lse)) when `probability`, else logits.
    [<CompiledName("WriteRows")>]
    let writeRows (probability: bool) (destination: Tensor) (b: SweepBatch) =
        destination.copy_ (b.Columns.t ()) |> ignore
        if probability then
            destination.sub_(logSumExp(b).unsqueeze 1L).exp_ () |> ignore
