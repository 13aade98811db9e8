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
    | Allow_Nonfinite
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> ModelArgs.modelUsage
            | Compare _ ->
                "a second model to measure beside the first (for example a fine-tune of it), in the same dtype and on the same device."
            | Tokens _ ->
                "a file with one token per line, written as tables print it (for example ␣ for the toy's space)."
            | Path _ -> "embed or mlp:B (B a 1-based block number)."
            | No_Diagonal -> "renormalise each row over next tokens different from the first."
            | Batch_Size _ ->
                "first tokens per batch of the vocabulary sweep, ≥ 1 and within the memory available (default: 512)."
            | Dtype _ -> ModelArgs.dtypeUsage
            | Device _ -> ModelArgs.deviceUsage
            | Allow_Nonfinite -> allowNonFiniteUsage
            | Json -> "print one JSON object instead of lines."

let private execute (args: ParseResults<Args>) =
    let path = Bigrams.parsePath (args.GetResult Path)
    let file = requireFile "--tokens" (args.GetResult Tokens)
    let request = ModelArgs.read args <@ Model @> <@ Dtype @> <@ Device @> <@ Allow_Nonfinite @>
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
    let masses = Bigrams.massOfModels path file (File.ReadLines file) options models
    let nonFinite = NonFiniteChecks.masses masses
    if args.Contains Json then
        writeJson
            {|
                path = string path
                models = [| for m in masses -> {| model = m.Model; tokens = m.Tokens; mass = m.Mass |} |]
                non_finite = nonFiniteJson nonFinite
            |}
    else
        for m in masses do
            printfn
                "%s: mass %.6f of %d tokens under %O (mean over first tokens of Σ P(next ∈ S | token))"
                m.Model
                m.Mass
                m.Tokens
                path
    finish request.AllowNonFinite nonFinite

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
