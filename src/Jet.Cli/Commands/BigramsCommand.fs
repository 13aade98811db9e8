/// `jet bigrams`: the jet bigrams of a path over the whole vocabulary (row or global top-k).
module Jet.Cli.Commands.BigramsCommand

open System
open Argu
open Jet.Core
open Jet.Core.Apps
open Jet.Core.Pictures
open Jet.Cli
open Jet.Cli.Console

type Args =
    | [<Mandatory>] Model of dir: string
    | [<Mandatory>] Path of path: string
    | Compare of dir: string
    | Log_Prob
    | Top of n: int
    | Global
    | Prob
    | Logit
    | No_Diagonal
    | Batch_Size of rows: int
    | Out of file: string
    | Dtype of name: string
    | Compute_Dtype of name: string
    | Device of name: string
    | Allow_Nonfinite
    | Json
    | Shard of spec: string
    | Shard_Dir of dir: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> ModelArgs.modelUsage
            | Path _ ->
                "the path to sweep, SOURCE>STEP>…: emb or enc, then residual layers by name as jet info lists them, for example 'emb>attn2>mlp3' (quote it: > redirects in a shell); embed and mlp:B are shorthands."
            | Compare _ ->
                "a second checkpoint with the same tokenizer (for example a fine-tune): list the pairs whose probability rose and fell most, and the overlap of the two global top-N lists."
            | Log_Prob -> "with --compare: measure changes in log-probability instead of probability."
            | Top _ -> "the N best next tokens per token, or with --global the N best pairs (default: 10)."
            | Global -> "rank all pairs together instead of per first token."
            | Prob -> "score by next-token probability (the default)."
            | Logit -> "score by logit."
            | No_Diagonal -> "leave out the pairs (z, z)."
            | Batch_Size _ ->
                "first tokens per batch of the vocabulary sweep, ≥ 1 and within the memory available (default: 512)."
            | Out _ ->
                "write the bigram table picture, or with --compare the risers and fallers chart (.png or .svg; at most 40 rows)."
            | Dtype _ -> ModelArgs.dtypeUsage
            | Compute_Dtype _ -> ModelArgs.computeDtypeUsage
            | Device _ -> ModelArgs.deviceUsage
            | Allow_Nonfinite -> allowNonFiniteUsage
            | Json -> "print one JSON object instead of a table."
            | Shard _ -> Sharding.shardUsage
            | Shard_Dir _ -> Sharding.shardDirUsage

/// A sweep score as tables print it: a percentage for probabilities, four decimals for logits.
let scoreText (space: ScoreSpace) (s: float) =
    match space with
    | ScoreSpace.Probability -> sprintf "%.3f%%" (100.0 * s)
    | ScoreSpace.Logit -> sprintf "%.4f" s

/// The sweep options the flags ask for, with a progress bar on stderr that ends at `total` first tokens.
let sweepOptions (space: ScoreSpace) (dropDiagonal: bool) (batch: int) (label: string) (total: int64) =
    { SweepOptions.Default with
        Space = space
        DropDiagonal = dropDiagonal
        BatchSize = batch
        Progress = Some(ProgressBar(label, total) :> IProgress<int64>)
    }

/// A score space's name in JSON and shard manifests.
let spaceName (space: ScoreSpace) =
    match space with
    | ScoreSpace.Probability -> "probability"
    | ScoreSpace.Logit -> "logit"

/// The score space `spaceName` wrote.
let spaceOfName (name: string) =
    if name = spaceName ScoreSpace.Logit then
        ScoreSpace.Logit
    else
        ScoreSpace.Probability

/// The score space `--prob` / `--logit` ask for (probability by default); both at once is an error.
let scoreSpace (prob: bool) (logit: bool) =
    if prob && logit then
        raise (InvalidPlanException "--prob and --logit exclude each other; give one.")
    if logit then ScoreSpace.Logit else ScoreSpace.Probability

/// Whether a sweep ranks globally and how many it keeps, from `--global`, `--global-top N` (= --global --top N) and
/// `--top N` (10 by default); --global-top with --top is an error.
let topRequest (isGlobal: bool) (globalTop: int option) (top: int option) =
    match globalTop, top with
    | Some _, Some _ -> raise (InvalidPlanException "--global-top N is --global --top N; give one of them.")
    | Some n, None -> true, n
    | None, top -> isGlobal, defaultArg top 10

