/// `jet mass`: the n-gram mass of a token set under a bigram path, for one model or two side by side.
module Jet.Cli.Commands.MassCommand

open System.IO
open Argu
open Jet.Core
open Jet.Core.Apps
open Jet.Cli
open Jet.Cli.Console

type Args =
    | [<Mandatory>] Model of dir: string
    | Compare of dir: string
    | [<Mandatory>] Tokens of file: string
    | [<Mandatory>] Path of path: string
    | No_Diagonal
    | Batch_Size of rows: int
    | Dtype of name: string
    | Device of name: string
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> ModelArgs.modelUsage
            | Compare _ ->
                "a second model to measure beside the first (for example a fine-tune of it), in the same dtype and on the same device."
            | Tokens _ ->
                "a file with one token per line, written as tables print it (for example ␣ for the toy's space)."
            | Path _ -> "the path, as jet bigrams reads it: for example embed, mlp:1 or 'emb>attn1>mlp2'."
            | No_Diagonal -> "renormalise each row over next tokens different from the first."
            | Batch_Size _ -> "first tokens per batch of the vocabulary sweep (default: 512)."
            | Dtype _ -> ModelArgs.dtypeUsage
            | Device _ -> ModelArgs.deviceUsage
            | Json -> "print one JSON object instead of lines."

let private execute (args: ParseResults<Args>) =
    let file = args.GetResult Tokens
    if not (File.Exists file) then
        raise (
            MissingArgumentException(
                sprintf "The token file %s does not exist; give a file with one token per line." file
            )
        )
    let request = ModelArgs.read args <@ Model @> <@ Dtype @> <@ Device @>
    let compared =
        args.TryGetResult Compare |> Option.map (fun dir -> { request with Source = ModelArgs.source dir })
    let models =
        [ yield ModelArgs.load request; yield! compared |> Option.map ModelArgs.load |> Option.toList ]
    use _ =
        { new System.IDisposable with
            member _.Dispose() =
                for m in models do
                    m.Dispose()
        }
    let total = models |> List.sumBy (fun m -> int64 m.Net.Vocab)
    let batch = args.GetResult(Batch_Size, SweepOptions.Default.BatchSize)
    let options =
        BigramsCommand.sweepOptions ScoreSpace.Probability (args.Contains No_Diagonal) batch "mass" total
    let path = Readouts.parse models.Head.Net (args.GetResult Path)
    let masses = Bigrams.massOfModels path file (File.ReadLines file) options models
    if args.Contains Json then
        writeJson
            {|
                path = string path
                models = [| for m in masses -> {| model = m.Model; tokens = m.Tokens; mass = m.Mass |} |]
            |}
    else
        for m in masses do
            printfn
                "%s: mass %.6f of %d tokens under %O (mean over first tokens of Σ P(next ∈ S | token))"
                m.Model
                m.Mass
                m.Tokens
                path
    0

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
