/// `jet run`: one forward pass over a prompt, printing the top-K next tokens and their logits at every position.
module Jet.Cli.Commands.Run

open Argu
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps
open Jet.Cli
open Jet.Cli.Console

type Args =
    | [<Mandatory>] Model of source: string
    | [<Mandatory>] Prompt of text: string
    | Top of k: int
    | Dtype of name: string
    | Device of name: string
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> ModelArgs.modelUsage
            | Prompt _ -> "the prompt text."
            | Top _ -> "how many next tokens to show per position (default 5)."
            | Dtype _ -> ModelArgs.dtypeUsage
            | Device _ -> ModelArgs.deviceUsage
            | Json -> "print one JSON object instead of a table."

let private execute (args: ParseResults<Args>) =
    use model = ModelArgs.load (ModelArgs.read args <@ Model @> <@ Dtype @> <@ Device @>)
    let k = args.GetResult(Top, 5)
    if k < 1 || k > model.Net.Vocab then
        raise (IndexRangeException(sprintf "--top %d is outside 1..%d (the vocabulary size)." k model.Net.Vocab))
    use scope = torch.NewDisposeScope()
    let tokens = Model.encode model (args.GetResult Prompt)
    use trace = Trace.run model.Net tokens
    let inputs = Readings.inputs model.Tokenizer tokens
    let positions = Readings.predictions model.Tokenizer inputs (Trace.logits trace) k
    if args.Contains Json then
        writeJson
            {|
                tokens = [| for t in inputs.[0] -> {| id = t.Id; text = t.Text |} |]
                positions =
                    [|
                        for p in positions ->
                            {| top = [| for t in p.Top -> {| id = t.Id; token = t.Token; logit = t.Score |} |] |}
                    |]
            |}
    else
        printfn "%s (%s): the top %d next tokens after each position" model.Family model.Source k
        printTable
            [ "position"; "token"; sprintf "top %d next tokens (logit)" k ]
            [
                for p in positions ->
                    [
                        string p.Position
                        p.Input.Piece
                        p.Top |> Array.map (fun t -> sprintf "%s (%.3f)" t.Token t.Score) |> String.concat "  "
                    ]
            ]
    0

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
