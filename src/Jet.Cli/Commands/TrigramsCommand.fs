/// `jet trigrams`: the jet trigrams of a path with attention over a product of token sets (row or global top-k).
module Jet.Cli.Commands.TrigramsCommand

open Argu
open Jet.Core
open Jet.Core.Apps
open Jet.Core.Pictures
open Jet.Cli
open Jet.Cli.Console

type Args =
    | [<Mandatory>] Model of dir: string
    | [<Mandatory>] Path of path: string
    | First of set: string
    | Second of set: string
    | Top of n: int
    | Global
    | Global_Top of n: int
    | Prob
    | Logit
    | Batch_Size of pairs: int
    | [<AltCommandLine("--plot")>] Out of file: string
    | Dtype of name: string
    | Compute_Dtype of name: string
    | Device of name: string
    | Allow_Nonfinite
    | Json
    | Shard of shard: string
    | Shard_Dir of dir: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> ModelArgs.modelUsage
            | Path _ ->
                "the path, as jet bigrams reads it, with at least one attention step: for example 'emb>attn1>mlp1' or 'emb>attn2.h3' (quote it)."
            | First _ ->
                "the first tokens z₁: all, an id range A..B, or a file with one token per line (default: all; all × all only up to 2²⁴ pairs)."
            | Second _ -> "the second tokens z₂, as --first (default: all)."
            | Top _ -> "the N best next tokens per pair, or with --global the N best triples (default: 10)."
            | Global -> "rank all triples together instead of per pair."
            | Global_Top _ -> "the N best triples (--global --top N)."
            | Prob -> "score by next-token probability (the default)."
            | Logit -> "score by logit."
            | Batch_Size _ -> "pairs per batch of the sweep, ≥ 1 and within the memory available (default: 512)."
            | Out _ -> "write the table as a picture (.png or .svg; at most 40 rows)."
            | Dtype _ -> ModelArgs.dtypeUsage
            | Compute_Dtype _ -> ModelArgs.computeDtypeUsage
            | Device _ -> ModelArgs.deviceUsage
            | Allow_Nonfinite -> allowNonFiniteUsage
            | Json -> "print one JSON object instead of a table."
            | Shard _ -> Sharding.shardUsage + " Here the shards split the --first set."
            | Shard_Dir _ -> Sharding.shardDirUsage

/// A token set as runs of consecutive ids, "A..B" or "A", joined by commas: how a manifest records the sets.
let private encodeSet (set: int[]) =
    let runs = ResizeArray<int * int>()
    for t in set do
        match runs.Count with
        | n when n > 0 && snd runs.[n - 1] + 1 = t -> runs.[n - 1] <- (fst runs.[n - 1], t)
        | _ -> runs.Add((t, t))
    runs
    |> Seq.map (fun (a, b) -> if a = b then string a else sprintf "%d..%d" a b)
    |> String.concat ","

/// The set `encodeSet` wrote, in its order.
let private decodeSet (text: string) : int[] =
    if text = "" then
        [||]
    else
        [|
            for run in text.Split ',' do
                match run.Split ".." with
                | [| a; b |] -> yield! [| int a .. int b |]
                | _ -> int run
        |]

/// Prints a trigram sweep's result (whole, or merged from shards) as a table or JSON, after `draw` gets its triples;
/// returns the exit code. Row top-k results are one `SweepPart.Rows` whose row i holds the k best next tokens of every
/// pair (first.[i], z₂), z₂ in second-set order.
let render
    (json: bool)
    (allowNonFinite: bool)
    (tokenizer: Models.ITokenizer)
    (draw: ScoredTriple[] -> unit)
    (result: ShardResult)
    : int =
    let setting = Sharding.setting result
    let space = BigramsCommand.spaceOfName (setting "space")
    let isGlobal = setting "global" = string true
    let triples =
        match result.Parts with
        | [ _, SweepPart.Rows(_, ids, scores) ] ->
            let first = decodeSet (setting "first")
            let second = decodeSet (setting "second")
            Trigrams.triplesOfRows
                first.[result.Manifest.Rows.Start .. result.Manifest.Rows.Stop - 1]
                second
                (int (setting "top"))
                ids
                scores
        | [ _, SweepPart.Candidates(_, c) ] -> Trigrams.triplesOfCandidates (int (setting "vocab")) c
        | _ ->
            raise (
                ShardException "The trigrams shards hold parts of another kind; they were written by another version."
            )
    let piece = LogitMetrics.piece tokenizer
    let nonFinite = NonFiniteChecks.triples triples
    draw triples
    if json then
        writeJson
            {|
                path = setting "path"
                space = BigramsCommand.spaceName space
                ``global`` = isGlobal
                rows =
                    [|
                        for t in triples ->
                            {|
                                first = t.First
                                second = t.Second
                                next = t.Next
                                first_token = piece t.First
                                second_token = piece t.Second
                                next_token = piece t.Next
                                score = t.Score
                            |}
                    |]
                non_finite = nonFiniteJson nonFinite
            |}
    else
        let format = BigramsCommand.scoreText space
        printfn "%s:" (setting "described")
        printTable
            [
                "first"
                "second"
                "next token"
                (if space = ScoreSpace.Probability then
                     "P(next | first second)"
                 else
                     "logit")
            ]
            [ for t in triples -> [ piece t.First; piece t.Second; piece t.Next; format t.Score ] ]
    finish allowNonFinite nonFinite

