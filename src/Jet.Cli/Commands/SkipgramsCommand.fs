/// `jet skipgrams`: the skip-gram tables of attention heads (U·LN_f(OVₗ,ₕ(Emb))), or a ranking of heads by copying.
module Jet.Cli.Commands.SkipgramsCommand

open System
open System.IO
open Argu
open Jet.Core
open Jet.Core.Apps
open Jet.Core.Models
open Jet.Core.Pictures
open Jet.Cli
open Jet.Cli.Console

type Args =
    | [<Mandatory>] Model of dir: string
    | Layer of layer: int
    | Head of head: int
    | Top of n: int
    | Global
    | Global_Top of n: int
    | Prob
    | Logit
    | [<AltCommandLine("--drop-diagonal")>] No_Diagonal
    | Rank
    | Tokens of set: string
    | Batch_Size of rows: int
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
            | Layer _ ->
                "the residual layer whose attention heads to sweep, by number as jet info lists it (with --rank: rank this layer's heads only)."
            | Head _ -> "one head of the layer, from 1 (default: every head)."
            | Top _ -> "the N best next tokens per token, or with --global the N best pairs of each head (default: 10)."
            | Global -> "rank all pairs of each head together instead of per first token."
            | Global_Top _ -> "the N best pairs of each head (--global --top N)."
            | Prob -> "score by next-token probability (the default)."
            | Logit -> "score by logit."
            | No_Diagonal -> "leave out the pairs (z, z)."
            | Rank ->
                "rank every head of every attention layer by copying, mean P(z | z), and by the mass it gives the --tokens set; --out draws a layers × heads heatmap."
            | Tokens _ ->
                "with --rank: the token set, all, an id range A..B, or a file with one token per line (default: all)."
            | Batch_Size _ ->
                "first tokens per batch of the vocabulary sweep, ≥ 1 and within the memory available (default: 512)."
            | Out _ -> "write the table (first head) or the --rank heatmap as a picture (.png or .svg)."
            | Dtype _ -> ModelArgs.dtypeUsage
            | Compute_Dtype _ -> ModelArgs.computeDtypeUsage
            | Device _ -> ModelArgs.deviceUsage
            | Allow_Nonfinite -> allowNonFiniteUsage
            | Json -> "print one JSON object instead of tables."
            | Shard _ -> Sharding.shardUsage + " Not with --rank."
            | Shard_Dir _ -> Sharding.shardDirUsage

/// A token set from the command line: `all` (None), an id range `A..B` (inclusive), or a file of tokens, one per line
/// as tables print them (`Vocabulary.tokenSet`).
let readTokenSet (option: string) (tokenizer: ITokenizer) (vocab: int) (text: string) : int[] option =
    let text = text.Trim()
    let range = text.Split("..")
    if text.ToLowerInvariant() = "all" then
        None
    elif range.Length = 2 && fst (Int32.TryParse range.[0]) && fst (Int32.TryParse range.[1]) then
        let a, b = Int32.Parse range.[0], Int32.Parse range.[1]
        if a < 0 || b >= vocab || a > b then
            raise (
                IndexRangeException(
                    sprintf
                        "%s %s is not an id range of this vocabulary; write A..B with 0 ≤ A ≤ B ≤ %d."
                        option
                        text
                        (vocab - 1)
                )
            )
        Some [| a..b |]
    else
        let file = requireFile option text
        Some(Vocabulary.tokenSet tokenizer vocab file (File.ReadLines file))

