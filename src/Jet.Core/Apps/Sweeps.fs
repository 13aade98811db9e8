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
                    torch
                        .empty([| batch; w.PaddedVocab |], dtype = net.DType, device = net.Device)
                        .DetachFromDisposeScope()
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
/// first token b, bias included, the diagonal −∞ when dropped) and its column maxima. The first probability-space
/// question exponentiates `Columns` in place (see `Sweeps.exponentiate`): from then on they hold exp(logit − shift)
/// and `Sums` their column sums, so P(z₂ | z₁) = e / Σe without a softmax ever being built.
type SweepBatch =
    {
        Workspace: SweepWorkspace
        /// [vocab, n]: a view of the workspace, valid until the next batch.
        Columns: Tensor
        /// The first-token ids [n] (int64).
        First: Tensor
        /// The largest logit of each first token's row [n].
        Max: Tensor
        /// Whether the diagonal z₂ = z₁ is left out (−∞ in logits, 0 in exponentials).
        DropDiagonal: bool
        /// After `Sweeps.exponentiate`: Σ_{z₂} exp(logit − shift) [n], and log Σ_{z₂} exp(logit) [n].
        mutable Sums: (Tensor * Tensor) option
    }

    /// The number of first tokens.
    member b.Count = b.First.shape.[0]