let private execute (args: ParseResults<Args>) =
    let out = checkOutputs "--out" (args.TryGetResult Out)
    let shard = Sharding.request (args.TryGetResult Shard) (args.TryGetResult Shard_Dir)
    if shard.IsSome && out.IsSome then
        raise (
            InvalidPlanException
                "--out draws the whole table, which one shard does not have; draw it from an unsharded run."
        )
    let space = BigramsCommand.scoreSpace (args.Contains Prob) (args.Contains Logit)
    let isGlobal, n =
        BigramsCommand.topRequest (args.Contains Global) (args.TryGetResult Global_Top) (args.TryGetResult Top)
    let request =
        ModelArgs.read args <@ Model @> <@ Dtype @> <@ Compute_Dtype @> <@ Device @> <@ Allow_Nonfinite @>
    use model = ModelArgs.load request
    let net = model.Net
    let path = Readouts.parse net (args.GetResult Path)
    Trigrams.check net path |> ignore
    let set option (arg: string option) =
        arg |> Option.bind (SkipgramsCommand.readTokenSet option model.Tokenizer net.Vocab) |> Option.toObj
    let batchSize = args.GetResult(Batch_Size, SweepOptions.Default.BatchSize)
    let label = sprintf "trigrams %s" (args.GetResult Path)
    // The sets as swept (duplicates dropped, all × all checked against the pair limit): shards split the first set.
    let first, second =
        Trigrams.setsOf
            net
            path
            { SweepOptions.Default with BatchSize = batchSize; Space = space }
            (set "--first" (args.TryGetResult First))
            (set "--second" (args.TryGetResult Second))
    let described = Readouts.describe net path
    let settings =
        Map
            [
                "path", string path
                "described", described
                "space", BigramsCommand.spaceName space
                "global", string isGlobal
                "top", string n
                "dtype", string net.DType
                "vocab", string net.Vocab
                "batch_size", string batchSize
                "first", encodeSet first
                "second", encodeSet second
            ]
    let compute (rows: RowRange option) =
        let range = Vocabulary.checkRows first.Length rows
        let options =
            { BigramsCommand.sweepOptions space false batchSize label (int64 range.Count) with Rows = rows }
        if isGlobal then
            [ "global", SweepPart.Candidates(n, Trigrams.globalCandidates net path first second n options) ]
        else
            use best = Trigrams.rowTopK net path first second n options
            let ids, scores = Bigrams.rowArrays best.Best
            [ "rows", SweepPart.Rows(n * second.Length, ids, scores) ]
    let draw (triples: ScoredTriple[]) =
        let piece = LogitMetrics.piece model.Tokenizer
        savePicture out (fun () ->
            let rows =
                [
                    for t in triples ->
                        {
                            From = t.First
                            To = t.Next
                            FromToken = piece t.First + " " + piece t.Second
                            ToToken = piece t.Next
                            Score = t.Score
                        }
                ]
            Figures.bigrams
                ("Jet trigrams: " + described)
                (Readings.describeTable isGlobal n space false)
                space
                40
                rows)
    Sharding.runRows
        shard
        "trigrams"
        model
        settings
        first.Length
        (Trigrams.firstTokensPerBatch second.Length batchSize)
        compute
        (render (args.Contains Json) request.AllowNonFinite model.Tokenizer draw)

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