let private rank (args: ParseResults<Args>) (request: ModelArgs.ModelRequest) (model: Model) (out: string option) =
    let net = model.Net
    let set = args.TryGetResult Tokens |> Option.bind (readTokenSet "--tokens" model.Tokenizer net.Vocab)
    let layers = args.TryGetResult Layer |> Option.toArray
    let count =
        if layers.Length = 0 then
            (SkipGrams.attentionLayers net).Length
        else
            1
    let options =
        BigramsCommand.sweepOptions
            ScoreSpace.Probability
            false
            (args.GetResult(Batch_Size, SweepOptions.Default.BatchSize))
            "rank heads"
            (int64 count * int64 (set |> Option.map Array.length |> Option.defaultValue net.Vocab))
    let scores = SkipGrams.rank net layers (Option.toObj set) options
    let setName =
        match set with
        | Some s -> sprintf "a set of %d tokens" s.Length
        | None -> "the whole vocabulary"
    let layerName (l: int) = net.Spec.Layers.[l - 1].Name
    savePicture out (fun () ->
        HeadHeatmap.ofScores
            ("Copying by head: mean P(z | z) through U·LN(OVₗ,ₕ(Emb)), " + ModelArgs.displayName model.Source)
            (sprintf "over %s; rows are layers, columns heads" setName)
            layerName
            (fun s -> s.Copying)
            scores)
    let nonFinite = NonFiniteChecks.headScores scores
    if args.Contains Json then
        writeJson
            {|
                tokens = setName
                heads =
                    [|
                        for s in scores ->
                            {|
                                layer = s.Layer
                                name = layerName s.Layer
                                head = s.Head
                                copying = s.Copying
                                set_mass = s.SetMass
                            |}
                    |]
                non_finite = nonFiniteJson nonFinite
            |}
    else
        printfn "Heads by copying, mean P(z | z) over %s (set mass: mean P(next ∈ set | z)):" setName
        printTable
            [ "layer"; "head"; "path"; "copying"; "set mass" ]
            [
                for s in scores |> Array.sortByDescending (fun s -> s.Copying) ->
                    [
                        layerName s.Layer
                        string s.Head
                        Print.step (PathStep.Head(s.Layer, s.Head))
                        sprintf "%.4f" s.Copying
                        sprintf "%.4f" s.SetMass
                    ]
            ]
    finish request.AllowNonFinite nonFinite

/// Prints a skip-gram sweep's result (whole, or merged from shards; one part per head, named `head H`) as tables or
/// JSON, after `draw` gets the first head's rows; returns the exit code.
let render
    (json: bool)
    (allowNonFinite: bool)
    (tokenizer: ITokenizer)
    (draw: BigramRow[] -> unit)
    (result: ShardResult)
    : int =
    let setting = Sharding.setting result
    let layer = int (setting "layer")
    let space = BigramsCommand.spaceOfName (setting "space")
    let isGlobal = setting "global" = string true
    let headOf (name: string) =
        match name.Split ' ' with
        | [| "head"; h |] when fst (Int32.TryParse h) -> Int32.Parse h
        | _ ->
            raise (
                ShardException(
                    sprintf
                        "The skipgrams shards hold a part %s, not a head; they were written by another version."
                        name
                )
            )
    let decoded =
        [|
            for name, part in result.Parts ->
                let pairs =
                    match part with
                    | SweepPart.Rows(k, ids, scores) -> Bigrams.pairsOfRows result.Manifest.Rows.Start k ids scores
                    | SweepPart.Candidates(_, c) -> Bigrams.pairsOfCandidates result.Manifest.Vocab c
                    | SweepPart.Sums _ ->
                        raise (
                            ShardException
                                "The skipgrams shards hold sums, not top-k parts; they were written by another version."
                        )
                let h = headOf name
                h, setting (sprintf "described %d" h), Bigrams.decode tokenizer pairs
        |]
    let nonFinite = NonFinite.first [ for _, _, rows in decoded -> fun () -> NonFiniteChecks.bigrams rows ]
    if decoded.Length > 0 then
        let _, _, rows = decoded.[0]
        draw rows
    if json then
        writeJson
            {|
                layer = layer
                space = BigramsCommand.spaceName space
                ``global`` = isGlobal
                heads =
                    [|
                        for h, _, rows in decoded ->
                            {|
                                head = h
                                path = string (SkipGrams.readout layer h)
                                rows =
                                    [|
                                        for r in rows ->
                                            {|
                                                from = r.From
                                                ``to`` = r.To
                                                from_token = r.FromToken
                                                to_token = r.ToToken
                                                score = r.Score
                                            |}
                                    |]
                            |}
                    |]
                non_finite = nonFiniteJson nonFinite
            |}
    else
        let format = BigramsCommand.scoreText space
        for _, described, rows in decoded do
            printfn "%s:" described
            printTable
                [
                    "token"
                    "next token"
                    (if space = ScoreSpace.Probability then
                         "P(next | token earlier)"
                     else
                         "logit")
                ]
                [ for r in rows -> [ r.FromToken; r.ToToken; format r.Score ] ]
            printfn ""
    finish allowNonFinite nonFinite

