/// `--shard I/N|auto` and `--shard-dir DIR`: a vocabulary sweep run whole, or as one shard of many whose files
/// `jet merge` reduces to the same output.
module Jet.Cli.Sharding

open System
open Jet.Core
open Jet.Core.Apps
open Jet.Core.Models

/// The usage text of `--shard`.
let shardUsage =
    "run shard I of N (0 ≤ I < N) of the sweep, a contiguous range of first tokens, into --shard-dir; auto (or auto/N) reads SLURM_ARRAY_TASK_ID/COUNT or JOB_COMPLETION_INDEX with JET_SHARD_COUNT. Merge with jet merge DIR."

/// The usage text of `--shard-dir`.
let shardDirUsage =
    "the folder every shard writes its file to (shard-I-of-N.json); a shard whose complete file is there is skipped."

/// One shard of a sweep: which, of how many, and where its file goes.
type Request = { Shard: int; Shards: int; Dir: string }

let private environment (name: string) =
    match Environment.GetEnvironmentVariable name with
    | null
    | "" -> None
    | value -> Some value

/// The shard `--shard` and `--shard-dir` ask for; None when neither is given.
let request (shard: string option) (dir: string option) : Request option =
    match shard, dir with
    | None, None -> None
    | None, Some _ ->
        raise (MissingArgumentException "--shard-dir goes with --shard I/N (or auto); give both or neither.")
    | Some _, None ->
        raise (
            MissingArgumentException
                "--shard needs --shard-dir DIR, the folder all shards write their files to (jet merge DIR reads it)."
        )
    | Some text, Some dir ->
        if String.IsNullOrWhiteSpace dir then
            raise (MissingArgumentException "--shard-dir is empty; give a folder.")
        let shard, shards = Shards.parse environment text
        Some { Shard = shard; Shards = shards; Dir = dir }

/// An option of a manifest, failing with a clear message when the file lacks it.
let setting (result: ShardResult) (name: string) : string =
    match result.Manifest.Options.TryFind name with
    | Some value -> value
    | None ->
        raise (
            ShardException(
                sprintf
                    "The %s shards lack the setting %s; they were written by another version."
                    result.Manifest.Kind
                    name
            )
        )

/// Runs a sweep of `model` over `rowCount` rows (first tokens, or places in a first-token set): whole, with `render` printing its parts, or as the shard `request` names, its
/// parts written to the shard folder (one line on stdout says which rows went where, or that the shard was complete
/// already). `compute` gets the first-token range to sweep (None: all); `settings` are every option the result
/// depends on, which all shards of a merge must share; `render` is also what `jet merge` calls on merged results.
let runRows
    (request: Request option)
    (kind: string)
    (model: Model)
    (settings: Map<string, string>)
    (rowCount: int)
    (batchSize: int)
    (compute: RowRange option -> (string * SweepPart) list)
    (render: ShardResult -> int)
    : int =
    match request with
    | None ->
        let parts = compute None
        let manifest =
            {
                Kind = kind
                Model = model.Source
                Fingerprint = ""
                Options = settings
                Vocab = rowCount
                BatchSize = batchSize
                Shard = 0
                Shards = 1
                Rows = { Start = 0; Stop = rowCount }
                Version = Shards.version
            }
        render { Manifest = manifest; Parts = parts }
    | Some r ->
        let manifest = Shards.manifest kind model.Source settings rowCount batchSize r.Shard r.Shards
        let rows = manifest.Rows
        match Shards.run r.Dir manifest (fun rows -> compute (Some rows)) with
        | ShardOutcome.Written file ->
            let covered =
                if rows.Count = 0 then
                    "no first tokens (more shards than batches)"
                else
                    sprintf "first tokens %d..%d" rows.Start (rows.Stop - 1)
            printfn "shard %d/%d: %s written to %s" r.Shard r.Shards covered file
        | ShardOutcome.Skipped file -> printfn "shard %d/%d: %s is complete already; skipped" r.Shard r.Shards file
        0

/// `runRows` over the whole vocabulary: a sweep whose rows are the first tokens 0..V−1.
let run
    (request: Request option)
    (kind: string)
    (model: Model)
    (settings: Map<string, string>)
    (batchSize: int)
    (compute: RowRange option -> (string * SweepPart) list)
    (render: ShardResult -> int)
    : int =
    runRows request kind model settings model.Net.Vocab batchSize compute render
