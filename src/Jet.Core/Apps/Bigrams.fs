namespace Jet.Core.Apps

open System
open System.Threading
open TorchSharp
open Jet.Core
open Jet.Core.Models

/// Whether bigram scores are next-token probabilities (row softmax) or raw logits.
[<RequireQualifiedAccess>]
type ScoreSpace =
    | Probability
    | Logit

/// How to sweep the vocabulary.
type SweepOptions =
    {
        Space: ScoreSpace
        /// Leaves out z₂ = z₁ (tied embeddings make embedding → decoder predict the input token). In probability
        /// space the row is renormalised over z₂ ≠ z₁; in logit space the diagonal becomes −∞.
        DropDiagonal: bool
        /// First tokens per batch; memory grows with BatchSize × vocab, never vocab².
        BatchSize: int
        /// Receives the number of first tokens done after each batch.
        Progress: IProgress<int64> option
        Cancellation: CancellationToken
        /// The largest full table `Bigrams.full` may build, in bytes.
        MaxFullBytes: int64
        /// The first tokens to sweep (a shard of the sweep, see `Shards`); None sweeps the whole vocabulary. Batches
        /// start at the range's first token.
        Rows: RowRange option
    }

    /// Probabilities, diagonal kept, batches of 512, no progress, not cancellable, full tables up to 1 GiB, every
    /// first token.
    static member Default =
        {
            Space = ScoreSpace.Probability
            DropDiagonal = false
            BatchSize = 512
            Progress = None
            Cancellation = CancellationToken.None
            MaxFullBytes = 1L <<< 30
            Rows = None
        }

/// One scored bigram (z₁, z₂).
type ScoredPair = { From: int; To: int; Score: float }

/// A scored bigram with readable tokens.
type BigramRow = { From: int; To: int; FromToken: string; ToToken: string; Score: float }

/// The k best next tokens of every first token swept: `Ids` and `Scores` are [rows, k], best first in each row; row i
/// is first token `First` + i.
type RowTopK =
    {
        Ids: Tensor
        Scores: Tensor
        /// The first token of row 0 (0 unless the sweep covered a range of first tokens).
        First: int
    }

    interface IDisposable with
        member r.Dispose() =
            r.Ids.Dispose()
            r.Scores.Dispose()

