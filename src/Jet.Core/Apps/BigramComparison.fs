namespace Jet.Core.Apps

open System
open TorchSharp
open Jet.Core
open Jet.Core.Models

/// How a model-against-model comparison measures the change of a pair (z₁, z₂).
[<RequireQualifiedAccess>]
type ChangeSpace =
    /// P_after(z₂ | z₁) − P_before(z₂ | z₁).
    | Probability
    /// log P_after(z₂ | z₁) − log P_before(z₂ | z₁): relative change, which finds rare pairs that grew many-fold.
    | LogProbability

/// One pair (z₁, z₂) under two models: its score (probability or log-probability) under each, and the change.
type PairChange = { From: int; To: int; Before: float; After: float; Change: float }

/// A pair change with readable tokens.
type PairChangeRow =
    {
        From: int
        To: int
        FromToken: string
        ToToken: string
        Before: float
        After: float
        Change: float
    }

/// Two models' tables of one readout, compared in one streamed sweep.
type TableComparison =
    {
        Space: ChangeSpace
        /// The k pairs whose score rose most, biggest rise first.
        Rises: PairChange[]
        /// The k pairs whose score fell most, biggest fall first.
        Falls: PairChange[]
        /// Per first token, its k biggest rises, grouped by first token ascending (empty unless asked for).
        RowRises: PairChange[]
        /// Per first token, its k biggest falls, grouped by first token ascending (empty unless asked for).
        RowFalls: PairChange[]
        /// Each model's own global top-k pairs by probability, best first.
        TopBefore: ScoredPair[]
        TopAfter: ScoredPair[]
        /// How many pairs the two global top-k lists share.
        Overlap: int
    }

/// A token that differs between two tokenizers.
type TokenizerMismatchException(message: string) =
    inherit JetException(message)

