/// `jet run`: one forward pass over a prompt, printing the top-K next tokens and their logits at every position.
module Jet.Cli.Commands.Run

open Argu
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Cli
open Jet.Cli.Console

type Args =
    | [<Mandatory>] Model of source: string
    | [<Mandatory>] Prompt of text: string
    | Top of k: int
    | Dtype of name: string
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> "toy, or a Hugging Face checkpoint directory."
            | Prompt _ -> "the prompt text."
            | Top _ -> "how many next tokens to show per position (default 5)."
            | Dtype _ -> "float32 (default), float64, bfloat16 or float16."
            | Json -> "print one JSON object instead of a table."

let private execute (args: ParseResults<Args>) =
    let model = ModelSource.openModel (args.GetResult Model) (args.TryGetResult Dtype)
    let k = args.GetResult(Top, 5)
    if k < 1 || k > model.Net.Vocab then
        raise (IndexRangeException(sprintf "--top %d is outside 1..%d (the vocabulary size)." k model.Net.Vocab))
    use scope = torch.NewDisposeScope()
    let tokens = Model.encode model (args.GetResult Prompt)
    let ids = tokens.[0L].data<int64>().ToArray() |> Array.map int
    use trace = Trace.run model.Net tokens
    let logits = (Trace.logits trace).[0L].to_type(torch.float32)
    let struct (values, indices) = logits.topk (k, dim = -1)
    let values = values.contiguous().data<float32>().ToArray()
    let indices = indices.contiguous().data<int64>().ToArray()
    let top position =
        [| for j in 0 .. k - 1 ->
               let id = int indices.[position * k + j]
               {| id = id; token = ModelSource.piece model id; logit = float values.[position * k + j] |} |]
    let texts = ModelSource.tokenTexts model ids
    if args.Contains Json then
        writeJson
            {|
                tokens = Array.init ids.Length (fun i -> {| id = ids.[i]; text = texts.[i] |})
                positions = Array.init ids.Length (fun p -> {| top = top p |})
            |}
    else
        printfn "%s (%s): the top %d next tokens after each position" model.Family model.Source k
        printTable
            [ "position"; "token"; sprintf "top %d next tokens (logit)" k ]
            [ for p in 0 .. ids.Length - 1 ->
                  [ string p; ModelSource.piece model ids.[p]; top p |> Array.map (fun t -> sprintf "%s (%.3f)" t.token t.logit) |> String.concat "  " ] ]
    0

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
