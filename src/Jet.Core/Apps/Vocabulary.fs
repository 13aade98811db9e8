namespace Jet.Core.Apps

open System
open System.Collections.Generic
open System.Threading
open TorchSharp
open Jet.Core
open Jet.Core.Models

/// A token text that the tokenizer does not know as a single token.
type UnknownTokenException(message: string) =
    inherit JetException(message)

/// A contiguous range of first tokens, Start..Stop−1: the part of a vocabulary sweep one shard covers.
type RowRange =
    {
        Start: int
        /// One past the last first token.
        Stop: int
    }

    /// How many first tokens the range holds.
    member r.Count = r.Stop - r.Start

/// Streaming over the whole vocabulary in batches, and naming sets of tokens.
[<RequireQualifiedAccess>]
module Vocabulary =

    /// The first tokens a sweep covers: `rows` when given (checked to lie in 0..vocab), else the whole vocabulary.
    [<CompiledName("CheckRows")>]
    let checkRows (vocab: int) (rows: RowRange option) : RowRange =
        match rows with
        | None -> { Start = 0; Stop = vocab }
        | Some r when r.Start < 0 || r.Start > r.Stop || r.Stop > vocab ->
            raise (
                IndexRangeException(
                    sprintf
                        "The first-token range %d..%d is not inside the vocabulary; give 0 ≤ start ≤ stop ≤ %d."
                        r.Start
                        r.Stop
                        vocab
                )
            )
        | Some r -> r

    /// Calls `body start count` for consecutive batches covering ids rows.Start..rows.Stop−1, batches starting at
    /// rows.Start. Each call runs in its own dispose scope (tensors it does not move out are freed before the next
    /// batch), progress is reported in ids of the range done, and cancellation is checked before every batch.
    [<CompiledName("SweepRows")>]
    let sweepRows
        (rows: RowRange)
        (batchSize: int)
        (progress: IProgress<int64> option)
        (cancellation: CancellationToken)
        (body: int64 -> int64 -> unit)
        =
        if batchSize < 1 then
            raise (InvalidPlanException(sprintf "The batch size must be ≥ 1; got %d." batchSize))
        Native.ensure ()
        let stop = int64 rows.Stop
        let mutable start = int64 rows.Start
        while start < stop do
            cancellation.ThrowIfCancellationRequested()
            let count = min (int64 batchSize) (stop - start)
            do
                use _ = torch.NewDisposeScope()
                body start count
            start <- start + count
            progress |> Option.iter (fun p -> p.Report(start - int64 rows.Start))

    /// Calls `body start count` for consecutive batches covering ids 0..total−1 (`sweepRows` over the whole range).
    [<CompiledName("Sweep")>]
    let sweep
        (total: int)
        (batchSize: int)
        (progress: IProgress<int64> option)
        (cancellation: CancellationToken)
        (body: int64 -> int64 -> unit)
        =
        sweepRows { Start = 0; Stop = total } batchSize progress cancellation body

    /// The sum of per-batch sums in batch order: one order of additions, so a sweep and the merge of its shards
    /// (which concatenate their batches' sums) give the same bits.
    [<CompiledName("Total")>]
    let total (sums: float seq) : float = Seq.fold (+) 0.0 sums

    /// Sets each row's diagonal entry to −∞ in place: rows [B, V] of first tokens `first` [B] lose the pair (z, z), as
    /// sweeps that drop the diagonal need. Returns `rows`.
    [<CompiledName("DropDiagonal")>]
    let dropDiagonal (first: Tensor) (rows: Tensor) : Tensor =
        let column = first.unsqueeze 1L
        let minusInfinity =
            torch.full (column.shape, scalar Double.NegativeInfinity, dtype = rows.dtype, device = rows.device)
        rows.scatter_ (1L, column, minusInfinity)

    /// Fails unless `tokenSet` is a non-empty set of ids in 0..vocab−1 (the sets mass sweeps count).
    [<CompiledName("CheckTokenSet")>]
    let checkTokenSet (vocab: int) (tokenSet: int[]) =
        if isNull tokenSet || tokenSet.Length = 0 then
            raise (MissingArgumentException "The token set is empty; give at least one token id.")
        for id in tokenSet do
            if id < 0 || id >= vocab then
                raise (
                    IndexRangeException(
                        sprintf "Token id %d is outside the vocabulary; valid ids are 0..%d." id (vocab - 1)
                    )
                )

    /// The token ids named by lines of text, one token per line as tables print it (`LogitMetrics.piece`, for
    /// example "␣" for the toy's space), or as text that encodes to exactly that one token and decodes back.
    /// Empty lines are skipped; duplicates count once. `source` names the lines' origin in error messages.
    [<CompiledName("TokenSet")>]
    let tokenSet (tokenizer: ITokenizer) (vocab: int) (source: string) (lines: string seq) : int[] =
        let pieces = Dictionary<string, int>()
        for id in 0 .. vocab - 1 do
            let p = LogitMetrics.piece tokenizer id
            if not (pieces.ContainsKey p) then
                pieces.[p] <- id
        let resolve (number: int) (line: string) =
            match pieces.TryGetValue line with
            | true, id -> id
            | _ ->
                let encoded =
                    try
                        tokenizer.Encode line
                    with :? JetException ->
                        [||]
                match encoded with
                | [| id |] when
                    id >= 0
                    && id < vocab
                    && (try
                            tokenizer.Decode [| id |] = line
                        with :? JetException ->
                            false)
                    ->
                    id
                | _ ->
                    let message =
                        sprintf
                            "Line %d of %s, %A, is not a token of this vocabulary (it is not a token's printed form, nor text that encodes to one token and decodes back); write one token per line as the tables print it, for example %A."
                            number
                            source
                            line
                            (LogitMetrics.piece tokenizer 0)
                    raise (UnknownTokenException message)
        let ids =
            lines
            |> Seq.mapi (fun i line -> i + 1, line.TrimEnd('\r'))
            |> Seq.filter (fun (_, line) -> line <> "")
            |> Seq.map (fun (n, line) -> resolve n line)
            |> Seq.distinct
            |> Array.ofSeq
        if ids.Length = 0 then
            raise (MissingArgumentException(sprintf "%s names no tokens; write one token per line." source))
        ids