/// Jet bigram tables of two checkpoints with one tokenizer, compared pair by pair (fine-tuning, training dynamics):
/// the biggest risers and fallers, globally and per first token, and the overlap of the two global top-k lists.
[<RequireQualifiedAccess>]
module BigramComparison =

    /// Fails unless the two tokenizers are the same: the same vocabulary size and the same piece for every id.
    [<CompiledName("CheckSameTokenizer")>]
    let checkSameTokenizer (before: Model) (after: Model) =
        let vb, va = before.Net.Vocab, after.Net.Vocab
        if vb <> va then
            raise (
                TokenizerMismatchException(
                    sprintf
                        "The models have different vocabularies (%s: %d tokens, %s: %d); a comparison needs one tokenizer."
                        before.Source
                        vb
                        after.Source
                        va
                )
            )
        for id in 0 .. vb - 1 do
            let a, b = LogitMetrics.piece before.Tokenizer id, LogitMetrics.piece after.Tokenizer id
            if a <> b then
                raise (
                    TokenizerMismatchException(
                        sprintf
                            "The models' tokenizers differ: token %d is %A in %s and %A in %s; a comparison needs one tokenizer."
                            id
                            a
                            before.Source
                            b
                            after.Source
                    )
                )

    /// The running best k of a stream of [B, V] score blocks: scores and flat pair indices z₁·V + z₂, best first.
    type private RunningTop(k: int, vocab: int64, dtype: torch.ScalarType, device: torch.Device) =
        let mutable scores = torch.empty ([| 0L |], dtype = dtype, device = device)
        let mutable flat = torch.empty ([| 0L |], dtype = torch.int64, device = device)

        /// Merges a block `block` [B, V] of rows `first` [B]; only rows whose best beats the k-th best are ranked.
        member _.Add(block: Tensor, first: Tensor) =
            let perRow = int (min (int64 k) block.shape.[1])
            let rows =
                if scores.shape.[0] < int64 k then
                    None
                else
                    let struct (rowMax, _) = block.max 1L
                    Some(rowMax.gt(scores.[int64 (k - 1)]).nonzero().squeeze 1L)
            match rows with
            | Some r when r.shape.[0] = 0L -> ()
            | _ ->
                let candidates, firsts =
                    match rows with
                    | Some r -> block.index_select (0L, r), first.index_select (0L, r)
                    | None -> block, first
                let struct (values, indices) = candidates.topk (perRow, dim = 1)
                let allScores = torch.cat ([| scores; values.flatten () |], 0L)
                let allFlat = torch.cat ([| flat; (firsts.unsqueeze 1L * vocab + indices).flatten () |], 0L)
                let struct (merged, at) = allScores.topk (int (min (int64 k) allScores.shape.[0]))
                let nextFlat = allFlat.index_select (0L, at)
                scores.Dispose()
                flat.Dispose()
                scores <- merged.MoveToOuterDisposeScope()
                flat <- nextFlat.MoveToOuterDisposeScope()

        /// The pairs held, best first, as (z₁, z₂, score).
        member _.Pairs() =
            let s = scores.to_type(torch.float64).cpu().data<float>().ToArray()
            let f = flat.cpu().data<int64>().ToArray()
            Array.init s.Length (fun i -> int (f.[i] / vocab), int (f.[i] % vocab), s.[i])

        interface IDisposable with
            member _.Dispose() =
                scores.Dispose()
                flat.Dispose()

    /// Log-probabilities [B, V] of a readout for first tokens `first` [B], the diagonal left out when dropped (each
    /// row renormalised over z₂ ≠ z₁, the diagonal −∞).
    let private logProbabilities (net: Net) (readout: Readout) (dropDiagonal: bool) (first: Tensor) =
        let logits = Readouts.logits net readout first
        if dropDiagonal then
            Vocabulary.dropDiagonal first logits |> ignore
        logits.log_softmax 1L

    let private scoreIn (space: ChangeSpace) (logProbability: Tensor) =
        match space with
        | ChangeSpace.Probability -> logProbability.exp ()
        | ChangeSpace.LogProbability -> logProbability

    /// The scores of pairs under a model: (z₁, z₂) → probability or log-probability, computed for their rows only.
    let private scoresOf
        (net: Net)
        (readout: Readout)
        (space: ChangeSpace)
        (dropDiagonal: bool)
        (pairs: (int * int) seq)
        =
        let pairs = Array.ofSeq pairs
        if pairs.Length = 0 then
            Map.empty
        else
            use _ = torch.NewDisposeScope()
            let rows = pairs |> Array.map fst |> Array.distinct |> Array.sort
            let first = torch.tensor (rows |> Array.map int64, device = net.Device)
            let table = scoreIn space (logProbabilities net readout dropDiagonal first)
            let values = table.to_type(torch.float64).cpu().data<float>().ToArray()
            let v = net.Vocab
            let rowOf = rows |> Array.mapi (fun i r -> r, i) |> Map.ofArray
            pairs |> Array.map (fun (a, b) -> (a, b), values.[rowOf.[a] * v + b]) |> Map.ofArray

    /// Compares the tables of `readout` under `before` and `after` (two checkpoints of one architecture and one
    /// tokenizer): the k pairs that rose and fell most over the whole table, with `perRow` also each first token's k
    /// biggest rises and falls, and the overlap of the two models' global top-k lists (by probability). One streamed
    /// sweep over both models: memory is a few [batch, V] buffers per model (plus [V, k] for per-row results).
    /// `options` gives the batch size, diagonal, progress and cancellation (its score space is not used).
    [<CompiledName("Compare")>]
    let compare
        (before: Model)
        (after: Model)
        (readout: Readout)
        (space: ChangeSpace)
        (k: int)
        (perRow: bool)
        (options: SweepOptions)
        : TableComparison =
        checkSameTokenizer before after
        let a, b = before.Net, after.Net
        Readouts.check a readout
        Readouts.check b readout
        if options.BatchSize < 1 then
            raise (InvalidPlanException(sprintf "The batch size must be ≥ 1; got %d." options.BatchSize))
        if options.Rows.IsSome then
            raise (
                InvalidPlanException
                    "A comparison of two models sweeps the whole vocabulary; it cannot run over a range of first tokens (Rows) or as a shard yet."
            )
        let v = int64 a.Vocab
        let columns = v - (if options.DropDiagonal then 1L else 0L)
        if k < 1 || int64 k > columns then
            raise (IndexRangeException(sprintf "k must be 1..%d for this vocabulary of %d tokens; got %d." columns v k))
        if string a.Device <> string b.Device || a.DType <> b.DType then
            raise (
                InvalidPlanException(
                    sprintf
                        "Both models must have one dtype and device to be compared; got %O on %O and %O on %O."
                        a.DType
                        a.Device
                        b.DType
                        b.Device
                )
            )
        use _ = torch.no_grad ()
        // Frees the per-row buffers and the running lists' last tensors once the results are read out.
        use _ = torch.NewDisposeScope()
        let running () = new RunningTop(k, v, a.DType, a.Device)
        use rises = running ()
        use falls = running ()
        use topBefore = running ()
        use topAfter = running ()
        let rowBuffers () =
            if perRow then
                Some(
                    torch.empty ([| v; int64 k |], dtype = torch.int64, device = a.Device),
                    torch.empty ([| v; int64 k; 3L |], dtype = torch.float64, device = a.Device)
                )
            else
                None
        let rowRises, rowFalls = rowBuffers (), rowBuffers ()
        Vocabulary.sweep a.Vocab options.BatchSize options.Progress options.Cancellation (fun start count ->
            let first = torch.arange (start, start + count, dtype = torch.int64, device = a.Device)
            let lpBefore = logProbabilities a readout options.DropDiagonal first
            let lpAfter = logProbabilities b readout options.DropDiagonal first
            topBefore.Add(lpBefore, first)
            topAfter.Add(lpAfter, first)
            let sBefore, sAfter = scoreIn space lpBefore, scoreIn space lpAfter
            let change = sAfter - sBefore
            // The diagonal, when dropped, is −∞ − (−∞) = NaN: keep it out of both rankings.
            let excluded (t: Tensor) =
                if options.DropDiagonal then
                    Vocabulary.dropDiagonal first t
                else
                    t
            let up = excluded (change.clone ())
            let down = excluded (change.neg ())
            rises.Add(up, first)
            falls.Add(down, first)
            let keepRows (buffers: (Tensor * Tensor) option) (ranked: Tensor) =
                match buffers with
                | Some(ids, values) ->
                    let struct (_, indices) = ranked.topk (k, dim = 1)
                    ids.narrow(0L, start, count).copy_ indices |> ignore
                    let triple =
                        torch.stack (
                            [|
                                sBefore.gather (1L, indices)
                                sAfter.gather (1L, indices)
                                change.gather (1L, indices)
                            |],
                            2L
                        )
                    values.narrow(0L, start, count).copy_ triple |> ignore
                | None -> ()
            keepRows rowRises up
            keepRows rowFalls down)
        let changes (top: RunningTop) (sign: float) =
            let pairs = top.Pairs()
            let keys = pairs |> Array.map (fun (z1, z2, _) -> z1, z2)
            let beforeScores = scoresOf a readout space options.DropDiagonal keys
            let afterScores = scoresOf b readout space options.DropDiagonal keys
            pairs
            |> Array.map (fun (z1, z2, s) ->
                {
                    From = z1
                    To = z2
                    Before = beforeScores.[(z1, z2)]
                    After = afterScores.[(z1, z2)]
                    Change = sign * s
                })
        let rowChanges (buffers: (Tensor * Tensor) option) =
            match buffers with
            | None -> [||]
            | Some(ids, values) ->
                let ids = ids.cpu().data<int64>().ToArray()
                let values = values.cpu().data<float>().ToArray()
                Array.init ids.Length (fun i ->
                    {
                        From = i / k
                        To = int ids.[i]
                        Before = values.[3 * i]
                        After = values.[3 * i + 1]
                        Change = values.[3 * i + 2]
                    })
        let top (running: RunningTop) =
            running.Pairs() |> Array.map (fun (z1, z2, s) -> { From = z1; To = z2; Score = exp s })
        let topA, topB = top topBefore, top topAfter
        let inA = topA |> Array.map (fun p -> p.From, p.To) |> Set.ofArray
        {
            Space = space
            Rises = changes rises 1.0
            Falls = changes falls -1.0
            RowRises = rowChanges rowRises
            RowFalls = rowChanges rowFalls
            TopBefore = topA
            TopAfter = topB
            Overlap = topB |> Array.filter (fun p -> inA.Contains(p.From, p.To)) |> Array.length
        }

    /// Pair changes with readable tokens.
    [<CompiledName("Decode")>]
    let decode (tokenizer: ITokenizer) (changes: PairChange seq) : PairChangeRow[] =
        [|
            for c in changes ->
                {
                    From = c.From
                    To = c.To
                    FromToken = LogitMetrics.piece tokenizer c.From
                    ToToken = LogitMetrics.piece tokenizer c.To
                    Before = c.Before
                    After = c.After
                    Change = c.Change
                }
        |]