/// The kernel of vocabulary sweeps, after the readout's normed rows x [B, d] are known: the product U·xᵀ + b into a
/// reused buffer, then per-row statistics and selections that never build a softmax: row top-k, global top-k
/// candidates, mass sums and full rows, in logit space, or in probability space from exponentials taken in place
/// (P = e / Σe). `Bigrams` calls only these. Rankings equal those of the log-softmax (it shifts each row by a
/// constant, exp is monotone); ties may come back in another order. Per batch: ask logit-space questions (and
/// `logitRows`) first; the first probability-space one exponentiates the batch.
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
        // A final logit soft-cap (Gemma 2) is part of the logits every row reads, as in `Decoder.logits`.
        match Decoder.softCap net with
        | Some c -> columns.div_(scalar c).tanh_().mul_ (scalar c) |> ignore
        | None -> ()
        if dropDiagonal then
            let minusInfinity =
                torch.full ([| 1L; n |], scalar Double.NegativeInfinity, dtype = columns.dtype, device = columns.device)
            columns.scatter_ (0L, first.unsqueeze 0L, minusInfinity) |> ignore
        {
            Workspace = workspace
            Columns = columns
            First = first
            Max = columns.amax [| 0L |]
            DropDiagonal = dropDiagonal
            Sums = None
        }

    /// Turns the batch's logits into exponentials in place, once: `Columns` become exp(logit − shift), where the
    /// shift is 0 when every row maximum is small enough that no exp can overflow or vanish, else the row maximum
    /// (an extra pass); in float32, values too small to count are raised to a floor first (see below). Two passes over [vocab, n] in all (exp, then the column sums), where a softmax or log-softmax
    /// takes several and writes a second buffer; exp is monotone, so rankings are unchanged. Returns Σe [n].
    [<CompiledName("Exponentiate")>]
    let exponentiate (b: SweepBatch) : Tensor =
        match b.Sums with
        | Some(sums, _) -> sums
        | None ->
            let range (t: Tensor) = t.to_type(torch.float64).item<float> ()
            let low, high = range (b.Max.min ()), range (b.Max.max ())
            // float32 exp overflows above ~88 and turns subnormal below −87, where it and every sum over it run
            // many times slower. Terms below the row maximum − 28 add under V·e⁻²⁸ ≈ 3e-8 of a row's sum (less than
            // float32's precision), so they are raised to that floor (at most e⁻⁸⁷) instead of being left subnormal.
            let shift =
                if b.Columns.dtype = torch.float64 then
                    not (high <= 600.0 && low >= -600.0)
                else
                    not (high <= 60.0 && low >= -59.0)
            if shift then
                b.Columns.sub_ b.Max |> ignore
            if b.Columns.dtype = torch.float32 then
                let floor = if shift then -60.0 else max (low - 60.0) -87.0
                b.Columns.clamp_min_ (scalar floor) |> ignore
            let exponentials = b.Columns.exp_ ()
            if b.DropDiagonal then
                // The floor lifted the −∞ diagonal; it is zero again.
                let zeros = torch.zeros ([| 1L; b.Count |], dtype = b.Columns.dtype, device = b.Columns.device)
                exponentials.scatter_ (0L, b.First.unsqueeze 0L, zeros) |> ignore
            let sums = exponentials.sum 0L
            let lse = if shift then sums.log().add_ b.Max else sums.log ()
            b.Sums <- Some(sums, lse)
            sums

    /// log Σ_{z₂} exp(logit) of every first token [n] (exponentiates the batch, see `exponentiate`).
    [<CompiledName("LogSumExp")>]
    let logSumExp (b: SweepBatch) : Tensor =
        exponentiate b |> ignore
        snd b.Sums.Value

    let private exponentiated (b: SweepBatch) = b.Sums.IsSome

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
        values,
        bestBlocks.gather (1L, at.div (g.ToScalar(), rounding_mode = torch.RoundingMode.floor)) * g
        + at.remainder (g.ToScalar())

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

    /// The batch's logits as rows [n, vocab]: a new contiguous tensor, for callers that keep or combine rows. Read
    /// them before any probability-space call on the same batch (those exponentiate it in place).
    [<CompiledName("LogitRows")>]
    let logitRows (b: SweepBatch) : Tensor =
        if exponentiated b then
            raise (
                InvalidPlanException
                    "This sweep batch already holds probabilities (exponentiated in place); read its logit rows first."
            )
        // Not `contiguous ()`: for one first token the transposed view is already contiguous and would alias the
        // workspace.
        let rows =
            torch.empty ([| b.Count; b.Columns.shape.[0] |], dtype = b.Columns.dtype, device = b.Columns.device)
        rows.copy_ (b.Columns.t ())

    let private checkLogits (b: SweepBatch) =
        if exponentiated b then
            raise (
                InvalidPlanException
                    "This sweep batch already holds probabilities (exponentiated in place); ask logit-space questions first."
            )

    /// The k best next tokens of every first token of the batch: scores and ids [n, k], best first; probabilities
    /// (exponentials over their row sum) when `probability`, else logits.
    [<CompiledName("RowTopK")>]
    let rowTopK (probability: bool) (k: int) (b: SweepBatch) : Tensor * Tensor =
        let sums =
            if probability then
                Some(exponentiate b)
            else
                checkLogits b
                None
        let vocab = b.Columns.shape.[0]
        let values, ids =
            match blockWidth vocab k with
            // The rows' −∞ padding stays below every exponential (≥ 0) too.
            | g when g > 0L -> topKInBlocks g k (paddedRows b)
            | _ ->
                let struct (values, ids) = b.Columns.t().topk (k, dim = 1)
                values, ids
        match sums with
        | Some s -> values.div_ (s.unsqueeze 1L), ids
        | None -> values, ids

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
                checkLogits b
                b.Max
        let chosen = threshold |> Option.map (fun t -> best.gt(t).nonzero().squeeze 1L)
        match chosen with
        | Some r when r.shape.[0] = 0L -> None
        | _ ->
            // Top-k of the columns as they are (logits, or exponentials: the same order), as rows [rows, perRow].
            let values, ids =
                match chosen with
                // A few rows: their columns alone, transposed.
                | Some r when r.shape.[0] * 8L <= b.Count ->
                    topKRows None perRow (b.Columns.index_select(1L, r).t().contiguous ())
                | _ ->
                    let vocab = b.Columns.shape.[0]
                    let values, ids =
                        match blockWidth vocab perRow with
                        | g when g > 0L -> topKInBlocks g perRow (paddedRows b)
                        | _ ->
                            let struct (values, ids) = b.Columns.t().topk (perRow, dim = 1)
                            values, ids
                    match chosen with
                    | Some r -> values.index_select (0L, r), ids.index_select (0L, r)
                    | None -> values, ids
            let select (t: Tensor) =
                match chosen with
                | Some r -> t.index_select (0L, r)
                | None -> t
            let scores =
                if probability then
                    // log(e) − log Σe = logit − lse.
                    let sums = exponentiate b
                    values.log_().sub_ ((select sums).log().unsqueeze 1L)
                else
                    values
            Some(scores.flatten (), (select(b.First).unsqueeze 1L * vocab + ids).flatten ())

    /// Σ_{z₂ ∈ columns} P(z₂ | z₁) for every first token of the batch [n] (float64).
    [<CompiledName("MassSums")>]
    let massSums (columns: Tensor) (b: SweepBatch) : Tensor =
        let sums = exponentiate b
        b.Columns.index_select(0L, columns).sum(0L).div_(sums).to_type torch.float64

    /// Writes the batch's rows into `destination` [n, vocab]: probabilities (exponentials over their row sum, a
    /// softmax) when `probability`, else logits.
    [<CompiledName("WriteRows")>]
    let writeRows (probability: bool) (destination: Tensor) (b: SweepBatch) =
        if probability then
            let sums = exponentiate b
            destination.copy_(b.Columns.t ()).div_ (sums.unsqueeze 1L) |> ignore
        else
            checkLogits b
            destination.copy_ (b.Columns.t ()) |> ignore
