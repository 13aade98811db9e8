/// `jet bigrams` over any path (the path grammar), `--compare` of two checkpoints, `jet mass` with word lists and
/// top-k, and `jet info`'s path steps, on the real trained stories260K (../shared/fixtures) and a perturbed copy.
module Jet.Cli.Tests.PathCliTests

open System
open System.IO
open System.Text.Json
open Expecto
open Jet.Core.Models
open Jet.Cli.Tests.CliRunner

let private items (e: JsonElement) = [ for x in e.EnumerateArray() -> x ]
let private prop (name: string) (e: JsonElement) = e.GetProperty name
let private stories = lazy (Jet.Tests.Fixtures.path [ "stories260K" ])

/// A copy of stories260K whose last MLP's up-projection carries seeded noise: a "fine-tune" with the same tokenizer.
let private perturbed =
    lazy
        (let dir = tempDir ()
         for file in Directory.GetFiles stories.Value do
             File.Copy(file, Path.Combine(dir, Path.GetFileName file))
         let weights = Path.Combine(dir, "model.safetensors")
         let header = Safetensors.readHeader weights
         let entry = header.Entries.["model.layers.4.mlp.up_proj.weight"]
         let bytes = File.ReadAllBytes weights
         let random = Random 5
         let start = int (header.DataStart + entry.Begin)
         for i in 0 .. int entry.ByteCount / 4 - 1 do
             let at = start + 4 * i
             let value = BitConverter.ToSingle(bytes, at) + float32 (0.05 * (random.NextDouble() - 0.5))
             BitConverter.GetBytes(value).CopyTo(bytes, at)
         File.WriteAllBytes(weights, bytes)
         dir)

/// The command fails with exit code 1 and one line on stderr that mentions every fragment.
let private failsWith (args: string list) (fragments: string list) =
    let r = run args
    Expect.equal r.ExitCode 1 (sprintf "exit code of jet %s; stderr %s" (String.Join(" ", args)) r.Stderr)
    let lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)
    Expect.equal lines.Length 1 (sprintf "one line: %s" r.Stderr)
    for f in fragments do
        Expect.stringContains r.Stderr f "message"

