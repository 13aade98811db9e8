/// Sharded sweeps: shard ranges tile the vocabulary along batch boundaries, merged shards equal the unsharded sweep
/// bit for bit (row top-k, global top-k, mass sums) for several shard counts, and merge refuses corrupt, missing,
/// duplicated and mismatched shards and what a crashed shard leaves.
module Jet.Core.Tests.ShardTests

open System
open System.IO
open Expecto
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps

let private withDir (body: string -> unit) =
    let dir = Path.Combine(Path.GetTempPath(), "jetdsl-shards-" + Guid.NewGuid().ToString "N")
    Directory.CreateDirectory dir |> ignore
    try
        body dir
    finally
        Directory.Delete(dir, true)

/// A sweep to shard: its name and its parts over a range of first tokens.
type private Sweep = { Name: string; Parts: Net -> int -> RowRange option -> (string * SweepPart) list }

let private options batch rows space drop =
    { SweepOptions.Default with BatchSize = batch; Rows = rows; Space = space; DropDiagonal = drop }

let private rowSweep space drop =
    {
        Name = sprintf "row top-k (%A, drop %b)" space drop
        Parts =
            fun net batch rows ->
                use best = Bigrams.rowTopK net Readouts.embedding 4 (options batch rows space drop)
                let ids, scores = Bigrams.rowArrays best
                [ "rows", SweepPart.Rows(4, ids, scores) ]
    }

let private globalSweep space drop =
    {
        Name = sprintf "global top-k (%A, drop %b)" space drop
        Parts =
            fun net batch rows ->
                [
                    "global",
                    SweepPart.Candidates(
                        9,
                        Bigrams.globalCandidates net (Readouts.mlpPath net 1) 9 (options batch rows space drop)
                    )
                ]
    }

let private massSweep =
    {
        Name = "mass and top-k mass"
        Parts =
            fun net batch rows ->
                let set = [| 1; 3; 5; 8; 13 |]
                let mass, inTop =
                    TokenMass.sums net Readouts.embedding set (Some 6) (options batch rows ScoreSpace.Probability true)
                [ "mass", SweepPart.Sums mass; "top_k_mass", SweepPart.Sums inTop.Value ]
    }

/// The message of the `'E` that `f` raises.
let private messageOf<'E when 'E :> exn> (f: unit -> unit) : string =
    try
        f ()
        failtestf "expected %s" typeof<'E>.Name
    with :? 'E as e ->
        e.Message

let private bits (xs: float[]) = xs |> Array.map BitConverter.DoubleToInt64Bits

