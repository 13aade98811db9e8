/// Opening the model a command names with `--model toy|DIR` and `--dtype`.
module Jet.Cli.ModelSource

open TorchSharp
open Jet.Core
open Jet.Core.Models

/// The element types `--dtype` accepts, by name.
let private dtypes = [ "float32", torch.float32; "float64", torch.float64; "bfloat16", torch.bfloat16; "float16", torch.float16 ]

/// The element type named by `--dtype` (default float32); fails listing the valid names.
let dtype (name: string option) =
    let name = defaultArg name "float32"
    match dtypes |> List.tryFind (fun (n, _) -> n = name) with
    | Some(_, t) -> t
    | None ->
        let valid = dtypes |> List.map fst |> String.concat ", "
        raise (DTypeException(sprintf "Unknown --dtype '%s'; choose one of: %s." name valid))

/// `toy` or a Hugging Face checkpoint directory, on the CPU.
let openModel (source: string) (dtypeName: string option) : Model =
    Native.ensure ()
    Model.resolve source (dtype dtypeName) torch.CPU

/// A readable piece for any id the network can emit (networks may have more rows than the tokenizer has ids).
let piece (model: Model) (id: int) = Jet.Core.Apps.LogitMetrics.piece model.Tokenizer id

/// The text each token adds to the decoded prompt, so the texts concatenate to the decoded whole (SentencePiece
/// drops a token's leading space when it is decoded alone, so single-token decoding would lose it).
let tokenTexts (model: Model) (ids: int[]) =
    let decode (n: int) = if n = 0 then "" else model.Tokenizer.Decode(Array.sub ids 0 n)
    [| for i in 0 .. ids.Length - 1 ->
           let before, after = decode i, decode (i + 1)
           if after.StartsWith before then after.Substring before.Length else model.Tokenizer.Decode [| ids.[i] |] |]