/// Jet bigrams: next-token tables of readouts (any path, or a decoder expansion), evaluated over the whole vocabulary
/// in streamed batches.
[<RequireQualifiedAccess>]
module Bigrams =

    let internal checkOptions (net: Net) (options: SweepOptions) =
        if options.BatchSize < 1 then
            raise (InvalidPlanException(sprintf "The batch size must be ≥ 1; got %d." options.BatchSize))
        // A batch holds its rows' logits, probabilities and top-k candidates ([rows, vocab] several times) and the
        // path's activations (about 8d per row).
        let rows = float (min options.BatchSize net.Vocab)
        Memory.require
            (sprintf "A sweep batch of %d first tokens over a vocabulary of %d" options.BatchSize net.Vocab)
            (8.0 * rows * (6.0 * float net.Vocab + 8.0 * float net.Width))
            "Lower the batch size (--batch-size)."
        if options.DropDiagonal && net.Vocab < 2 then
            raise (InvalidPlanException "Dropping the diagonal leaves nothing in a vocabulary of one token.")
        Vocabulary.checkRows net.Vocab options.Rows |> ignore

    let private ids (net: Net) (start: int64) (count: int64) =
        torch.arange (start, start + count, dtype = torch.int64, device = net.Device)

    // TorchSharp's ToArray fails on empty tensors (a shard may cover no rows).
    let internal doubles (t: Tensor) : float[] =
        if t.numel () = 0L then
            [||]
        else
            t.to_type(torch.float64).cpu().data<float>().ToArray()

    let internal longs (t: Tensor) : int64[] =
        if t.numel () = 0L then
            [||]
        else
            t.to_type(torch.int64).cpu().data<int64>().ToArray()

    /// Sweeps the vocabulary in batches through one workspace: `body start count batch` gets each batch's logits
    /// (`Sweeps.batch`), valid until the next batch.
    let private sweepBatches
        (net: Net)
        (readout: Readout)
        (options: SweepOptions)
        (body: int64 -> int64 -> SweepBatch -> unit)
        =
        use workspace = Sweeps.workspace net options.BatchSize
        let rows = Vocabulary.checkRows net.Vocab options.Rows
        Vocabulary.sweepRows rows options.BatchSize options.Progress options.Cancellation (fun start count ->
            let first = ids net start count
            body
                start
                count
                (Sweeps.batch workspace options.DropDiagonal (Readouts.normedRows net readout first) first))

    /// Scores of the path for the first tokens `first` [B] (int64 ids in 0..vocab−1): [B, vocab].
    [<CompiledName("Scores")>]
    let scores (net: Net) (readout: Readout) (options: SweepOptions) (first: Tensor) : Tensor =
        checkOptions net options
        if
            isNull (box first)
            || first.dim () <> 1L
            || (first.dtype <> torch.int64 && first.dtype <> torch.int32)
        then
            let got =
                if isNull (box first) then
                    "null"
                else
                    Tensors.describe first
            raise (ShapeMismatchException(sprintf "The first tokens must be a [B] integer tensor of ids; got %s." got))
        Readouts.check net readout
        use _ = torch.no_grad ()
        use scope = torch.NewDisposeScope()
        let first = first.to_type(torch.int64).``to`` net.Device
        if first.numel () > 0L then
            let lo, hi = first.min().item<int64> (), first.max().item<int64> ()
            if lo < 0L || hi >= int64 net.Vocab then
                raise (
                    IndexRangeException(
                        sprintf
                            "Token id %d is outside the vocabulary; valid ids are 0..%d."
                            (if lo < 0L then lo else hi)
                            (net.Vocab - 1)
                    )
                )
        let n = first.shape.[0]
        let result =
            if n = 0L then
                torch.empty ([| 0L; int64 net.Vocab |], dtype = net.DType, device = net.Device)
            else
                use workspace = Sweeps.workspace net (int n)
                let batch = Sweeps.batch workspace options.DropDiagonal (Readouts.normedRows net readout first) first
                let rows = torch.empty ([| n; int64 net.Vocab |], dtype = net.DType, device = net.Device)
                Sweeps.writeRows (options.Space = ScoreSpace.Probability) rows batch
                rows
        result.MoveToOuterDisposeScope()

    let private sizeText (bytes: int64) =
        let b = float bytes
        if b >= 1e9 then sprintf "%.1f GB" (b / 1e9)
        elif b >= 1e6 then sprintf "%.1f MB" (b / 1e6)
        else sprintf "%.1f kB" (b / 1e3)

    /// The whole [vocab, vocab] table (row z₁, column z₂; [rows, vocab] for the first tokens of `options.Rows`). Only
    /// when asked: fails with the size when it would exceed `options.MaxFullBytes`.
    [<CompiledName("Full")>]
    let full (net: Net) (readout: Readout) (options: SweepOptions) : Tensor =
        checkOptions net options
        Readouts.check net readout
        let v = int64 net.Vocab
        let range = Vocabulary.checkRows net.Vocab options.Rows
        let r = int64 range.Count
        let elementBytes = int64 (TensorExtensionMethods.ElementSize net.DType)
        let bytes = r * v * elementBytes
        if bytes > options.MaxFullBytes then
            raise (
                InvalidPlanException(
                    sprintf
                        "The full %d × %d bigram table needs %s (%O), more than the limit of %s; use row or global top-k instead, or raise MaxFullBytes."
                        r
                        v
                        (sizeText bytes)
                        net.DType
                        (sizeText options.MaxFullBytes)
                )
            )
        use _ = torch.no_grad ()
        let table = torch.empty ([| r; v |], dtype = net.DType, device = net.Device)
        try
            sweepBatches net readout options (fun start count batch ->
                Sweeps.writeRows
                    (options.Space = ScoreSpace.Probability)
                    (table.narrow (0L, start - int64 range.Start, count))
                    batch)
            table
        with _ ->
            table.Dispose()
            reraise ()

    let internal checkK (net: Net) (options: SweepOptions) (k: int) (limit: int64) =
        let limit = min limit (int64 Int32.MaxValue)
        if k < 1 || int64 k > limit then
            let extra =
                if options.DropDiagonal then
                    " with the diagonal dropped"
                else
                    ""
            raise (
                IndexRangeException(
                    sprintf "k must be 1..%d for this vocabulary of %d tokens%s; got %d." limit net.Vocab extra k
                )
            )

    /// The k best next tokens for every first token (of `options.Rows` when given): ids and scores [rows, k], best
    /// first.
    [<CompiledName("RowTopK")>]
    let rowTopK (net: Net) (readout: Readout) (k: int) (options: SweepOptions) : RowTopK =
        checkOptions net options
        checkK net options k (int64 net.Vocab - (if options.DropDiagonal then 1L else 0L))
        Readouts.check net readout
        use _ = torch.no_grad ()
        let range = Vocabulary.checkRows net.Vocab options.Rows
        let r = int64 range.Count
        let bestIds = torch.empty ([| r; int64 k |], dtype = torch.int64, device = net.Device)
        let bestScores = torch.empty ([| r; int64 k |], dtype = net.DType, device = net.Device)
        try
            sweepBatches net readout options (fun start count batch ->
                let values, indices = Sweeps.rowTopK (options.Space = ScoreSpace.Probability) k batch
                let at = start - int64 range.Start
                bestScores.narrow(0L, at, count).copy_ values |> ignore
                bestIds.narrow(0L, at, count).copy_ indices |> ignore)
            { Ids = bestIds; Scores = bestScores; First = range.Start }
        with _ ->
            bestIds.Dispose()
            bestScores.Dispose()
            reraise ()

    /// An empty running best for a global top-k: scores (log-probability or logit) and flat indices, none yet. Its
    /// tensors belong to no dispose scope (batches may run in nested scopes); `freeBest` frees them.
    let internal emptyBest (net: Net) =
        ref (
            torch.empty([| 0L |], dtype = net.DType, device = net.Device).DetachFromDisposeScope(),
            torch.empty([| 0L |], dtype = torch.int64, device = net.Device).DetachFromDisposeScope()
        )

    /// Merges a batch's global candidates (`Sweeps.globalCandidates`, flat indices First·vocab + z₂) into the running
    /// best `best`, keeping k; once k are held, only rows whose best score beats the k-th best are ranked at all. The
    /// merged tensors leave every dispose scope, the ones they replace are freed.
    let internal offer (probability: bool) (k: int) (perRow: int) (best: (Tensor * Tensor) ref) (batch: SweepBatch) =
        let bestScores, bestFlat = best.Value
        let threshold =
            if bestScores.shape.[0] < int64 k then
                None
            else
                Some bestScores.[int64 (k - 1)]
        match Sweeps.globalCandidates probability perRow threshold batch with
        | None -> ()
        | Some(scores, flat) ->
            let allScores = torch.cat ([| bestScores; scores |], 0L)
            let allFlat = torch.cat ([| bestFlat; flat |], 0L)
            let struct (mergedScores, mergedAt) = allScores.topk (int (min (int64 k) allScores.shape.[0]))
            let next =
                mergedScores.DetachFromDisposeScope(), allFlat.index_select(0L, mergedAt).DetachFromDisposeScope()
            bestScores.Dispose()
            bestFlat.Dispose()
            best.Value <- next

    /// Frees a running best's tensors (`emptyBest`).
    let internal freeBest (best: (Tensor * Tensor) ref) =
        let scores, flat = best.Value
        scores.Dispose()
        flat.Dispose()

    /// The running best as scores (probabilities or logits, as `space` says) and flat indices, best first.
    let internal bestOf (space: ScoreSpace) (best: (Tensor * Tensor) ref) : float[] * int64[] =
        use _ = torch.NewDisposeScope()
        let bestScores, bestFlat = best.Value
        let bestScores =
            match space with
            | ScoreSpace.Probability -> bestScores.exp ()
            | ScoreSpace.Logit -> bestScores
        bestScores.to_type(torch.float64).cpu().data<float>().ToArray(), bestFlat.cpu().data<int64>().ToArray()

    /// A running best as `PairCandidates` in `PairCandidates.best` order (k at most). Reported scores are computed
    /// here, on the sweep's device and in its dtype, so a merge of shards only selects among them.
    let internal candidatesOf (space: ScoreSpace) (k: int) (best: (Tensor * Tensor) ref) : PairCandidates =
        use _ = torch.NewDisposeScope()
        let bestRank, bestFlat = best.Value
        let bestScores =
            match space with
            | ScoreSpace.Probability -> bestRank.exp ()
            | ScoreSpace.Logit -> bestRank
        { Rank = doubles bestRank; Flat = longs bestFlat; Scores = doubles bestScores }
        |> PairCandidates.best k

    /// The k best (z₁, z₂) candidates of the first tokens swept (`options.Rows`, or all), in `PairCandidates.best`
    /// order. Each batch keeps only its rows' top k, merged with the running best, so memory is a few [batch, vocab]
    /// tensors; once k pairs are held, only rows whose best score beats the k-th best are ranked at all.
    [<CompiledName("GlobalCandidates")>]
    let globalCandidates (net: Net) (readout: Readout) (k: int) (options: SweepOptions) : PairCandidates =
        checkOptions net options
        let v = int64 net.Vocab
        checkK net options k (v * (if options.DropDiagonal then v - 1L else v))
        Readouts.check net readout
        use _ = torch.no_grad ()
        use scope = torch.NewDisposeScope()
        let best = emptyBest net
        let perRow = min k (int net.Vocab - (if options.DropDiagonal then 1 else 0))
        try
            sweepBatches net readout options (fun _ _ batch ->
                offer (options.Space = ScoreSpace.Probability) k perRow best batch)
            candidatesOf options.Space k best
        finally
            freeBest best

    /// Candidates as pairs of a vocabulary of `vocab` tokens, in their order.
    [<CompiledName("PairsOfCandidates")>]
    let pairsOfCandidates (vocab: int) (c: PairCandidates) : ScoredPair[] =
        let v = int64 vocab
        Array.init c.Flat.Length (fun i ->
            { From = int (c.Flat.[i] / v); To = int (c.Flat.[i] % v); Score = c.Scores.[i] })

    /// The k best (z₁, z₂) pairs over the whole table (over the first tokens of `options.Rows` when given), best
    /// first; ties by (z₁, z₂).
    [<CompiledName("GlobalTopK")>]
    let globalTopK (net: Net) (readout: Readout) (k: int) (options: SweepOptions) : ScoredPair[] =
        globalCandidates net readout k options |> pairsOfCandidates net.Vocab

    /// Row top-k results as pairs: `ids` and `scores` hold k per row, row-major, row i being first token `first` + i.
    [<CompiledName("PairsOfRows")>]
    let pairsOfRows (first: int) (k: int) (ids: int64[]) (scores: float[]) : ScoredPair[] =
        Array.init ids.Length (fun i -> { From = first + i / k; To = int ids.[i]; Score = scores.[i] })

    /// The ids and scores of a `RowTopK` on the CPU: k per row, row-major (scores as float64).
    [<CompiledName("RowArrays")>]
    let rowArrays (best: RowTopK) : int64[] * float[] =
        use scope = torch.NewDisposeScope()
        longs best.Ids, doubles best.Scores

    /// The rows of a `RowTopK` as pairs, grouped by first token ascending, best first within a group.
    [<CompiledName("PairsOf")>]
    let pairsOf (best: RowTopK) : ScoredPair[] =
        let ids, scores = rowArrays best
        pairsOfRows best.First (int best.Ids.shape.[1]) ids scores

    /// Per batch of first tokens swept (`options.Rows`, or all), in order: Σ_{z₁ in the batch} Σ_{z₂∈S} P(z₂ | z₁)
    /// (float64). `Vocabulary.total` adds them up.
    [<CompiledName("MassSums")>]
    let massSums (net: Net) (readout: Readout) (tokenSet: int[]) (options: SweepOptions) : float[] =
        checkOptions net options
        Vocabulary.checkTokenSet net.Vocab tokenSet
        Readouts.check net readout
        use _ = torch.no_grad ()
        use scope = torch.NewDisposeScope()
        let columns =
            torch.tensor (tokenSet |> Array.distinct |> Array.map int64, dtype = torch.int64, device = net.Device)
        let sums = ResizeArray<float>()
        sweepBatches net readout options (fun _ _ batch ->
            sums.Add((Sweeps.massSums columns batch).sum().item<float> ()))
        sums.ToArray()

    /// N-gram mass of a token set S under the path: mean over z₁ of Σ_{z₂∈S} P(z₂ | z₁) (always probabilities;
    /// `DropDiagonal` renormalises each row over z₂ ≠ z₁); over the first tokens of `options.Rows` when given.
    [<CompiledName("Mass")>]
    let mass (net: Net) (readout: Readout) (tokenSet: int[]) (options: SweepOptions) : float =
        let range = Vocabulary.checkRows net.Vocab options.Rows
        if range.Count = 0 then
            raise (InvalidPlanException "The first-token range is empty; a mass is a mean over at least one row.")
        Vocabulary.total (massSums net readout tokenSet options) / float range.Count

    /// Pairs with readable tokens.
    [<CompiledName("Decode")>]
    let decode (tokenizer: ITokenizer) (pairs: ScoredPair seq) : BigramRow[] =
        [|
            for p in pairs ->
                {
                    From = p.From
                    To = p.To
                    FromToken = LogitMetrics.piece tokenizer p.From
                    ToToken = LogitMetrics.piece tokenizer p.To
                    Score = p.Score
                }
        |]