let private execute (args: ParseResults<Args>) =
    let out = checkOutputs "--out" (args.TryGetResult Out)
    let shard = Sharding.request (args.TryGetResult Shard) (args.TryGetResult Shard_Dir)
    if shard.IsSome && args.Contains Rank then
        raise (
            InvalidPlanException
                "--shard does not apply to --rank, which sweeps every attention layer once; run the ranking whole."
        )
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
    if args.Contains Rank then
        rank args request model out
    else
        if args.Contains Tokens then
            raise (InvalidPlanException "--tokens names the set --rank measures; give --rank with it.")
        let layer =
            match args.TryGetResult Layer with
            | Some l -> l
            | None ->
                let valid = SkipGrams.attentionLayers net |> Array.map string |> String.concat ", "
                raise (
                    MissingArgumentException(
                        sprintf "Give --layer L, a residual layer with attention (here: %s), or --rank." valid
                    )
                )
        let heads =
            match args.TryGetResult Head with
            | Some h -> [| h |]
            | None when layer >= 1 && layer <= net.Depth -> [| 1 .. max 1 (AttentionHeads.headCount net layer) |]
            | None -> [| 1 |]
        // The path check names valid layers and heads in its messages.
        for h in heads do
            Readouts.check net (SkipGrams.readout layer h)
        let batchSize = args.GetResult(Batch_Size, SweepOptions.Default.BatchSize)
        let settings =
            Map(
                [
                    "layer", string layer
                    "heads", heads |> Array.map string |> String.concat ","
                    "space", BigramsCommand.spaceName space
                    "global", string isGlobal
                    "top", string n
                    "no_diagonal", string (args.Contains No_Diagonal)
                    "dtype", string net.DType
                ]
                @ [ for h in heads -> sprintf "described %d" h, Readouts.describe net (SkipGrams.readout layer h) ]
            )
        let compute (rows: RowRange option) =
            let range = Vocabulary.checkRows net.Vocab rows
            let options =
                { BigramsCommand.sweepOptions
                      space
                      (args.Contains No_Diagonal)
                      batchSize
                      (sprintf "skip-grams of layer %d" layer)
                      (int64 range.Count) with
                    Rows = rows
                }
            if isGlobal then
                [
                    for c in SkipGrams.globalCandidates net layer heads n options ->
                        sprintf "head %d" c.Head, SweepPart.Candidates(n, c.Candidates)
                ]
            else
                [
                    for best in SkipGrams.rowTopK net layer heads n options ->
                        use best = best
                        let ids, scores = Bigrams.rowArrays best.Best
                        sprintf "head %d" best.Head, SweepPart.Rows(n, ids, scores)
                ]
        let draw (rows: BigramRow[]) =
            savePicture out (fun () ->
                Figures.bigrams
                    ("Jet skip-grams: " + Readouts.describe net (SkipGrams.readout layer heads.[0]))
                    (Readings.describeTable isGlobal n space (args.Contains No_Diagonal))
                    space
                    40
                    rows)
        Sharding.run
            shard
            "skipgrams"
            model
            settings
            batchSize
            compute
            (render (args.Contains Json) request.AllowNonFinite model.Tokenizer draw)

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
