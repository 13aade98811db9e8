/// Smoke tests of `jet lens`, `jet joint-lens`, `jet bigrams` and `jet mass` on the toy model: JSON schemas,
/// pictures and one-line errors.
module Jet.Cli.Tests.LensCliTests

open System
open System.IO
open System.Text.Json
open Expecto
open Jet.Cli.Tests.CliRunner

let private items (e: JsonElement) = [ for x in e.EnumerateArray() -> x ]
let private prop (name: string) (e: JsonElement) = e.GetProperty name

let private pngSignature = [| 137uy; 80uy; 78uy; 71uy; 13uy; 10uy; 26uy; 10uy |]

/// The command fails with exit code 1 and one line on stderr that mentions every fragment.
let private failsWith (args: string list) (fragments: string list) =
    let r = run args
    Expect.equal r.ExitCode 1 (sprintf "exit code of jet %s" (String.Join(" ", args)))
    let lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)
    Expect.equal lines.Length 1 (sprintf "one line on stderr: %s" r.Stderr)
    Expect.stringStarts lines.[0] "error: " "an error line"
    for f in fragments do
        Expect.stringContains lines.[0] f "the error says what is wrong"

[<Tests>]
let tests =
    testList
        "jet lenses and n-grams"
        [
            test "lens --json: tokens, order and per-stream positions with top tokens, cosine and KL" {
                let root =
                    json (
                        run
                            [
                                "lens"
                                "--model"
                                "toy"
                                "--prompt"
                                "hi jet"
                                "--streams"
                                "0,1,2"
                                "--order"
                                "1"
                                "--top"
                                "3"
                                "--json"
                            ]
                    )
                let tokens = items (prop "tokens" root)
                Expect.equal
                    (tokens |> List.map (fun t -> (prop "text" t).GetString()))
                    [ "h"; "i"; " "; "j"; "e"; "t" ]
                    "token texts concatenate to the prompt, as in jet run"
                Expect.equal ((prop "id" tokens.[0]).GetInt32()) (int 'h' - 32) "toy ids"
                Expect.equal ((prop "order" root).GetInt32()) 1 "order"
                let streams = items (prop "streams" root)
                Expect.equal (streams |> List.map (fun l -> (prop "stream" l).GetInt32())) [ 0; 1; 2 ] "stream indices"
                for stream in streams do
                    let positions = items (prop "positions" stream)
                    Expect.equal positions.Length 6 "one entry per position"
                    for p in positions do
                        let top = items (prop "top" p)
                        Expect.equal top.Length 3 "--top 3"
                        let logits = top |> List.map (fun t -> (prop "logit" t).GetDouble())
                        Expect.equal logits (List.sortDescending logits) "best first"
                        Expect.isTrue
                            ((prop "token" top.[0]).GetString() <> "" && (prop "id" top.[0]).GetInt32() >= 0)
                            "id and token"
                        let cos = (prop "cosine" p).GetDouble()
                        Expect.isTrue (cos >= -1.0 && cos <= 1.0) "cosine in [-1, 1]"
                        Expect.isGreaterThanOrEqual ((prop "kl" p).GetDouble()) 0.0 "KL ≥ 0"
                // The lens at h_L is the model's output.
                for p in items (prop "positions" streams.[2]) do
                    Expect.floatClose Accuracy.medium ((prop "cosine" p).GetDouble()) 1.0 "cosine 1 at h_L"
                    Expect.isLessThan ((prop "kl" p).GetDouble()) 1e-5 "KL 0 at h_L"
            }

            test "lens prints a table and writes its pictures" {
                let dir = tempDir ()
                let png, svg = Path.Combine(dir, "lens.png"), Path.Combine(dir, "metrics.svg")
                let r = run [ "lens"; "--model"; "toy"; "--prompt"; "abc"; "--out"; png; "--plot"; svg ]
                Expect.equal r.ExitCode 0 r.Stderr
                Expect.stringContains r.Stdout "h₀ (Enc)" "a row per stream"
                Expect.stringContains r.Stdout "model" "the model's row"
                Expect.equal (File.ReadAllBytes(png).[0..7]) pngSignature "PNG written"
                Expect.stringContains (File.ReadAllText svg) "<svg" "SVG written"
            }

            test "joint-lens --json: losses fall, weights sum to 1 per position" {
                let dir = tempDir ()
                let out = Path.Combine(dir, "joint.png")
                let root =
                    json (
                        run
                            [
                                "joint-lens"
                                "--model"
                                "toy"
                                "--prompt"
                                "jets"
                                "--streams"
                                "0,1,2"
                                "--iters"
                                "40"
                                "--lr"
                                "0.1"
                                "--out"
                                out
                                "--json"
                            ]
                    )
                Expect.equal [ for s in items (prop "streams" root) -> s.GetInt32() ] [ 0; 1; 2 ] "streams"
                let losses = items (prop "losses" root) |> List.map (fun l -> l.GetDouble())
                Expect.equal losses.Length 41 "uniform loss plus one per step"
                Expect.isLessThan (List.last losses) losses.Head "the loss decreases"
                let centres = items (prop "centres" root)
                Expect.equal
                    (centres |> List.map (fun c -> (prop "centre" c).GetString()))
                    [ "Enc"; "(h₁ − Enc)"; "(h₂ − h₁)" ]
                    "centres"
                for p in 0..3 do
                    let total = centres |> List.sumBy (fun c -> (items (prop "weights" c)).[p].GetDouble())
                    Expect.floatClose Accuracy.medium total 1.0 "weights sum to 1"
                Expect.equal (items (prop "top" (prop "combined" root))).Length 4 "combined top-1 per position"
                Expect.equal (File.ReadAllBytes(out).[0..7]) pngSignature "picture written"
            }

            test "bigrams --global --json: the N best pairs, best first" {
                let root =
                    json (run [ "bigrams"; "--model"; "toy"; "--path"; "embed"; "--top"; "7"; "--global"; "--json" ])
                Expect.equal ((prop "path" root).GetString()) "U·LN(Emb)" "path in path notation"
                let rows = items (prop "rows" root)
                Expect.equal rows.Length 7 "N rows"
                let scores = rows |> List.map (fun r -> (prop "score" r).GetDouble())
                Expect.equal scores (List.sortDescending scores) "best first"
                for r in rows do
                    for key in [ "from"; "to"; "from_token"; "to_token"; "score" ] do
                        Expect.isTrue (fst (r.TryGetProperty key)) (sprintf "row has %s" key)
                    Expect.isTrue
                        ((prop "score" r).GetDouble() > 0.0 && (prop "score" r).GetDouble() <= 1.0)
                        "probabilities"
            }

            test "bigrams per token: N rows for every first token, grouped ascending; --logit and --no-diagonal" {
                let root =
                    json (
                        run
                            [
                                "bigrams"
                                "--model"
                                "toy"
                                "--path"
                                "mlp:2"
                                "--top"
                                "3"
                                "--logit"
                                "--no-diagonal"
                                "--batch-size"
                                "17"
                                "--json"
                            ]
                    )
                let rows = items (prop "rows" root)
                Expect.equal rows.Length 300 "3 rows for each of the 100 toy tokens"
                let froms = rows |> List.map (fun r -> (prop "from" r).GetInt32())
                Expect.equal
                    froms
                    [
                        for z in 0..99 do
                            for _ in 1..3 -> z
                    ]
                    "grouped by from, ascending"
                Expect.isFalse
                    (rows |> List.exists (fun r -> (prop "from" r).GetInt32() = (prop "to" r).GetInt32()))
                    "no diagonal pairs"
                for group in List.chunkBySize 3 rows do
                    let s = group |> List.map (fun r -> (prop "score" r).GetDouble())
                    Expect.equal s (List.sortDescending s) "best first within a group"
                Expect.isTrue
                    (rows |> List.exists (fun r -> (prop "score" r).GetDouble() > 1.0))
                    "logits, not probabilities"
            }

            test "bigrams shows a progress bar and a table; --out writes the picture" {
                let dir = tempDir ()
                let out = Path.Combine(dir, "bigrams.svg")
                let r = run [ "bigrams"; "--model"; "toy"; "--path"; "embed"; "--top"; "5"; "--global"; "--out"; out ]
                Expect.equal r.ExitCode 0 r.Stderr
                Expect.stringContains r.Stderr "100%" "progress bar"
                Expect.stringContains r.Stdout "next token" "table header"
                Expect.stringContains (File.ReadAllText out) "Jet bigrams: U·LN(Emb) (emb)" "picture title"
            }

            test "mass: one line per model; --json with two models side by side" {
                let dir = tempDir ()
                let file = Path.Combine(dir, "tokens.txt")
                File.WriteAllLines(file, [| "a"; "␣"; "e" |])
                let r = run [ "mass"; "--model"; "toy"; "--compare"; "toy"; "--tokens"; file; "--path"; "embed" ]
                Expect.equal r.ExitCode 0 r.Stderr
                let rows = r.Stdout.Split('\n') |> Array.filter (fun l -> l.StartsWith "toy ")
                Expect.equal rows.Length 2 "one row per model"
                Expect.stringContains r.Stdout "difference (2nd − 1st)" "the difference beside them"
                let root = json (run [ "mass"; "--model"; "toy"; "--tokens"; file; "--path"; "mlp:1"; "--json" ])
                let models = items (prop "models" root)
                Expect.equal models.Length 1 "one model"
                Expect.equal ((prop "tokens" models.[0]).GetInt32()) 3 "three tokens"
                let mass = (prop "mass" models.[0]).GetDouble()
                Expect.isTrue (mass > 0.0 && mass < 1.0) "a probability mass"
            }

            test "every command that opens a model takes --dtype and --device" {
                let lens =
                    json (
                        run
                            [
                                "lens"
                                "--model"
                                "toy"
                                "--prompt"
                                "ab"
                                "--dtype"
                                "float64"
                                "--device"
                                "cpu"
                                "--json"
                            ]
                    )
                Expect.equal (items (prop "streams" lens)).Length 3 "lens in float64 on the CPU"
                let joint =
                    json (
                        run
                            [
                                "joint-lens"
                                "--model"
                                "toy"
                                "--prompt"
                                "ab"
                                "--iters"
                                "2"
                                "--dtype"
                                "float64"
                                "--json"
                            ]
                    )
                Expect.equal (items (prop "losses" joint)).Length 3 "joint lens in float64"
                let bigrams =
                    json (
                        run
                            [
                                "bigrams"
                                "--model"
                                "toy"
                                "--path"
                                "embed"
                                "--top"
                                "2"
                                "--global"
                                "--dtype"
                                "float64"
                                "--json"
                            ]
                    )
                Expect.equal (items (prop "rows" bigrams)).Length 2 "bigrams in float64"
                let dir = tempDir ()
                let file = Path.Combine(dir, "tokens.txt")
                File.WriteAllLines(file, [| "a" |])
                let mass =
                    json (
                        run
                            [
                                "mass"
                                "--model"
                                "toy"
                                "--compare"
                                "toy"
                                "--tokens"
                                file
                                "--path"
                                "embed"
                                "--dtype"
                                "float64"
                                "--json"
                            ]
                    )
                Expect.equal (items (prop "models" mass)).Length 2 "mass of two models in float64"
                for command in
                    [
                        [ "lens"; "--prompt"; "ab" ]
                        [ "joint-lens"; "--prompt"; "ab" ]
                        [ "bigrams"; "--path"; "embed" ]
                        [ "mass"; "--tokens"; file; "--path"; "embed" ]
                    ] do
                    failsWith
                        (command @ [ "--model"; "toy"; "--dtype"; "int8" ])
                        [ "Unknown --dtype 'int8'"; "float32, float64, bfloat16, float16" ]
                    failsWith
                        (command @ [ "--model"; "toy"; "--device"; "cuda" ])
                        [ "CUDA is not available in this build"; "docs/troubleshooting.md#using-a-gpu-cuda" ]
                    failsWith
                        (command @ [ "--model"; "toy"; "--device"; "gpu" ])
                        [ "Unknown --device 'gpu'"; "cpu, cuda or cuda:N" ]
            }

            test "bad input: one-line errors with exit code 1" {
                failsWith [ "lens"; "--model"; "toy"; "--prompt"; "ab"; "--streams"; "0,7" ] [ "h_7"; "h_0..h_2" ]
                failsWith
                    [ "lens"; "--model"; "toy"; "--prompt"; "ab"; "--streams"; "0,x" ]
                    [ "--streams"; "comma-separated" ]
                failsWith
                    [ "lens"; "--model"; "toy"; "--prompt"; "ab"; "--layers"; "0,1" ]
                    [ "--layers was renamed --streams" ]
                failsWith
                    [ "joint-lens"; "--model"; "toy"; "--prompt"; "ab"; "--layers"; "0,1" ]
                    [ "--layers was renamed --streams" ]
                failsWith [ "lens"; "--model"; "toy"; "--prompt"; "" ] [ "prompt is empty" ]
                failsWith [ "lens"; "--model"; "toy"; "--prompt"; "ab"; "--order"; "-1" ] [ "0..64" ]
                failsWith [ "lens"; "--model"; "toy"; "--prompt"; "ab"; "--out"; "x.jpg" ] [ ".png or .svg" ]
                failsWith
                    [ "lens"; "--model"; "toy"; "--prompt"; "ab"; "--streams"; "1,,2" ]
                    [ "--streams has an empty item" ]
                failsWith [ "lens"; "--model"; "toy"; "--prompt"; "ab"; "--streams=" ] [ "--streams is empty" ]
                failsWith [ "lens"; "--model"; "toy"; "--prompt"; "ab"; "--order=-1" ] [ "0..64"; "got -1" ]
                let blocked = Path.Combine(tempDir (), "file.txt")
                File.WriteAllText(blocked, "x")
                for command in
                    [
                        [ "lens"; "--prompt"; "ab" ]
                        [ "joint-lens"; "--prompt"; "ab" ]
                        [ "bigrams"; "--path"; "embed" ]
                    ] do
                    failsWith
                        (command @ [ "--model"; "toy"; "--out"; Path.Combine(blocked, "x.png") ])
                        [ "Cannot write --out" ]
                failsWith
                    [ "lens"; "--model"; "toy"; "--prompt"; "ab"; "--plot"; Path.Combine(blocked, "x.svg") ]
                    [ "Cannot write --plot" ]
                failsWith
                    [ "joint-lens"; "--model"; "toy"; "--prompt"; "ab"; "--streams"; "2,1" ]
                    [ "strictly increasing" ]
                failsWith
                    [ "bigrams"; "--model"; "toy"; "--path"; "mlp" ]
                    [ "Unknown path step \"mlp\""; "block1, block2" ]
                failsWith [ "bigrams"; "--model"; "toy"; "--path"; "mlp:9" ] [ "\"mlp9\""; "block1, block2" ]
                failsWith
                    [ "bigrams"; "--model"; "toy"; "--path"; "embed"; "--prob"; "--logit" ]
                    [ "exclude each other" ]
                failsWith [ "bigrams"; "--model"; "toy"; "--path"; "embed"; "--top"; "0" ] [ "got 0" ]
                failsWith
                    [ "mass"; "--model"; "toy"; "--tokens"; "/no/such/file.txt"; "--path"; "embed" ]
                    [ "/no/such/file.txt"; "does not exist" ]
                let dir = tempDir ()
                let file = Path.Combine(dir, "tokens.txt")
                File.WriteAllLines(file, [| "a"; "é" |])
                failsWith
                    [ "mass"; "--model"; "toy"; "--tokens"; file; "--path"; "embed" ]
                    [ "Line 2"; "\"é\""; "cannot be tokenized" ]
                failsWith [ "lens"; "--model"; "/no/such/model"; "--prompt"; "ab" ] [ "/no/such/model" ]
            }
        ]
