/// `jet run`: one forward pass over a prompt, printing the top-K next tokens and their logits at every position;
/// with `--continue N`, also the prompt's greedy continuation of N tokens.
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
    | Continue of tokens: int
    | Dtype of name: string
    | Compute_Dtype of name: string
    | Device of name: string
    | Allow_Nonfinite
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> ModelArgs.modelUsage
            | Prompt _ -> "the prompt text."
            | Top _ -> "how many next tokens to show per position, 1..vocabulary size (default 5)."
            | Continue _ ->
                "also continue the prompt greedily by this many tokens (the most likely token each step; 0 or more)."
            | Dtype _ -> ModelArgs.dtypeUsage
            | Compute_Dtype _ -> ModelArgs.computeDtypeUsage
            | Device _ -> ModelArgs.deviceUsage
            | Allow_Nonfinite -> allowNonFiniteUsage
            | Json -> "print one JSON object instead of a table."

let private execute (args: ParseResults<Args>) =
    let request =
        ModelArgs.read args <@ Model @> <@ Dtype @> <@ Compute_Dtype @> <@ Device @> <@ Allow_Nonfinite @>
    use model = ModelArgs.load request
    let k = args.GetResult(Top, 5)
    if k < 1 || k > model.Net.Vocab then
        raise (IndexRangeException(sprintf "--top %d is outside 1..%d (the vocabulary size)." k model.Net.Vocab))
    match args.TryGetResult Continue with
    | Some n when n < 0 -> raise (IndexRangeException(sprintf "--continue %d is negative; give 0 or more tokens." n))
    | _ -> ()
    use scope = torch.NewDisposeScope()
    warnReplacementCharacters "--prompt" (args.GetResult Prompt)
    let tokens = Model.encode model (args.GetResult Prompt)
    use trace = Trace.run model.Net tokens
    let inputs = Readings.inputs model.Tokenizer tokens
    let logits = Trace.logits trace
    let positions = Readings.predictions model.Tokenizer inputs logits k
    let nonFinite = NonFiniteChecks.logits logits
    let continuation =
        args.TryGetResult Continue
        |> Option.map (fun n ->
            let ids = Generate.greedy model.Net tokens n
            ids, model.Tokenizer.Decode ids)
    if args.Contains Json then
        writeJson
            {|
                tokens = [| for t in inputs.[0] -> {| id = t.Id; text = t.Text; piece = t.Piece |} |]
                positions =
                    [|
                        for p in positions ->
                            {| top = [| for t in p.Top -> {| id = t.Id; token = t.Token; logit = t.Score |} |] |}
                    |]
                continuation =
                    match continuation with
                    | Some(ids, text) -> box {| ids = ids; text = text |}
                    | None -> null
                non_finite = nonFiniteJson nonFinite
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
        continuation
        |> Option.iter (fun (ids, text) ->
            printfn "greedy continuation (%d tokens):" ids.Length
            // Line by line: newlines stay newlines, every other control character is written visibly.
            for line in text.Split('\n') do
                printfn "%s" (Printable.escape line))
    finish request.AllowNonFinite nonFinite

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
