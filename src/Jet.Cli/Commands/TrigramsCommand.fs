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

let private execute (args: ParseResults<Args>) =
    let out = checkOutputs "--out" (args.TryGetResult Out)
    if args.Contains Prob && args.Contains Logit then
        raise (InvalidPlanException "--prob and --logit exclude each other; give one.")
    if args.Contains Global_Top && args.Contains Top then
        raise (InvalidPlanException "--global-top N is --global --top N; give one of them.")
    let request =
        ModelArgs.read args <@ Model @> <@ Dtype @> <@ Compute_Dtype @> <@ Device @> <@ Allow_Nonfinite @>
    use model = ModelArgs.load request
    let net = model.Net
    let path = Readouts.parse net (args.GetResult Path)
    Trigrams.check net path |> ignore
    let set option (arg: string option) =
        arg |> Option.bind (SkipgramsCommand.readTokenSet option model.Tokenizer net.Vocab) |> Option.toObj
    let first = set "--first" (args.TryGetResult First)
    let second = set "--second" (args.TryGetResult Second)
    let space =
        if args.Contains Logit then
            ScoreSpace.Logit
        else
            ScoreSpace.Probability
    let isGlobal = args.Contains Global || args.Contains Global_Top
    let n =
        match args.TryGetResult Global_Top with
        | Some n -> n
        | None -> args.GetResult(Top, 10)
    let firstCount = if isNull first then net.Vocab else first.Length
    let options =
        BigramsCommand.sweepOptions
            space
            false
            (args.GetResult(Batch_Size, SweepOptions.Default.BatchSize))
            (sprintf "trigrams %s" (args.GetResult Path))
            (int64 firstCount)
    let triples =
        if isGlobal then
            Trigrams.globalTopK net path first second n options
        else
            use best = Trigrams.rowTopK net path first second n options
            Trigrams.triplesOf best
    let piece = LogitMetrics.piece model.Tokenizer
    let nonFinite = NonFiniteChecks.triples triples
    let described = Readouts.describe net path
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
        Figures.bigrams ("Jet trigrams: " + described) (Readings.describeTable isGlobal n space false) space 40 rows)
    if args.Contains Json then
        writeJson
            {|
                path = string path
                space = (if space = ScoreSpace.Logit then "logit" else "probability")
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
        let format (s: float) =
            match space with
            | ScoreSpace.Probability -> sprintf "%.3f%%" (100.0 * s)
            | ScoreSpace.Logit -> sprintf "%.4f" s
        printfn "%s:" described
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
    finish request.AllowNonFinite nonFinite

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
