/// `jet mass`: the n-gram mass of a token set under a bigram path, for one model or two side by side.
module Jet.Cli.Commands.MassCommand

open System.IO
open Argu
open Jet.Core
open Jet.Core.Apps
open Jet.Cli.Console
open Jet.Cli.Commands.ModelOption

type Args =
    | [<Mandatory>] Model of dir: string
    | Compare of dir: string
    | [<Mandatory>] Tokens of file: string
    | [<Mandatory>] Path of path: string
    | No_Diagonal
    | Batch_Size of rows: int
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> "toy, or a checkpoint directory."
            | Compare _ -> "a second model to measure beside the first (for example a fine-tune of it)."
            | Tokens _ -> "a file with one token per line, written as tables print it (for example ␣ for the toy's space)."
            | Path _ -> "embed or mlp:B (B a 1-based block number)."
            | No_Diagonal -> "renormalise each row over next tokens different from the first."
            | Batch_Size _ -> "first tokens per batch of the vocabulary sweep (default: 512)."
            | Json -> "print one JSON object instead of lines."

let private execute (args: ParseResults<Args>) =
    let path = Bigrams.parsePath (args.GetResult Path)
    let file = args.GetResult Tokens
    if not (File.Exists file) then
        raise (MissingArgumentException(sprintf "The token file %s does not exist; give a file with one token per line." file))
    let lines = File.ReadAllLines file |> List.ofArray
    let models = [ yield resolve (args.GetResult Model); match args.TryGetResult Compare with Some dir -> yield resolve dir | None -> () ]
    let batch = args.GetResult(Batch_Size, SweepOptions.Default.BatchSize)
    let masses =
        models
        |> List.map (fun m ->
            let set = Vocabulary.tokenSet m.Tokenizer m.Net.Vocab file lines
            Bigrams.pathFunction m.Net path |> ignore
            let options = BigramsCommand.sweepOptions m.Net ScoreSpace.Probability (args.Contains No_Diagonal) batch (sprintf "mass %s" m.Source)
            m, set.Length, Bigrams.mass m.Net path set options)
    if args.Contains Json then
        writeJson {| path = string path; models = [| for m, count, mass in masses -> {| model = m.Source; tokens = count; mass = mass |} |] |}
    else
        for m, count, mass in masses do
            printfn "%s: mass %.6f of %d tokens under %O (mean over first tokens of Σ P(next ∈ S | token))" m.Source mass count path
    0

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