[<Tests>]
let tests =
    testList
        "paths"
        [
            test "info lists the steps a path may take, in text and JSON" {
                let r = run [ "info"; "--model"; stories.Value ]
                Expect.equal r.ExitCode 0 r.Stderr
                Expect.stringContains r.Stdout "Path steps" "section"
                Expect.stringContains r.Stdout "attention of block 5" "a step"
                let steps = json (run [ "info"; "--model"; stories.Value; "--json" ]) |> prop "path_steps" |> items
                Expect.equal
                    (steps |> List.map (fun s -> (prop "name" s).GetString()))
                    [
                        for b in 1..5 do
                            yield! [ sprintf "attn%d" b; sprintf "mlp%d" b ]
                    ]
                    "attention and MLP of each block, in order"
                Expect.equal ((prop "notation" steps.[9]).GetString()) "γ₁₀" "notation"
            }

            test "bigrams sweep any path of the grammar; the JSON names it in path notation" {
                let root =
                    json (
                        run
                            [
                                "bigrams"
                                "--model"
                                stories.Value
                                "--path"
                                "emb>attn1>mlp5"
                                "--global"
                                "--top"
                                "3"
                                "--json"
                            ]
                    )
                Expect.equal ((prop "path" root).GetString()) "U·LN(γ₁₀(γ₁(Emb)))" "notation"
                let rows = prop "rows" root |> items
                Expect.equal rows.Length 3 "three pairs"
                let scores = rows |> List.map (fun r -> (prop "score" r).GetDouble())
                Expect.equal scores (List.sortDescending scores) "best first"
                for shorthand, notation in [ "embed", "U·LN(Emb)"; "mlp:2", "U·LN(γ₄(Emb))"; "enc>γ3", "U·LN(γ₃(Enc))" ] do
                    let r =
                        json (
                            run
                                [
                                    "bigrams"
                                    "--model"
                                    stories.Value
                                    "--path"
                                    shorthand
                                    "--global"
                                    "--top"
                                    "1"
                                    "--json"
                                ]
                        )
                    Expect.equal ((prop "path" r).GetString()) notation shorthand
            }

            test "bad paths: one line naming the valid steps" {
                failsWith
                    [ "bigrams"; "--model"; stories.Value; "--path"; "emb>attn9"; "--global" ]
                    [ "\"attn9\""; "attn1, mlp1, attn2, …, attn5, mlp5" ]
                failsWith
                    [ "bigrams"; "--model"; stories.Value; "--path"; "emb>mlp3>attn1" ]
                    [ "γ₁ (attn1) cannot follow γ₆ (mlp3)" ]
                failsWith [ "bigrams"; "--model"; stories.Value; "--path"; "emb>>mlp1" ] [ "empty step" ]
                failsWith [ "bigrams"; "--model"; "toy"; "--path"; "emb>attn1" ] [ "\"attn1\""; "block1, block2" ]
            }

            test "--compare: risers and fallers with both scores, the top-k overlap, and a chart" {
                let dir = tempDir ()
                let chart = Path.Combine(dir, "changes.svg")
                let args =
                    [
                        "bigrams"
                        "--model"
                        stories.Value
                        "--compare"
                        perturbed.Value
                        "--path"
                        "emb>mlp5"
                        "--global"
                        "--top"
                        "8"
                        "--out"
                        chart
                        "--json"
                    ]
                let root = json (run args)
                Expect.equal ((prop "after" root).GetString()) perturbed.Value "the second model"
                let check (name: string) (sign: float) =
                    let rows = prop name root |> items
                    Expect.equal rows.Length 8 name
                    let changes = rows |> List.map (fun r -> (prop "change" r).GetDouble())
                    Expect.equal changes (List.sortBy (fun c -> -sign * c) changes) (name + " ordered")
                    Expect.isTrue (sign * changes.Head > 1e-3) (name + ": the perturbation moves some pair")
                    for r in rows do
                        let before, after = (prop "before" r).GetDouble(), (prop "after" r).GetDouble()
                        Expect.floatClose
                            Accuracy.medium
                            ((prop "change" r).GetDouble())
                            (after - before)
                            "change = after − before"
                        Expect.isTrue (before >= 0.0 && after <= 1.0) "probabilities"
                check "rises" 1.0
                check "falls" -1.0
                let overlap = (prop "overlap" root).GetInt32()
                Expect.isTrue (overlap >= 0 && overlap <= 8) "overlap of two top-8 lists"
                Expect.equal (prop "top_before" root |> items).Length 8 "first model's top 8"
                let svg = File.ReadAllText chart
                Expect.stringContains svg "rose most" "chart column"
                Expect.stringContains svg "fell most" "chart column"
                let text = run (args |> List.filter (fun a -> a <> "--json" && a <> "--out" && a <> chart))
                Expect.stringContains text.Stdout "Overlap of the two global top-8 lists" "text report"
            }

            test "--compare refuses another tokenizer, and --logit; --log-prob needs --compare" {
                failsWith
                    [ "bigrams"; "--model"; stories.Value; "--compare"; "toy"; "--path"; "embed"; "--global" ]
                    [ "different vocabularies"; "one tokenizer" ]
                failsWith
                    [ "bigrams"; "--model"; stories.Value; "--compare"; stories.Value; "--path"; "embed"; "--logit" ]
                    [ "--log-prob" ]
                failsWith [ "bigrams"; "--model"; "toy"; "--path"; "embed"; "--log-prob" ] [ "--compare" ]
            }

            test
                "mass of the example refusal list: words split into tokens are scored by their first, top-k and both models side by side" {
                let words = Jet.Tests.Fixtures.repositoryFile [ "docs"; "examples"; "refusal-words.txt" ]
                let args =
                    [
                        "mass"
                        "--model"
                        stories.Value
                        "--compare"
                        perturbed.Value
                        "--tokens"
                        words
                        "--path"
                        "emb>mlp5"
                        "--top-k"
                        "5"
                    ]
                let root = json (run (args @ [ "--json" ]))
                let models = prop "models" root |> items
                Expect.equal models.Length 2 "two models"
                for m in models do
                    let mass, inTop = (prop "mass" m).GetDouble(), (prop "top_k_mass" m).GetDouble()
                    Expect.isTrue (mass > 0.0 && mass < 1.0) "a probability mass"
                    Expect.isTrue (inTop >= 0.0 && inTop <= mass + 1e-9) "the top-k mass is part of the mass"
                    let split = prop "split_words" m |> items
                    Expect.isNonEmpty split "stories260K's 512 pieces split most of these words"
                    Expect.isTrue
                        (split |> List.forall (fun w -> (prop "tokens" w |> items).Length > 1))
                        "only words of several tokens are listed"
                let difference = prop "difference" root
                Expect.floatClose
                    Accuracy.high
                    ((prop "mass" difference).GetDouble())
                    ((prop "mass" models.[1]).GetDouble() - (prop "mass" models.[0]).GetDouble())
                    "difference = second − first"
                let text = run args
                Expect.equal text.ExitCode 0 text.Stderr
                Expect.stringContains text.Stdout "mass in top 5" "column"
                Expect.stringContains text.Stdout "difference (2nd − 1st)" "difference row"
                Expect.stringContains text.Stderr "scored by the first" "says how split words are scored"
            }
        ]
