/// `--shard I/N` and `jet merge` as a user runs them: N shard processes at once on stories260K, merged output equal
/// to the unsharded run's, `--shard auto` from Slurm and Kubernetes variables, and one-line errors.
module Jet.Cli.Tests.ShardCliTests

open System.IO
open Expecto
open Jet.Cli.Tests.CliRunner

let private stories = lazy (Jet.Tests.Fixtures.path [ "stories260K" ])

let private words = lazy (Jet.Tests.Fixtures.repositoryFile [ "docs"; "examples"; "refusal-words.txt" ])

let succeeded (what: string) (r: CliResult) =
    Expect.equal r.ExitCode 0 (sprintf "%s: exit code (stderr: %s)" what r.Stderr)

/// Runs shards 0..N−1 of `args` as N processes at once into a fresh folder; returns the folder.
let shardsAtOnce (args: string list) (shards: int) =
    let dir = tempDir ()
    let results =
        [|
            for i in 0 .. shards - 1 ->
                async { return run (args @ [ "--shard"; sprintf "%d/%d" i shards; "--shard-dir"; dir ]) }
        |]
        |> Async.Parallel
        |> Async.RunSynchronously
    results |> Array.iteri (fun i r -> succeeded (sprintf "shard %d/%d" i shards) r)
    dir

/// The one-line error of a failed command.
let failedWith (r: CliResult) (part: string) =
    Expect.equal r.ExitCode 1 (sprintf "exit code (stdout: %s)" r.Stdout)
    let lines = r.Stderr.Trim().Split '\n' |> Array.filter (fun l -> not (l.StartsWith "warning"))
    Expect.equal lines.Length 1 (sprintf "one line on stderr, not a trace: %s" r.Stderr)
    Expect.stringContains r.Stderr part "the error says what is wrong"

[<Tests>]
let tests =
    testList
        "shards (CLI)"
        [
            // N = 1 and more shards than batches are in the core's shard tests, which compare the parts bit for bit.
            test "bigrams row top-k: N = 3 and 7 shards at once merge to the unsharded JSON and table" {
                let args =
                    [ "bigrams"; "--model"; stories.Value; "--path"; "embed"; "--top"; "3"; "--batch-size"; "40" ]
                let whole = run (args @ [ "--json" ])
                succeeded "unsharded" whole
                let table = run args
                succeeded "unsharded table" table
                for n in [ 3; 7 ] do
                    let dir = shardsAtOnce args n
                    let merged = run [ "merge"; dir; "--json" ]
                    succeeded "merge" merged
                    Expect.equal merged.Stdout whole.Stdout (sprintf "%d shards: the same JSON" n)
                    if n = 3 then
                        let mergedTable = run [ "merge"; dir ]
                        succeeded "merge, table" mergedTable
                        Expect.equal mergedTable.Stdout table.Stdout "the same table"
            }

            test "bigrams global top-k (logits, no diagonal) and mass with top-k: merged = unsharded" {
                let cases =
                    [
                        3,
                        [
                            "bigrams"
                            "--model"
                            stories.Value
                            "--path"
                            "emb>mlp1"
                            "--global"
                            "--logit"
                            "--no-diagonal"
                            "--top"
                            "25"
                            "--batch-size"
                            "50"
                        ]
                        3,
                        [
                            "mass"
                            "--model"
                            stories.Value
                            "--tokens"
                            words.Value
                            "--path"
                            "embed"
                            "--top-k"
                            "10"
                            "--batch-size"
                            "30"
                        ]
                    ]
                for n, args in cases do
                    let whole = run (args @ [ "--json" ])
                    succeeded "unsharded" whole
                    let dir = shardsAtOnce args n
                    let merged = run [ "merge"; dir; "--json" ]
                    succeeded "merge" merged
                    Expect.equal merged.Stdout whole.Stdout (sprintf "%s, %d shards: the same JSON" args.Head n)
            }

            test "--shard auto reads Slurm's and Kubernetes' variables; a re-run skips the complete shard" {
                let args =
                    [ "bigrams"; "--model"; stories.Value; "--path"; "embed"; "--top"; "2"; "--batch-size"; "100" ]
                let dir = tempDir ()
                let shard = args @ [ "--shard"; "auto"; "--shard-dir"; dir ]
                let slurm =
                    runWith
                        [ "SLURM_ARRAY_TASK_ID", "2"; "SLURM_ARRAY_TASK_MIN", "1"; "SLURM_ARRAY_TASK_COUNT", "2" ]
                        "."
                        300
                        shard
                succeeded "Slurm" slurm
                Expect.stringContains slurm.Stdout "shard 1/2" "Slurm task 2 of an array 1-2 is shard 1/2"
                let kubernetes = runWith [ "JOB_COMPLETION_INDEX", "0"; "JET_SHARD_COUNT", "2" ] "." 300 shard
                succeeded "Kubernetes" kubernetes
                Expect.stringContains kubernetes.Stdout "shard 0/2" "completion index 0 is shard 0/2"
                let again = run (args @ [ "--shard"; "0/2"; "--shard-dir"; dir ])
                succeeded "re-run" again
                Expect.stringContains again.Stdout "skipped" "the complete shard is skipped"
                let whole = run (args @ [ "--json" ])
                let merged = run [ "merge"; dir; "--json" ]
                succeeded "merge" merged
                Expect.equal merged.Stdout whole.Stdout "the same JSON"
            }

            test "missing and mismatched shards, and shard flags that do not fit, fail with one line" {
                let args =
                    [ "bigrams"; "--model"; stories.Value; "--path"; "embed"; "--top"; "2"; "--batch-size"; "100" ]
                let dir = tempDir ()
                succeeded "shard 0/3" (run (args @ [ "--shard"; "0/3"; "--shard-dir"; dir ]))
                failedWith (run [ "merge"; dir ]) "lacks shards 1/3"
                succeeded
                    "shard 1/3 with another k"
                    (run (
                        [ "bigrams"; "--model"; stories.Value; "--path"; "embed"; "--top"; "3"; "--batch-size"; "100" ]
                        @ [ "--shard"; "1/3"; "--shard-dir"; dir ]
                    ))
                failedWith (run [ "merge"; dir ]) "top is 2 there but 3 here"
                failedWith (run [ "merge"; Path.Combine(dir, "nothing") ]) "is not a folder"
                failedWith (run (args @ [ "--shard"; "0/3" ])) "--shard-dir"
                failedWith (run (args @ [ "--shard"; "3/3"; "--shard-dir"; dir ])) "0..N−1"
                failedWith (run (args @ [ "--shard"; "auto"; "--shard-dir"; dir ])) "SLURM_ARRAY_TASK_ID"
                failedWith
                    (run (args @ [ "--compare"; stories.Value; "--shard"; "0/2"; "--shard-dir"; dir ]))
                    "--compare"
            }
        ]
