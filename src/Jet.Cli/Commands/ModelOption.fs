/// What the `--model` option of the lens and n-gram commands accepts, and small parsers they share.
module Jet.Cli.Commands.ModelOption

open System
open System.IO
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Pictures

/// The toy network `--model toy` opens: seed 0, width 16, float32, character tokenizer.
let toySeed, toyWidth = 0, 16

/// MERGE POINT for the lead: opens a checkpoint directory. When the checkpoint-loading branch (`Model.load` /
/// `Model.resolve`) is merged, replace the body with `Model.resolve dir` (or make `resolve` below call
/// `Model.resolve spec` directly). Until then it fails with a clear error, never silently.
let loadDirectory (dir: string) : Model =
    if not (Directory.Exists dir) then
        raise (CheckpointException(sprintf "The model directory %s does not exist; give --model toy or a Hugging Face checkpoint directory." dir))
    raise (CheckpointException(sprintf "This build of jet cannot load checkpoint directories yet (%s); use --model toy." dir))

/// "toy" → the built-in toy model; anything else is a checkpoint directory.
let resolve (spec: string) : Model =
    if String.IsNullOrWhiteSpace spec then
        raise (MissingArgumentException "--model is empty; give toy or a checkpoint directory.")
    if spec.Trim().Equals("toy", StringComparison.OrdinalIgnoreCase) then Model.toy toySeed toyWidth torch.float32
    else loadDirectory spec

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

/// The pieces of a [1, seq] token batch as JSON objects.
let tokenObjects (model: Model) (tokens: Tensor) =
    tokens.[0L].cpu().data<int64>().ToArray() |> Array.map (fun id -> {| id = int id; text = Apps.LogitMetrics.piece model.Tokenizer (int id) |})
