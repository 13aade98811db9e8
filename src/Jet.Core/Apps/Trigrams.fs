namespace Jet.Core.Apps

open System
open System.Diagnostics
open TorchSharp
open Jet.Core

/// One scored trigram: after z₁ then z₂, the path's score for z₃.
type ScoredTriple = { First: int; Second: int; Next: int; Score: float }

/// The k best next tokens of every pair of a trigram sweep: pair p is (`First`.[p / Second.Length],
/// `Second`.[p % Second.Length]); `Best` holds ids and scores [pairs, k], best first.
type TrigramRowTopK =
    {
        First: int[]
        Second: int[]
        Best: RowTopK
    }

    interface IDisposable with
        member r.Dispose() = (r.Best :> IDisposable).Dispose()

/// Jet trigrams: a path of the path grammar with at least one attention step, read on the two-token input
/// [z₁, z₂] at position 2 (attention carries z₁ there): row (z₁, z₂) of a V²×V table, streamed over the product of
/// a first-token set and a second-token set through the bigram sweep kernel (`Sweeps`). Work that depends on one
/// token only is done once: position 1's streams (they see z₁ alone, attention being causal) once per z₁ batch, and
/// position 2's stream up to the path's first attention step once per z₂; only the steps from the first attention
/// on run per pair.
[<RequireQualifiedAccess>]
module Trigrams =

    /// Full V² products are swept without explicit sets only up to this many pairs (2²⁴).
    [<CompiledName("DefaultPairLimit")>]
    let defaultPairLimit = 1L <<< 24

    let private mixes (net: Net) (step: PathStep) =
        match step with
        | PathStep.Head _ -> true
        | PathStep.Layer l -> NetParts.mixesPositions net.Spec.Layers.[l - 1].Gamma
        | PathStep.MlpBranch _ -> false

    /// Fails unless `readout` is an order-0 path of `net` (`Readouts.check`) with at least one step that mixes
    /// positions (an attention layer or head); returns its source and steps.
    [<CompiledName("Check")>]
    let check (net: Net) (readout: Readout) : PathSource * PathStep list =
        Readouts.check net readout
        match readout with
        | Readout.Path(source, steps) when steps |> List.exists (mixes net) -> source, steps
        | Readout.Path _ ->
            raise (
                InvalidPlanException(
                    sprintf
                        "The path %s has no attention step, so z₁ cannot reach position 2 and its trigrams are its bigrams of z₂; add an attention layer or head (for example attn1 or attn1.h1)."
                        (Readouts.describe net readout)
                )
            )
        | Readout.Expansion _ ->
            raise (
                InvalidPlanException
                    "Trigrams read order-0 paths of the path grammar (for example emb>attn1>mlp1), not decoder expansions."
            )

    let private start (net: Net) (source: PathSource) (tokens: Tensor) =
        let embedded = Trace.embed net tokens
        match source with
        | PathSource.Embedding -> embedded
        | PathSource.Encoder -> Trace.encode net embedded

    /// The path's normed rows at position 2 of the inputs [z₁, z₂], evaluated directly (one two-token forward of the
    /// path per pair): `first` and `second` [P] int64 ids, result [P, d]. The reference the shared sweep equals.
    [<CompiledName("DirectRows")>]
    let directRows (net: Net) (readout: Readout) (first: Tensor) (second: Tensor) : Tensor =
        let source, steps = check net readout
        let tokens = torch.stack ([| first; second |], 1L)
        let h = steps |> List.fold (fun h step -> Readouts.applyStep net step h) (start net source tokens)
        (Decoder.normalize net h).select (1L, 1L)

    /// Per z₁ batch: the input of every step at position 1 ([B₁, 1, d] each), from the one-token path.
    let private firstInputs (net: Net) (source: PathSource) (steps: PathStep list) (first: Tensor) =
        steps
        |> List.scan (fun h step -> Readouts.applyStep net step h) (start net source (first.unsqueeze 1L))
        |> List.truncate steps.Length
        |> Array.ofList

    /// Per z₂: the stream at position 2 before the path's first mixing step, [n₂, 1, d], and that step's index.
    let private secondPrefix (net: Net) (source: PathSource) (steps: PathStep list) (second: Tensor) =
        let firstMixing = steps |> List.findIndex (mixes net)
        // Position 2 of a two-token input: its absolute position (if any) is 1.
        let tokens = torch.stack ([| second; second |], 1L)
        let h0 = (start net source tokens).narrow (1L, 1L, 1L)
        let h = steps |> List.take firstMixing |> List.fold (fun h step -> Readouts.applyStep net step h) h0
        h, firstMixing

    /// The normed rows at position 2 for the pairs (z₁ of `first` [B₁]) × (the second tokens whose prefix rows are
    /// `prefix` [B₂, 1, d]), pair b₁·B₂ + b₂: [B₁·B₂, d]. Equals `directRows` on those pairs.
    let private pairRows
        (net: Net)
        (steps: PathStep[])
        (inputs: Tensor[])
        (firstMixing: int)
        (b1: int64)
        (prefix: Tensor)
        =
        let b2 = prefix.shape.[0]
        let mutable h = prefix.repeat (b1, 1L, 1L)
        for i in firstMixing .. steps.Length - 1 do
            if mixes net steps.[i] then
                let earlier = inputs.[i].repeat_interleave (b2, dim = 0L)
                h <- (Readouts.applyStep net steps.[i] (torch.cat ([| earlier; h |], 1L))).narrow (1L, 1L, 1L)
            else
                h <- Readouts.applyStep net steps.[i] h
        (Decoder.normalize net h).squeeze 1L

    let private checkSet (net: Net) (name: string) (set: int[]) =
        if isNull set || set.Length = 0 then
            raise (MissingArgumentException(sprintf "The %s token set is empty; give at least one token id." name))
        Vocabulary.checkTokenSet net.Vocab set
        Array.distinct set

    /// Pairs swept per second at this path's cost: one block of up to `batch` pairs timed (for refusals' estimates).
    [<CompiledName("MeasureRate")>]
    let measureRate (net: Net) (readout: Readout) (batch: int) : float =
        let source, steps = check net readout
        use _ = torch.no_grad ()
        use _ = torch.NewDisposeScope()
        let n = int64 (max 1 (min batch net.Vocab))
        let first = torch.zeros ([| 1L |], dtype = torch.int64, device = net.Device)
        let second = torch.arange (n, dtype = torch.int64, device = net.Device)
        use workspace = Sweeps.workspace net (int n)
        let clock = Stopwatch.StartNew()
        let inputs = firstInputs net source steps first
        let prefix, firstMixing = secondPrefix net source steps second
        let x = pairRows net (Array.ofList steps) inputs firstMixing 1L prefix
        let batch = Sweeps.batch workspace false x second
        Sweeps.rowTopK false 1 batch |> ignore
        float n / max 1e-9 clock.Elapsed.TotalSeconds

    /// First tokens per block of a sweep over `secondCount` second tokens in blocks of at most `batchSize` pairs:
    /// as many whole rows of second tokens as fit, at least one (a row longer than a block is split). Shards of a
    /// trigram sweep split the first set at multiples of this, so every block is one an unsharded sweep computes.
    [<CompiledName("FirstTokensPerBatch")>]
    let firstTokensPerBatch (secondCount: int) (batchSize: int) : int =
        if secondCount < 1 || batchSize < 1 then
            raise (
                InvalidPlanException(
                    sprintf
                        "A trigram sweep needs ≥ 1 second token and a batch size ≥ 1; got %d and %d."
                        secondCount
                        batchSize
                )
            )
        max 1 (batchSize / secondCount)

    /// Sweeps the pairs of `first` × `second` in blocks of at most `options.BatchSize` pairs: `body start batch` for
    /// each block, its rows the pairs `start ..` in the product's order and its `First` ids the pair ids z₁·V + z₂.
    let private sweep
        (net: Net)
        (readout: Readout)
        (first: int[])
        (second: int[])
        (options: SweepOptions)
        (body: int64 -> SweepBatch -> unit)
        =
        let source, steps = check net readout
        let steps' = Array.ofList steps
        let n2 = int64 second.Length
        let firstBatch = firstTokensPerBatch second.Length options.BatchSize
        let chunk = min n2 (int64 options.BatchSize)
        let v = int64 net.Vocab
        use scope = torch.NewDisposeScope()
        let secondIds = torch.tensor (second |> Array.map int64, dtype = torch.int64, device = net.Device)
        let prefix, firstMixing = secondPrefix net source steps secondIds
        use workspace = Sweeps.workspace net options.BatchSize
        FirstTokens.sweep net options firstBatch (Some(first |> Array.map int64)) (fun start firstIds ->
            let inputs = firstInputs net source steps firstIds
            let b1 = firstIds.shape.[0]
            let mutable at = 0L
            while at < n2 do
                options.Cancellation.ThrowIfCancellationRequested()
                use _ = torch.NewDisposeScope()
                let count = min chunk (n2 - at)
                let x = pairRows net steps' inputs firstMixing b1 (prefix.narrow (0L, at, count))
                let pairIds = (firstIds.unsqueeze 1L * v + secondIds.narrow(0L, at, count).unsqueeze 0L).flatten ()
                // Rows in product order: with chunks (one z₁ per batch) they follow z₂.
                body (start * n2 + at) (Sweeps.batch workspace false x pairIds)
                at <- at + count)

    /// The sets to sweep, first and second: given ones checked (duplicates dropped), or every token when both are null
    /// or empty and V² ≤ `defaultPairLimit`; a larger full product is refused with its size and time at the rate
    /// measured on this path.
    [<CompiledName("Sets")>]
    let setsOf (net: Net) (readout: Readout) (options: SweepOptions) (first: int[]) (second: int[]) =
        let given (s: int[]) = not (isNull s) && s.Length > 0
        if options.DropDiagonal then
            raise (
                InvalidPlanException
                    "Dropping the diagonal is defined for bigram-shaped tables (z₂ = z₁); a trigram row has two inputs, so leave it out."
            )
        let all = [| 0 .. net.Vocab - 1 |]
        match given first, given second with
        | false, false ->
            let pairs = int64 net.Vocab * int64 net.Vocab
            if pairs > defaultPairLimit then
                let rate = measureRate net readout options.BatchSize
                raise (
                    InvalidPlanException(
                        sprintf
                            "All %d × %d = %d pairs is more than the default limit of 2²⁴ = %d; at the %.0f pairs/s measured here it would take %.1f hours. Give a first-token set (--first) and/or a second-token set (--second)."
                            net.Vocab
                            net.Vocab
                            pairs
                            defaultPairLimit
                            rate
                            (float pairs / rate / 3600.0)
                    )
                )
            all, all
        | _ ->
            (if given first then checkSet net "first" first else all),
            (if given second then checkSet net "second" second else all)

    /// Scores [n₁·n₂, vocab] of the path for the pairs of `first` × `second` (ids, duplicates counted once), pair
    /// b₁·n₂ + b₂, from the shared sweep rows in one block; probabilities or logits as `options.Space` says.
    [<CompiledName("Scores")>]
    let scores (net: Net) (readout: Readout) (options: SweepOptions) (first: int[]) (second: int[]) : Tensor =
        let source, steps = check net readout
        let first = checkSet net "first" first
        let second = checkSet net "second" second
        use _ = torch.no_grad ()
        use scope = torch.NewDisposeScope()
        let ids (s: int[]) = torch.tensor (s |> Array.map int64, dtype = torch.int64, device = net.Device)
        let prefix, firstMixing = secondPrefix net source steps (ids second)
        let x =
            pairRows
                net
                (Array.ofList steps)
                (firstInputs net source steps (ids first))
                firstMixing
                first.LongLength
                prefix
        let logits = Decoder.logits net x
        let result =
            match options.Space with
            | ScoreSpace.Probability -> logits.softmax (-1L)
            | ScoreSpace.Logit -> logits
        result.MoveToOuterDisposeScope()

    /// The first tokens of the shard `options.Rows` (places in `first`, all when not given), and options that leave
    /// the sweep to them.
    let private shardOf (options: SweepOptions) (first: int[]) =
        let rows = Vocabulary.checkRows first.Length options.Rows
        first.[rows.Start .. rows.Stop - 1], { options with Rows = None }

    /// The k best next tokens of every pair of `first` × `second` (null or empty: every token, refused above 2²⁴
    /// pairs), pair by pair in the product's order.
    [<CompiledName("RowTopK")>]
    let rowTopK
        (net: Net)
        (readout: Readout)
        (first: int[])
        (second: int[])
        (k: int)
        (options: SweepOptions)
        : TrigramRowTopK =
        Bigrams.checkOptions net options
        Bigrams.checkK net options k (int64 net.Vocab)
        check net readout |> ignore
        let first, second = setsOf net readout options first second
        let first, options = shardOf options first
        use _ = torch.no_grad ()
        let pairs = first.LongLength * second.LongLength
        let ids = torch.empty ([| pairs; int64 k |], dtype = torch.int64, device = net.Device)
        let scores = torch.empty ([| pairs; int64 k |], dtype = net.DType, device = net.Device)
        try
            sweep net readout first second options (fun start batch ->
                let values, at = Sweeps.rowTopK (options.Space = ScoreSpace.Probability) k batch
                scores.narrow(0L, start, batch.Count).copy_ values |> ignore
                ids.narrow(0L, start, batch.Count).copy_ at |> ignore)
            { First = first; Second = second; Best = { Ids = ids; Scores = scores; First = 0 } }
        with _ ->
            ids.Dispose()
            scores.Dispose()
            reraise ()

    /// Global top-k candidates over the pairs of `first` × `second` (null or empty: every token, refused above 2²⁴
    /// pairs) whose first token is at the places `options.Rows` of the first set (all when not given), in
    /// `PairCandidates.best` order, flat indices (z₁·V + z₂)·V + z₃: what shards of a trigram sweep hand to their
    /// merge. Memory a few [batch, vocab] tensors, as for `Bigrams.globalTopK`.
    [<CompiledName("GlobalCandidates")>]
    let globalCandidates
        (net: Net)
        (readout: Readout)
        (first: int[])
        (second: int[])
        (k: int)
        (options: SweepOptions)
        : PairCandidates =
        Bigrams.checkOptions net options
        check net readout |> ignore
        let first, second = setsOf net readout options first second
        let v = int64 net.Vocab
        Bigrams.checkK net options k (first.LongLength * second.LongLength * v)
        use _ = torch.no_grad ()
        use scope = torch.NewDisposeScope()
        let best = Bigrams.emptyBest net
        let probability = options.Space = ScoreSpace.Probability
        try
            sweep net readout first second options (fun _ batch ->
                Bigrams.offer probability k (min k net.Vocab) best batch)
            Bigrams.candidatesOf options.Space k best
        finally
            Bigrams.freeBest best

    /// Global candidates (`globalCandidates`) as triples of a vocabulary of `vocab` tokens, in their order.
    [<CompiledName("TriplesOfCandidates")>]
    let triplesOfCandidates (vocab: int) (c: PairCandidates) : ScoredTriple[] =
        let v = int64 vocab
        Array.init c.Flat.Length (fun i ->
            let pair = c.Flat.[i] / v
            {
                First = int (pair / v)
                Second = int (pair % v)
                Next = int (c.Flat.[i] % v)
                Score = c.Scores.[i]
            })

    /// The k best (z₁, z₂, z₃) over the product `first` × `second` (null or empty: every token, refused above 2²⁴
    /// pairs), best first with ties by (z₁, z₂, z₃); memory a few [batch, vocab] tensors, as for `Bigrams.globalTopK`.
    [<CompiledName("GlobalTopK")>]
    let globalTopK
        (net: Net)
        (readout: Readout)
        (first: int[])
        (second: int[])
        (k: int)
        (options: SweepOptions)
        : ScoredTriple[] =
        globalCandidates net readout first second k options |> triplesOfCandidates net.Vocab

    /// Row top-k arrays as triples: `ids` and `scores` hold k per pair, pair by pair in the order of
    /// `first` × `second` (pair p is (`first`.[p / second.Length], `second`.[p % second.Length])).
    [<CompiledName("TriplesOfRows")>]
    let triplesOfRows (first: int[]) (second: int[]) (k: int) (ids: int64[]) (scores: float[]) : ScoredTriple[] =
        let n2 = second.Length
        Array.init ids.Length (fun i ->
            let pair = i / k
            { First = first.[pair / n2]; Second = second.[pair % n2]; Next = int ids.[i]; Score = scores.[i] })

    /// The rows of a `TrigramRowTopK` as triples, pair by pair, best first within a pair.
    [<CompiledName("TriplesOf")>]
    let triplesOf (best: TrigramRowTopK) : ScoredTriple[] =
        let ids, scores = Bigrams.rowArrays best.Best
        triplesOfRows best.First best.Second (int best.Best.Ids.shape.[1]) ids scores
