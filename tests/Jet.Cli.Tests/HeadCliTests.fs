/// `jet skipgrams` (tables per head, the head ranking and its heatmap) and `jet trigrams` on the real trained
/// stories260K (../shared/fixtures): JSON shapes, pictures and one-line errors.
module Jet.Cli.Tests.HeadCliTests

open System
open System.IO
open System.Text.Json
open Expecto
open Jet.Cli.Tests.CliRunner

let private items (e: JsonElement) = [ for x in e.EnumerateArray() -> x ]
let private prop (name: string) (e: JsonElement) = e.GetProperty name
let private stories = lazy (Jet.Tests.Fixtures.path [ "stories260K" ])

let private failsWith (args: string list) (fragment: string) =
    let r = run args
    Expect.equal r.ExitCode 1 (sprintf "exit code of jet %s; stderr %s" (String.Join(" ", args)) r.Stderr)
    Expect.equal
        (r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length)
        1
        (sprintf "one line: %s" r.Stderr)
    Expect.stringContains r.Stderr fragment "message"

[<Tests>]
let tests =
    testList
        "heads and trigrams"
        [
            test "skipgrams --global-top: one table per head of the layer, best first, in head notation" {
                let root =
                    json (run [ "skipgrams"; "--model"; stories.Value; "--layer"; "3"; "--global-top"; "4"; "--json" ])
                let heads = prop "heads" root |> items
                Expect.equal heads.Length 8 "stories260K has 8 query heads per layer"
                for i, h in List.indexed heads do
                    Expect.equal ((prop "head" h).GetInt32()) (i + 1) "heads in order"
                    Expect.equal
                        ((prop "path" h).GetString())
                        (sprintf "U·LN(OV₃,%s(Emb))" (string "₁₂₃₄₅₆₇₈".[i]))
                        "path"
                    let scores = prop "rows" h |> items |> List.map (fun r -> (prop "score" r).GetDouble())
                    Expect.equal scores.Length 4 "k rows"
                    Expect.isTrue (scores |> List.pairwise |> List.forall (fun (a, b) -> a >= b)) "best first"
                    Expect.isTrue (scores |> List.forall (fun s -> s > 0.0 && s <= 1.0)) "probabilities"
            }
            test "skipgrams --head with --top per token and --plot writes the picture" {
                let dir = tempDir ()
                let out = Path.Combine(dir, "skip.svg")
                let r =
                    run
                        [
                            "skipgrams"
                            "--model"
                            stories.Value
                            "--layer"
                            "1"
                            "--head"
                            "2"
                            "--top"
                            "2"
                            "--logit"
                            "--plot"
                            out
                        ]
                Expect.equal r.ExitCode 0 r.Stderr
                Expect.stringContains r.Stdout "U·LN(OV₁,₂(Emb))" "names the head"
                Expect.isTrue (File.Exists out) "picture"
            }
            test "skipgrams --rank over a token range ranks every head and draws the heatmap" {
                let dir = tempDir ()
                let out = Path.Combine(dir, "heads.png")
                let root =
                    json (
                        run
                            [
                                "skipgrams"
                                "--model"
                                stories.Value
                                "--rank"
                                "--tokens"
                                "100..163"
                                "--out"
                                out
                                "--json"
                            ]
                    )
                let heads = prop "heads" root |> items
                Expect.equal heads.Length 40 "5 attention layers × 8 heads"
                for h in heads do
                    let c, m = (prop "copying" h).GetDouble(), (prop "set_mass" h).GetDouble()
                    Expect.isTrue (c >= 0.0 && c <= m && m <= 1.0) "copying ≤ set mass ≤ 1"
                Expect.isTrue (File.Exists out) "heatmap"
            }
            test "trigrams over token ranges: row top-k for every pair, and the global list" {
                let args =
                    [
                        "trigrams"
                        "--model"
                        stories.Value
                        "--path"
                        "emb>attn1>mlp1"
                        "--first"
                        "10..12"
                        "--second"
                        "20..23"
                    ]
                let rows = json (run (args @ [ "--top"; "2"; "--json" ])) |> prop "rows" |> items
                Expect.equal rows.Length (3 * 4 * 2) "k rows per pair"
                Expect.equal
                    [ for r in rows -> (prop "first" r).GetInt32(), (prop "second" r).GetInt32() ]
                    [
                        for a in 10..12 do
                            for b in 20..23 do
                                for _ in 1..2 -> a, b
                    ]
                    "pairs in product order"
                let best = json (run (args @ [ "--global-top"; "5"; "--json" ])) |> prop "rows" |> items
                let top = rows |> List.map (fun r -> (prop "score" r).GetDouble()) |> List.max
                Expect.floatClose
                    Accuracy.medium
                    ((prop "score" best.[0]).GetDouble())
                    top
                    "the global best is the best row entry"
            }
            test "errors are one line: no attention in the path, a bad head, a missing layer, a bad range" {
                failsWith
                    [ "trigrams"; "--model"; stories.Value; "--path"; "emb>mlp1"; "--first"; "0..1" ]
                    "no attention step"
                failsWith [ "skipgrams"; "--model"; stories.Value; "--layer"; "1"; "--head"; "9" ] "heads are 1..8"
                failsWith [ "skipgrams"; "--model"; stories.Value; "--layer"; "2" ] "has no attention"
                failsWith [ "skipgrams"; "--model"; stories.Value ] "--layer"
                failsWith [ "trigrams"; "--model"; stories.Value; "--path"; "attn1"; "--first"; "5..700" ] "id range"
            }
        ]
