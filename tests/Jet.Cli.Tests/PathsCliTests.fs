/// `jet paths` (path search) on the real trained stories260K: the JSON's bookkeeping, the exact search against the
/// path that `jet bigrams`-style grammar names, the picture in both formats, and one-line errors.
module Jet.Cli.Tests.PathsCliTests

open System
open System.IO
open System.Text.Json
open Expecto
open Jet.Cli.Tests.CliRunner

let private stories = lazy (Jet.Tests.Fixtures.path [ "stories260K" ])
let private prompt = "Once upon a time there was a little girl"
let private items (e: JsonElement) = [ for x in e.EnumerateArray() -> x ]
let private number (name: string) (e: JsonElement) = e.GetProperty(name).GetDouble()

let private failsWith (args: string list) (fragment: string) =
    let r = run args
    Expect.equal r.ExitCode 1 (sprintf "exit code of jet %s; stderr %s" (String.Join(" ", args)) r.Stderr)
    let lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)
    Expect.equal lines.Length 1 (sprintf "one line: %s" r.Stderr)
    Expect.stringContains r.Stderr fragment "the error names the problem"

[<Tests>]
let tests =
    testList
        "jet paths"
        [
            test "an exact search on stories260K: shares add up, the remainder closes the bookkeeping" {
                let r =
                    json (
                        run
                            [
                                "paths"
                                "--model"
                                stories.Value
                                "--prompt"
                                prompt
                                "--target"
                                "token"
                                "#42"
                                "--top"
                                "1024"
                                "--beam"
                                "1024"
                                "--json"
                            ]
                    )
                Expect.isTrue (r.GetProperty("exact").GetBoolean()) "a beam of 1024 prunes nothing on 10 layers"
                Expect.equal (number "total_paths" r) 1024.0 "2^10 paths"
                let paths = items (r.GetProperty "paths")
                Expect.equal paths.Length 1024 "every path listed"
                let sum = paths |> List.sumBy (number "contribution")
                Expect.floatClose
                    Accuracy.medium
                    (sum + number "remainder" r + number "constant" r)
                    (number "value" r)
                    "Σ paths + remainder + constant = target"
                let magnitudes = paths |> List.map (number "contribution" >> abs)
                Expect.equal magnitudes (List.sortDescending magnitudes) "largest |contribution| first"
                let last = List.last paths
                Expect.floatClose
                    Accuracy.medium
                    (number "cumulative_share" last)
                    (sum / number "carried" r)
                    "the cumulative share of all paths"
            }

            test "a narrow beam with --only mlp and --max-length; the picture in PNG and SVG" {
                let dir = tempDir ()
                for ext in [ "png"; "svg" ] do
                    let file = Path.Combine(dir, "paths." + ext)
                    let r =
                        json (
                            run
                                [
                                    "paths"
                                    "--model"
                                    stories.Value
                                    "--prompt"
                                    prompt
                                    "--only"
                                    "mlp"
                                    "--max-length"
                                    "2"
                                    "--beam"
                                    "2"
                                    "--top"
                                    "5"
                                    "--plot"
                                    file
                                    "--json"
                                ]
                        )
                    Expect.equal (number "total_paths" r) 16.0 "1 + 5 + C(5,2) paths through 5 MLPs"
                    for p in items (r.GetProperty "paths") do
                        let layers = p.GetProperty("layers").GetString()
                        Expect.isFalse (layers.Contains "attn") "MLP layers only"
                        Expect.isLessThanOrEqual (layers.Split('>').Length - 1) 2 "at most two layers"
                    Expect.isGreaterThan (FileInfo(file).Length) 1000L (sprintf "the %s picture" ext)
                Expect.stringContains (File.ReadAllText(Path.Combine(dir, "paths.svg"))) "<svg" "an SVG"
            }

            test "the table names the target and says whether the search was exact" {
                let r = run [ "paths"; "--model"; stories.Value; "--prompt"; prompt; "--beam"; "4"; "--top"; "3" ]
                Expect.equal r.ExitCode 0 r.Stderr
                Expect.stringContains r.Stdout "log P(top token" "the default target"
                Expect.stringContains r.Stdout "Beam search (heuristic)" "a pruned search says so"
                Expect.stringContains r.Stdout "U·LN(" "paths in path notation"
            }

            test "bad options fail with one line" {
                failsWith [ "paths"; "--model"; "toy"; "--prompt"; "hi"; "--target"; "diff"; "a" ] "--target diff a"
                failsWith [ "paths"; "--model"; "toy"; "--prompt"; "hi"; "--only"; "attn" ] "no attention layer"
                failsWith [ "paths"; "--model"; "toy"; "--prompt"; "hi"; "--position"; "9" ] "position must be 0..1"
                failsWith [ "paths"; "--model"; "toy"; "--prompt"; "hi"; "--beam"; "0" ] "beam width"
                failsWith [ "paths"; "--model"; "toy"; "--prompt"; "hi"; "--target"; "token"; "#100" ] "0..99"
            }
        ]
