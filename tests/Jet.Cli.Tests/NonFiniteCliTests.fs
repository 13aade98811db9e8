/// The issue's cases end to end: non-finite results flagged (stderr, JSON, exit code 3, --allow-nonfinite), requests
/// that cannot fit refused at once, paths that are the wrong kind named as such, control characters printed visibly.
module Jet.Cli.Tests.NonFiniteCliTests

open System
open System.Diagnostics
open System.IO
open System.Text.Json
open Expecto
open Jet.Cli.Tests.CliRunner

let private tiny = Jet.Tests.Fixtures.path [ "lm-buddy-tiny-gpt2-toyvocab" ]

/// A copy of the tiny GPT-2 fixture whose first stored float is NaN.
let private nanCheckpoint () =
    let dir = tempDir ()
    for f in Directory.GetFiles tiny do
        File.Copy(f, Path.Combine(dir, Path.GetFileName f))
    let path = Path.Combine(dir, "model.safetensors")
    let bytes = File.ReadAllBytes path
    let start = 8 + int (BitConverter.ToUInt64(bytes, 0))
    BitConverter.GetBytes(Single.NaN).CopyTo(bytes, start)
    File.WriteAllBytes(path, bytes)
    dir

/// Exit code 3, a warning naming where the first non-finite value is, and the JSON's non_finite field.
let private flagged (where: string) (r: CliResult) =
    Expect.equal r.ExitCode 3 (sprintf "exit code 3 (stderr: %s)" r.Stderr)
    Expect.stringContains r.Stderr "warning: the result is not finite" "a warning"
    Expect.stringContains r.Stderr where "names where"
    Expect.stringContains r.Stderr "--allow-nonfinite" "says how to accept it"
    let root = JsonDocument.Parse(r.Stdout.Trim()).RootElement
    let report = root.GetProperty "non_finite"
    Expect.equal report.ValueKind JsonValueKind.Object "non_finite in the JSON"
    Expect.stringContains (report.GetProperty("where").GetString()) where "the JSON names where"
    Expect.isGreaterThan (report.GetProperty("count").GetInt64()) 0L "count"

/// Exit 1 with one error line containing every fragment, within `seconds`.
let private refusedWithin (seconds: float) (fragments: string list) (args: string list) =
    let clock = Stopwatch.StartNew()
    let r = run args
    Expect.isLessThan clock.Elapsed.TotalSeconds seconds (sprintf "jet %A answers at once" args)
    Expect.equal r.ExitCode 1 (sprintf "exit code (stderr: %s)" r.Stderr)
    Expect.equal (r.Stderr.Trim().Split('\n').Length) 1 (sprintf "one line: %s" r.Stderr)
    for f in fragments do
        Expect.stringContains r.Stderr f "the error says what is wrong"

[<Tests>]
let tests =
    testList
        "nothing silent (CLI)"
        [
            test "series with an overflowing y − x: exit 3, or 0 with --allow-nonfinite" {
                let args = [ "series"; "--at"; "1e308"; "--to=-1e308"; "--json" ]
                flagged "the coefficients" (run args)
                let allowed = run (args @ [ "--allow-nonfinite" ])
                Expect.equal allowed.ExitCode 0 "allowed"
                Expect.stringContains allowed.Stderr "warning: the result is not finite" "still reported"
            }
            test "joint-lens at order 64 overflows: the first centre's logits are named" {
                flagged
                    "centre"
                    (run
                        [
                            "joint-lens"
                            "--model"
                            "toy"
                            "--prompt"
                            "hello"
                            "--order"
                            "64"
                            "--iters"
                            "2"
                            "--json"
                        ])
            }
            test "quickstart at order 50: the printed norms overflow and are flagged" {
                flagged "‖" (run [ "quickstart"; "--order"; "50"; "--json" ])
                let finite = json (run [ "quickstart"; "--json" ])
                Expect.equal (finite.GetProperty("non_finite").ValueKind) JsonValueKind.Null "null when finite"
            }
            test "a NaN weight: refused at load naming the tensor; --allow-nonfinite loads and flags" {
                let dir = nanCheckpoint ()
                refusedWithin
                    60.0
                    [ "non-finite weights"; "NaN"; "1 of"; "--allow-nonfinite" ]
                    [ "run"; "--model"; dir; "--prompt"; "ab" ]
                let r = run [ "info"; "--model"; dir; "--allow-nonfinite"; "--json" ]
                Expect.equal r.ExitCode 0 "info loads"
                Expect.stringContains r.Stderr "warning: the weights are not finite" "the weight is reported"
                let report = JsonDocument.Parse(r.Stdout).RootElement.GetProperty "non_finite"
                Expect.stringStarts (report.GetProperty("where").GetString()) "weight '" "the JSON names the weight"
            }
            test "orders, widths and loops too large are refused at once" {
                refusedWithin 20.0 [ "0..64"; "2147483647" ] [ "series"; "--order"; "2147483647" ]
                refusedWithin 20.0 [ "0..64"; "100000" ] [ "quickstart"; "--order"; "100000" ]
                refusedWithin 20.0 [ "0..64" ] [ "lens"; "--model"; "toy"; "--prompt"; "hi"; "--order"; "2147483647" ]
                refusedWithin 20.0 [ "width 100000"; "needs about"; "available" ] [ "quickstart"; "--d"; "100000" ]
                refusedWithin 20.0 [ "--at must be a finite number" ] [ "series"; "--at"; "nan" ]
                refusedWithin
                    20.0
                    [ "0..1000000" ]
                    [ "joint-lens"; "--model"; "toy"; "--prompt"; "hi"; "--iters"; "2147483647" ]
            }
            test "paths of the wrong kind say so" {
                let dir = tempDir ()
                let file = Path.Combine(dir, "config.json")
                File.WriteAllText(file, "{}")
                refusedWithin 60.0 [ "is a file, not a directory" ] [ "info"; "--model"; file ]
                refusedWithin
                    60.0
                    [ "--tokens"; "is a directory, not a file" ]
                    [ "mass"; "--model"; "toy"; "--tokens"; dir; "--path"; "embed" ]
            }
            test "byte tokens and control characters are escaped in tables; JSON has text and piece" {
                let tokenizer = Jet.Tests.Fixtures.path [ "gpt2-tokenizer" ]
                let r = run [ "tokenize"; "--model"; tokenizer; "--text"; "a\u0007b\u001b[31mc" ]
                Expect.equal r.ExitCode 0 r.Stderr
                Expect.stringContains r.Stdout "<0x07>" "BEL visible"
                Expect.isFalse (r.Stdout |> Seq.exists (fun c -> c = '\u0007' || c = '\u001b')) "no raw control bytes"
                let root = json (run [ "run"; "--model"; "toy"; "--prompt"; "a b"; "--json" ])
                let space = root.GetProperty("tokens").[1]
                Expect.equal (space.GetProperty("text").GetString()) " " "decoded text"
                Expect.equal (space.GetProperty("piece").GetString()) "␣" "printed piece"
            }
            test "a prompt holding U+FFFD (what invalid UTF-8 becomes) is warned about" {
                let r = run [ "run"; "--model"; "toy"; "--prompt"; "a\uFFFDb" ]
                Expect.equal r.ExitCode 0 r.Stderr
                Expect.stringContains r.Stderr "U+FFFD" "warned"
            }
        ]