/// Parts compared bit for bit.
let private sameParts (expected: (string * SweepPart) list) (actual: (string * SweepPart) list) (what: string) =
    Expect.equal (List.map fst actual) (List.map fst expected) (what + ": part names")
    for (name, e), (_, a) in List.zip expected actual do
        match e, a with
        | SweepPart.Rows(k, ids, scores), SweepPart.Rows(k', ids', scores') ->
            Expect.equal k' k (sprintf "%s %s: k" what name)
            Expect.equal ids' ids (sprintf "%s %s: ids" what name)
            Expect.equal (bits scores') (bits scores) (sprintf "%s %s: scores" what name)
        | SweepPart.Candidates(k, c), SweepPart.Candidates(k', c') ->
            Expect.equal k' k (sprintf "%s %s: k" what name)
            Expect.equal c'.Flat c.Flat (sprintf "%s %s: pairs" what name)
            Expect.equal (bits c'.Rank) (bits c.Rank) (sprintf "%s %s: ranks" what name)
            Expect.equal (bits c'.Scores) (bits c.Scores) (sprintf "%s %s: scores" what name)
        | SweepPart.Sums s, SweepPart.Sums s' -> Expect.equal (bits s') (bits s) (sprintf "%s %s: sums" what name)
        | _ -> failtestf "%s %s: parts of different kinds" what name

let private manifest (net: Net) batch shard shards (settings: Map<string, string>) =
    Shards.manifest "test" "synthetic" settings net.Vocab batch shard shards

/// Runs every shard of `sweep` into `dir`.
let private runShards (dir: string) (net: Net) (sweep: Sweep) batch shards settings =
    for i in 0 .. shards - 1 do
        Shards.run dir (manifest net batch i shards settings) (fun rows -> sweep.Parts net batch (Some rows))
        |> ignore

let private stories () = Model.load (Jet.Tests.Fixtures.path [ "stories260K" ]) torch.float32 torch.CPU

let private gpt64 () = SyntheticNets.gpt2Like 21 SyntheticNets.small torch.float64

[<Tests>]
let tests =
    testList
        "shards"
        [
            test "shard ranges tile the vocabulary in order, along batch boundaries, as evenly as batches allow" {
                for vocab in [ 1; 7; 100; 512; 1001 ] do
                    for batch in [ 1; 3; 64; 512; 2000 ] do
                        for shards in [ 1..12 ] do
                            let ranges = [ for i in 0 .. shards - 1 -> Shards.range vocab batch i shards ]
                            let what = sprintf "vocab %d, batch %d, %d shards" vocab batch shards
                            Expect.equal ranges.Head.Start 0 (what + ": starts at 0")
                            Expect.equal (List.last ranges).Stop vocab (what + ": ends at the vocabulary")
                            for a, b in List.pairwise ranges do
                                Expect.equal b.Start a.Stop (what + ": contiguous")
                            for r in ranges do
                                Expect.isTrue (r.Start <= r.Stop) (what + ": ordered")
                                Expect.isTrue (r.Start % batch = 0) (what + ": starts on a batch boundary")
                            let batches = ranges |> List.map (fun r -> (r.Count + batch - 1) / batch)
                            Expect.isTrue
                                (List.max batches - List.min batches <= 1)
                                (what + ": batch counts differ by at most one")
            }

            test "merged shards equal the unsharded sweep bit for bit (N = 1, 3, 7, and more shards than batches)" {
                use model = stories ()
                use gpt = gpt64 ()
                let sweeps =
                    [
                        model.Net, rowSweep ScoreSpace.Probability false
                        model.Net, globalSweep ScoreSpace.Probability false
                        model.Net, massSweep
                        gpt, rowSweep ScoreSpace.Logit true
                        gpt, globalSweep ScoreSpace.Logit true
                        gpt, globalSweep ScoreSpace.Probability true
                    ]
                for net, sweep in sweeps do
                    let batch = if net.Vocab > 100 then 40 else 7
                    let whole = sweep.Parts net batch None
                    for shards in [ 1; 3; 7; 100 ] do
                        withDir (fun dir ->
                            runShards dir net sweep batch shards Map.empty
                            let merged = Shards.merge dir
                            sameParts whole merged.Parts (sprintf "%s, %d shards" sweep.Name shards)
                            Expect.equal merged.Manifest.Rows { Start = 0; Stop = net.Vocab } "covers the vocabulary")
            }

            test "the sweep functions over a range equal the whole sweep's rows of that range" {
                use net = gpt64 ()
                let v = net.Vocab
                let rows = { Start = 7; Stop = v - 5 }
                use whole = Bigrams.rowTopK net Readouts.embedding 3 (options 7 None ScoreSpace.Logit false)
                use part = Bigrams.rowTopK net Readouts.embedding 3 (options 7 (Some rows) ScoreSpace.Logit false)
                Expect.equal part.First 7 "the first row"
                let expected = Bigrams.pairsOf whole |> Array.filter (fun p -> p.From >= 7 && p.From < v - 5)
                let actual = Bigrams.pairsOf part
                // A last batch of another size may round differently in the matrix products (float64: ~1e-15).
                Expect.equal
                    (actual |> Array.map (fun p -> p.From, p.To))
                    (expected |> Array.map (fun p -> p.From, p.To))
                    "the same pairs"
                for a, e in Array.zip actual expected do
                    Expect.floatClose { absolute = 1e-12; relative = 1e-12 } a.Score e.Score "the same scores"
                use table = Bigrams.full net Readouts.embedding (options 7 (Some rows) ScoreSpace.Logit false)
                Expect.equal table.shape [| int64 rows.Count; int64 v |] "full covers the range"
                let mass =
                    Bigrams.mass net Readouts.embedding [| 2 |] (options 7 (Some rows) ScoreSpace.Probability false)
                use all = Bigrams.full net Readouts.embedding (options 7 None ScoreSpace.Probability false)
                let expected = all.narrow(0L, 7L, int64 rows.Count).select(1L, 2L).mean().item<float> ()
                Expect.floatClose Accuracy.veryHigh mass expected "the mass is the mean over the range's rows"
                Expect.throwsT<IndexRangeException>
                    (fun () ->
                        Bigrams.mass
                            net
                            Readouts.embedding
                            [| 2 |]
                            (options 7 (Some { Start = 0; Stop = v + 1 }) ScoreSpace.Probability false)
                        |> ignore)
                    "a range past the vocabulary"
            }

            test "merge refuses missing, duplicated, renamed, corrupt, truncated and mismatched shards, naming them" {
                use net = gpt64 ()
                let sweep = rowSweep ScoreSpace.Probability false
                let settings = Map [ "k", "4" ]
                let fresh (body: string -> unit) =
                    withDir (fun dir ->
                        runShards dir net sweep 7 3 settings
                        body dir)
                let file dir i = Path.Combine(dir, Shards.fileName i 3)
                let refused (dir: string) (parts: string list) =
                    let message = messageOf<ShardException> (fun () -> Shards.merge dir |> ignore)
                    for p in parts do
                        Expect.stringContains message p "the message names what is wrong"
                fresh (fun dir ->
                    File.Delete(file dir 1)
                    refused dir [ "lacks shard 1/3"; "first tokens" ])
                fresh (fun dir ->
                    File.Copy(file dir 2, Path.Combine(dir, "shard-00002-of-00003 (copy).json"))
                    refused dir [ "shard 2/3 is in"; "(copy)" ])
                fresh (fun dir ->
                    File.Delete(file dir 1)
                    File.Copy(file dir 2, file dir 1)
                    refused dir [ Shards.fileName 1 3 + " holds shard 2/3" ])
                fresh (fun dir ->
                    let bytes = File.ReadAllBytes(file dir 0)
                    bytes.[bytes.Length - 20] <- bytes.[bytes.Length - 20] ^^^ 1uy
                    File.WriteAllBytes(file dir 0, bytes)
                    refused dir [ Shards.fileName 0 3; "corrupt"; "checksum" ])
                fresh (fun dir ->
                    let bytes = File.ReadAllBytes(file dir 1)
                    File.WriteAllBytes(file dir 1, bytes.[.. bytes.Length / 2])
                    refused dir [ Shards.fileName 1 3; "corrupt" ])
                fresh (fun dir ->
                    Shards.run dir (manifest net 7 1 3 (Map [ "k", "5" ])) (fun rows -> sweep.Parts net 7 (Some rows))
                    |> ignore
                    refused dir [ "does not match"; "k is 4 there but 5 here" ])
                fresh (fun dir ->
                    File.Delete(file dir 2)
                    Shards.write dir { Manifest = { manifest net 7 2 3 settings with Version = "0.0.1" }; Parts = [] }
                    |> ignore
                    refused dir [ "version is" ])
                withDir (fun dir -> refused dir [ "holds no shard files" ])
            }

            test "a shard that crashes mid-sweep leaves nothing merge accepts; a re-run skips complete shards only" {
                use net = gpt64 ()
                let sweep = rowSweep ScoreSpace.Probability false
                withDir (fun dir ->
                    runShards dir net sweep 7 3 Map.empty
                    let target = Path.Combine(dir, Shards.fileName 1 3)
                    File.Delete target
                    // The crash: the sweep fails after its first batch.
                    let crashing (rows: RowRange) =
                        let progress =
                            { new IProgress<int64> with
                                member _.Report _ = failwith "killed"
                            }
                        use best =
                            Bigrams.rowTopK
                                net
                                Readouts.embedding
                                4
                                { options 7 (Some rows) ScoreSpace.Probability false with Progress = Some progress }
                        [ "rows", SweepPart.Rows(4, [||], [||]) ]
                    Expect.throws
                        (fun () -> Shards.run dir (manifest net 7 1 3 Map.empty) crashing |> ignore)
                        "crashes"
                    Expect.isFalse (File.Exists target) "no shard file"
                    // What a writer killed before its rename leaves: a partial temporary file.
                    File.WriteAllText(Path.Combine(dir, "." + Shards.fileName 1 3 + ".4242.tmp"), "jetdsl-shard 1 sha")
                    let message = messageOf<ShardException> (fun () -> Shards.merge dir |> ignore)
                    Expect.stringContains message "lacks shard 1/3" "the crashed shard is missing"
                    let computed = ref []
                    for i in 0..2 do
                        match
                            Shards.run dir (manifest net 7 i 3 Map.empty) (fun rows ->
                                computed.Value <- i :: computed.Value
                                sweep.Parts net 7 (Some rows))
                        with
                        | ShardOutcome.Written _ -> Expect.equal i 1 "only the missing shard is written"
                        | ShardOutcome.Skipped _ -> Expect.notEqual i 1 "complete shards are skipped"
                    Expect.equal computed.Value [ 1 ] "only the missing shard is computed"
                    sameParts (sweep.Parts net 7 None) (Shards.merge dir).Parts "after the re-run")
            }

            test "--shard I/N and auto from Slurm and Kubernetes variables" {
                let env (pairs: (string * string) list) (name: string) =
                    pairs |> List.tryFind (fun (n, _) -> n = name) |> Option.map snd
                Expect.equal (Shards.parse (env []) "2/7") (2, 7) "explicit"
                Expect.equal
                    (Shards.parse
                        (env [ "SLURM_ARRAY_TASK_ID", "4"; "SLURM_ARRAY_TASK_COUNT", "5"; "SLURM_ARRAY_TASK_MIN", "1" ])
                        "auto")
                    (3, 5)
                    "Slurm, an array numbered from 1"
                Expect.equal
                    (Shards.parse (env [ "SLURM_ARRAY_TASK_ID", "0"; "SLURM_ARRAY_TASK_COUNT", "3" ]) "auto")
                    (0, 3)
                    "Slurm"
                Expect.equal
                    (Shards.parse (env [ "JOB_COMPLETION_INDEX", "6"; "JET_SHARD_COUNT", "7" ]) "auto")
                    (6, 7)
                    "Kubernetes"
                Expect.equal
                    (Shards.parse (env [ "JOB_COMPLETION_INDEX", "1" ]) "auto/4")
                    (1, 4)
                    "Kubernetes, count given"
                let refused (pairs: (string * string) list) (text: string) (part: string) =
                    let message = messageOf<ShardException> (fun () -> Shards.parse (env pairs) text |> ignore)
                    Expect.stringContains message part (sprintf "%s: the message" text)
                refused [] "7/7" "0..N−1"
                refused [] "1/0" "N ≥ 1"
                refused [] "-1/3" "whole number"
                refused [] "a/b" "whole number"
                refused [] "1-3" "I/N"
                refused [] "auto" "neither is set"
                refused [ "JOB_COMPLETION_INDEX", "1" ] "auto" "JET_SHARD_COUNT"
                refused [ "JOB_COMPLETION_INDEX", "5"; "JET_SHARD_COUNT", "3" ] "auto" "does not exist"
            }
        ]