let private pairJson (rows: BigramRow seq) =
    [|
        for r in rows ->
            {| from = r.From; ``to`` = r.To; from_token = r.FromToken; to_token = r.ToToken; score = r.Score |}
    |]

let private changeJson (rows: PairChangeRow seq) =
    [|
        for r in rows ->
            {|
                from = r.From
                ``to`` = r.To
                from_token = r.FromToken
                to_token = r.ToToken
                before = r.Before
                after = r.After
                change = r.Change
            |}
    |]

/// `--compare`: both models' rows streamed together; the biggest risers and fallers, and the top-N overlap.
let private compare
    (args: ParseResults<Args>)
    (request: ModelArgs.ModelRequest)
    (out: string option)
    (model: Models.Model)
    path
    (options: SweepOptions)
    =
    if args.Contains Logit then
        raise (
            InvalidPlanException
                "--logit does not apply to --compare (logits of two models are not on one scale); use --log-prob for log-probability changes."
        )
    use other = ModelArgs.load { request with Source = ModelArgs.source (args.GetResult Compare) }
    let space =
        if args.Contains Log_Prob then
            ChangeSpace.LogProbability
        else
            ChangeSpace.Probability
    let n = args.GetResult(Top, 10)
    let isGlobal = args.Contains Global
    let result = BigramComparison.compare model other path space n (not isGlobal) options
    let decode = BigramComparison.decode model.Tokenizer
    let rises, falls =
        if isGlobal then
            decode result.Rises, decode result.Falls
        else
            decode result.RowRises, decode result.RowFalls
    let described = Readouts.describe model.Net path
    let unit, scale =
        match space with
        | ChangeSpace.Probability -> "probability", 100.0
        | ChangeSpace.LogProbability -> "log-probability", 1.0
    savePicture out (fun () ->
        Figures.bigramChanges
            ("Jet bigrams, "
             + ModelArgs.displayName other.Source
             + " against "
             + ModelArgs.displayName model.Source
             + ": "
             + described)
            (sprintf "%s change, %s" unit (if isGlobal then "global" else "per first token"))
            space
            40
            (decode result.Rises)
            (decode result.Falls))
    let top (pairs: ScoredPair[]) = Bigrams.decode model.Tokenizer pairs |> pairJson
    let nonFinite = NonFiniteChecks.changes (Array.append rises falls)
    if args.Contains Json then
        writeJson
            {|
                path = string path
                before = model.Source
                after = other.Source
                space = unit
                ``global`` = isGlobal
                rises = changeJson rises
                falls = changeJson falls
                top_before = top result.TopBefore
                top_after = top result.TopAfter
                overlap = result.Overlap
                non_finite = nonFiniteJson nonFinite
            |}
    else
        let format (x: float) =
            match space with
            | ChangeSpace.Probability -> sprintf "%.3f%%" (100.0 * x)
            | ChangeSpace.LogProbability -> sprintf "%.4f" x
        let table (title: string) (rows: PairChangeRow[]) =
            printfn "%s" title
            printTable
                [ "token"; "next token"; "before"; "after"; "change" ]
                [
                    for r in rows ->
                        [
                            r.FromToken
                            r.ToToken
                            format r.Before
                            format r.After
                            (sprintf "%+.4f%s" (scale * r.Change) (if scale = 100.0 then " pp" else ""))
                        ]
                ]
            printfn ""
        printfn "before: %s; after: %s." model.Source other.Source
        printfn ""
        let scope = if isGlobal then "" else " per first token"
        table (sprintf "Rose most%s (%s, %s):" scope unit described) rises
        table (sprintf "Fell most%s (%s, %s):" scope unit described) falls
        printfn "Overlap of the two global top-%d lists: %d of %d pairs." n result.Overlap n
    finish request.AllowNonFinite nonFinite

