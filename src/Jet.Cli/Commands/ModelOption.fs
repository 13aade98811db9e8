/// What the `--model` option of the lens and n-gram commands accepts, and small parsers they share.
module Jet.Cli.Commands.ModelOption

open System
open System.IO
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Pictures

/// "toy" → the built-in toy model; anything else is a checkpoint directory (float32, CPU).
let resolve (spec: string) : Model =
    if String.IsNullOrWhiteSpace spec then
        raise (MissingArgumentException "--model is empty; give toy or a checkpoint directory.")
    Jet.Cli.ModelSource.openModel (spec.Trim()) None

/// "0,3,6" → [0; 3; 6].
let parseIndices (option: string) (text: string) : int list =
    let parts = text.Split(',', StringSplitOptions.TrimEntries ||| StringSplitOptions.RemoveEmptyEntries)
    let parse (p: string) =
        match Int32.TryParse p with
        | true, v -> v
        | _ -> raise (InvalidPlanException(sprintf "%s must be comma-separated integers, for example 0,3,6; got %A." option text))
    if parts.Length = 0 then
        raise (InvalidPlanException(sprintf "%s is empty; give comma-separated integers, for example 0,3,6." option))
    parts |> Array.map parse |> List.ofArray

/// Writes a picture when a path was given, and says where on stderr.
let savePicture (path: string option) (scene: unit -> Scene) =
    match path with
    | Some p ->
        Pictures.formatOf p |> ignore
        Pictures.save p (scene ())
        eprintfn "wrote %s" p
    | None -> ()

/// Readable pieces of a [1, seq] token batch, for table headers ("␣" for a space).
let tokenPieces (model: Model) (tokens: Tensor) =
    tokens.[0L].cpu().data<int64>().ToArray() |> Array.map (fun id -> Jet.Cli.ModelSource.piece model (int id)) |> List.ofArray

/// The tokens of a [1, seq] batch as JSON objects: id and the text it adds to the prompt.
let tokenObjects (model: Model) (tokens: Tensor) =
    let ids = tokens.[0L].cpu().data<int64>().ToArray() |> Array.map int
    Array.map2 (fun id text -> {| id = id; text = text |}) ids (Jet.Cli.ModelSource.tokenTexts model ids)
