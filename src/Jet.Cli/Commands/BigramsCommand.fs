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
    | Top of n: int
    | Global
    | Prob
    | Logit
    | No_Diagonal
    | Batch_Size of rows: int
    | Out of file: string
    | Dtype of name: string
    | Device of name: string
    | Allow_Nonfinite
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> ModelArgs.modelUsage
            | Path _ -> "embed (embedding → decoder) or mlp:B (embedding → MLP of block B, 1-based → decoder)."
            | Top _ -> "the N best next tokens per token, or with --global the N best pairs (default: 10)."
            | Global -> "rank all pairs together instead of per first token."
            | Prob -> "score by next-token probability (the default)."
            | Logit -> "score by logit."
            | No_Diagonal -> "leave out the pairs (z, z)."
            | Batch_Size _ ->
                "first tokens per batch of the vocabulary sweep, ≥ 1 and within the memory available (default: 512)."
            | Out _ -> "write the bigram table picture (.png or .svg; at most 40 rows)."
            | Dtype _ -> ModelArgs.dtypeUsage
            | Device _ -> ModelArgs.deviceUsage
            | Allow_Nonfinite -> allowNonFiniteUsage
            | Json -> "print one JSON object instead of a table."

/// The sweep options the flags ask for, with a progress bar on stderr that ends at `total` first tokens.
let sweepOptions (space: ScoreSpace) (dropDiagonal: bool) (batch: int) (label: string) (total: int64) =
    { SweepOptions.Default with
        Space = space
        DropDiagonal = dropDiagonal
        BatchSize = batch
        Progress = Some(ProgressBar(label, total) :> IProgress<int64>)
    }

let private execute (args: ParseResults<Args>) =
    let out = checkOutputs "--out" (args.TryGetResult Out)
    let path = Bigrams.parsePath (args.GetResult Path)
    if args.Contains Prob && args.Contains Logit then
        raise (InvalidPlanException "--prob and --logit exclude each other; give one.")
    let space =
        if args.Contains Logit then
            ScoreSpace.Logit
        else
            ScoreSpace.Probability
    let request = ModelArgs.read args <@ Model @> <@ Dtype @> <@ Device @> <@ Allow_Nonfinite @>
    use model = ModelArgs.load request
    let n = args.GetResult(Top, 10)
    Bigrams.pathFunction model.Net path |> ignore
    let options =
        sweepOptions
            space
            (args.Contains No_Diagonal)
            (args.GetResult(Batch_Size, SweepOptions.Default.BatchSize))
            (sprintf "bigrams %O" path)
            (int64 model.Net.Vocab)
    let isGlobal = args.Contains Global
    let pairs =
        if isGlobal then
            Bigrams.globalTopK model.Net path n options
        else
            use best = Bigrams.rowTopK model.Net path n options
            Bigrams.pairsOf best
    let rows = Bigrams.decode model.Tokenizer pairs
    let nonFinite = NonFiniteChecks.bigrams rows
    let spaceName =
        match space with
        | ScoreSpace.Probability -> "probability"
        | ScoreSpace.Logit -> "logit"
    savePicture out (fun () -> Figures.bigramTable path isGlobal n space (args.Contains No_Diagonal) 40 rows)
    if args.Contains Json then
        writeJson
            {|
                path = string path
                space = spaceName
                ``global`` = isGlobal
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
                non_finite = nonFiniteJson nonFinite
            |}
    else
        let format (s: float) =
            match space with
            | ScoreSpace.Probability -> sprintf "%.3f%%" (100.0 * s)
            | ScoreSpace.Logit -> sprintf "%.4f" s
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
    finish request.AllowNonFinite nonFinite

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