/// Prints a bigrams sweep's result (whole, or merged from shards) as a table or JSON, after `draw` gets its rows; returns
/// the exit code.
let render
    (json: bool)
    (allowNonFinite: bool)
    (tokenizer: Models.ITokenizer)
    (draw: BigramRow[] -> unit)
    (result: ShardResult)
    : int =
    let setting = Sharding.setting result
    let space = spaceOfName (setting "space")
    let isGlobal = setting "global" = string true
    let pairs =
        match result.Parts with
        | [ _, SweepPart.Rows(k, ids, scores) ] -> Bigrams.pairsOfRows result.Manifest.Rows.Start k ids scores
        | [ _, SweepPart.Candidates(_, c) ] -> Bigrams.pairsOfCandidates result.Manifest.Vocab c
        | _ ->
            raise (
                ShardException "The bigrams shards hold parts of another kind; they were written by another version."
            )
    let rows = Bigrams.decode tokenizer pairs
    let nonFinite = NonFiniteChecks.bigrams rows
    draw rows
    if json then
        writeJson
            {|
                path = setting "path"
                space = spaceName space
                ``global`` = isGlobal
                rows = pairJson rows
                non_finite = nonFiniteJson nonFinite
            |}
    else
        let format = scoreText space
        printTable
            [
                "token"
                "next token"
                (if space = ScoreSpace.Probability then
                     "P(next | token)"
                 else
                     "logit")
            ]
            [ for r in rows -> [ r.FromToken; r.ToToken; format r.Score ] ]
    finish allowNonFinite nonFinite

let private execute (args: ParseResults<Args>) =
    let out = checkOutputs "--out" (args.TryGetResult Out)
    let shard = Sharding.request (args.TryGetResult Shard) (args.TryGetResult Shard_Dir)
    if shard.IsSome && args.Contains Compare then
        raise (InvalidPlanException "--shard does not apply to --compare yet; run the comparison whole.")
    if shard.IsSome && out.IsSome then
        raise (
            InvalidPlanException
                "--out draws the whole table, which one shard does not have; draw it from an unsharded run."
        )
    let space = scoreSpace (args.Contains Prob) (args.Contains Logit)
    if args.Contains Log_Prob && not (args.Contains Compare) then
        raise (InvalidPlanException "--log-prob measures changes between two models; give --compare DIR with it.")
    let request =
        ModelArgs.read args <@ Model @> <@ Dtype @> <@ Compute_Dtype @> <@ Device @> <@ Allow_Nonfinite @>
    use model = ModelArgs.load request
    let n = args.GetResult(Top, 10)
    let path = Readouts.parse model.Net (args.GetResult Path)
    let options =
        sweepOptions
            space
            (args.Contains No_Diagonal)
            (args.GetResult(Batch_Size, SweepOptions.Default.BatchSize))
            (sprintf "bigrams %s" (args.GetResult Path))
            (int64 model.Net.Vocab)
    if args.Contains Compare then
        compare args request out model path options
    else
        let isGlobal = args.Contains Global
        let settings =
            Map
                [
                    "path", string path
                    "described", Readouts.describe model.Net path
                    "space", spaceName space
                    "global", string isGlobal
                    "top", string n
                    "no_diagonal", string (args.Contains No_Diagonal)
                    "dtype", string model.Net.DType
                ]
        let compute (rows: RowRange option) =
            let range = Vocabulary.checkRows model.Net.Vocab rows
            let options =
                { sweepOptions
                      space
                      (args.Contains No_Diagonal)
                      options.BatchSize
                      (sprintf "bigrams %s" (args.GetResult Path))
                      (int64 range.Count) with
                    Rows = rows
                }
            if isGlobal then
                [ "global", SweepPart.Candidates(n, Bigrams.globalCandidates model.Net path n options) ]
            else
                use best = Bigrams.rowTopK model.Net path n options
                let ids, scores = Bigrams.rowArrays best
                [ "rows", SweepPart.Rows(n, ids, scores) ]
        let draw (rows: BigramRow[]) =
            savePicture out (fun () ->
                Figures.bigramTable
                    (Readouts.describe model.Net path)
                    isGlobal
                    n
                    space
                    (args.Contains No_Diagonal)
                    40
                    rows)
        Sharding.run
            shard
            "bigrams"
            model
            settings
            options.BatchSize
            compute
            (render (args.Contains Json) request.AllowNonFinite model.Tokenizer draw)

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
