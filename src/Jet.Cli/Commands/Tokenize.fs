/// `jet tokenize`: the token ids and pieces of a text under a model's tokenizer.
module Jet.Cli.Commands.Tokenize

open Argu
open Jet.Core
open Jet.Cli
open Jet.Cli.Console

type Args =
    | [<Mandatory>] Model of source: string
    | [<Mandatory>] Text of text: string
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> ModelArgs.tokenizerUsage
            | Text _ -> "the text to tokenize."
            | Json -> "print {\"ids\": [...], \"tokens\": [...]} instead of a table."

let private execute (args: ParseResults<Args>) =
    // Only the tokenizer: no weights are read.
    let tokenizer = ModelArgs.tokenizer (args.GetResult Model)
    let text = args.GetResult Text
    warnReplacementCharacters "--text" text
    if System.String.IsNullOrEmpty text then
        raise (MissingArgumentException "The text is empty; give some text to tokenize.")
    let ids = tokenizer.Encode text
    let tokens = ids |> Array.map (Jet.Core.Apps.LogitMetrics.piece tokenizer)
    if args.Contains Json then
        writeJson {| ids = ids; tokens = tokens |}
    else
        printTable
            [ "position"; "id"; "token" ]
            [ for i in 0 .. ids.Length - 1 -> [ string i; string ids.[i]; tokens.[i] ] ]
    0

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
