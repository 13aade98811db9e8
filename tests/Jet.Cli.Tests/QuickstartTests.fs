module Jet.Cli.Tests.QuickstartTests

open System
open System.IO
open Expecto
open Jet.Cli.Tests.CliRunner

[<Tests>]
let tests =
    testList
        "jet quickstart"
        [
            test "prints the four paths, the remainder, the reconstruction error and writes the picture" {
                let dir = tempDir ()
                let out = Path.Combine(dir, "carving.svg")
                let r = run [ "quickstart"; "--out"; out ]
                Expect.equal r.ExitCode 0 (sprintf "exit code; stderr: %s" r.Stderr)
                for name in
                    [
                        "U·J¹LN(J¹γ₂(Enc))"
                        "U·J¹LN(J¹γ₂(γ₁(Enc)))"
                        "U·J¹LN(J¹id(Enc))"
                        "U·J¹LN(J¹id(γ₁(Enc)))"
                        "remainder"
                        "‖remainder‖"
                        "reconstruction error"
                    ] do
                    Expect.stringContains r.Stdout name (sprintf "mentions %s" name)
                let svg = File.ReadAllText out
                Expect.stringContains svg "<svg" "an SVG document"
                for name in [ "U·J¹LN(J¹γ₂(Enc))"; "remainder" ] do
                    Expect.stringContains svg name "the legend names the paths"
            }
            test "without --out no file is written, and the output says how to ask for the picture" {
                let dir = tempDir ()
                let r = runIn dir [ "quickstart" ]
                Expect.equal r.ExitCode 0 (sprintf "exit code; stderr: %s" r.Stderr)
                Expect.isEmpty (Directory.GetFileSystemEntries dir) "nothing written to the working folder"
                Expect.stringContains r.Stdout "picture: none (add --out FILE.png" "says how to draw it"
            }
            test "--out=FILE.png (the = form) writes a PNG" {
                let dir = tempDir ()
                let out = Path.Combine(dir, "q.png")
                let r = run [ "quickstart"; "--out=" + out; "--order=0" ]
                Expect.equal r.ExitCode 0 (sprintf "exit code; stderr: %s" r.Stderr)
                let bytes = File.ReadAllBytes out
                Expect.equal bytes.[0..7] [| 137uy; 80uy; 78uy; 71uy; 13uy; 10uy; 26uy; 10uy |] "PNG signature"
                Expect.stringContains r.Stdout "U·LN(γ₂(Enc))" "--order=0 was read"
            }
            test "an output that cannot be written is refused before any work, in one line" {
                let dir = tempDir ()
                let notAFolder = Path.Combine(dir, "file.txt")
                File.WriteAllText(notAFolder, "x")
                let folder = Directory.CreateDirectory(Path.Combine(dir, "pictures.png")).FullName
                for out, expected in
                    [
                        "", "--out is empty"
                        Path.Combine(notAFolder, "q.png"), "Cannot write --out"
                        folder, "it is a folder"
                        Path.Combine(dir, "q.jpg"), ".png or .svg"
                    ] do
                    let r = run [ "quickstart"; "--out"; out ]
                    Expect.equal r.ExitCode 1 (sprintf "exit code for --out %A" out)
                    Expect.stringContains r.Stderr expected (sprintf "message for --out %A" out)
                    Expect.isFalse (r.Stderr.Contains "   at ") "no stack trace"
                    Expect.equal r.Stdout "" "no work was printed"
            }
            test "--json follows the schema and the paths reconstruct the logits" {
                let dir = tempDir ()
                let root =
                    json (
                        run [ "quickstart"; "--json"; "--seed"; "3"; "--d"; "16"; "--out"; Path.Combine(dir, "q.svg") ]
                    )
                let paths =
                    [
                        for p in root.GetProperty("paths").EnumerateArray() ->
                            p.GetProperty("name").GetString(), p.GetProperty("logits")
                    ]
                Expect.equal paths.Length 4 "four paths"
                let grid (e: Text.Json.JsonElement) =
                    [| for row in e.EnumerateArray() -> [| for v in row.EnumerateArray() -> v.GetDouble() |] |]
                let logits = grid (root.GetProperty "logits")
                let remainder = grid (root.GetProperty "remainder")
                Expect.equal logits.Length 8 "8 positions"
                Expect.equal logits.[0].Length 100 "100 vocabulary entries"
                let mutable worst = 0.0
                for s in 0..7 do
                    for v in 0..99 do
                        let total = (paths |> List.sumBy (fun (_, p) -> (grid p).[s].[v])) + remainder.[s].[v]
                        worst <- max worst (abs (total - logits.[s].[v]))
                Expect.isLessThan worst 1e-4 "Σ paths + remainder = logits from the JSON numbers"
                Expect.isLessThan
                    (root.GetProperty("reconstruction_error").GetDouble())
                    1e-4
                    "reported reconstruction error"
            }
            test "--order 0 carves the same four paths at order 0" {
                let dir = tempDir ()
                let root = json (run [ "quickstart"; "--json"; "--order"; "0"; "--out"; Path.Combine(dir, "q.svg") ])
                let names = [ for p in root.GetProperty("paths").EnumerateArray() -> p.GetProperty("name").GetString() ]
                Expect.equal
                    names
                    [ "U·LN(γ₂(Enc))"; "U·LN(γ₂(γ₁(Enc)))"; "U·LN(Enc)"; "U·LN(γ₁(Enc))" ]
                    "order-0 names"
            }
            test "bad options are one-line errors" {
                let r = run [ "quickstart"; "--d"; "0" ]
                Expect.equal r.ExitCode 1 "exit code for --d 0"
                Expect.stringContains r.Stderr "--d must be ≥ 1" "message"
                let r = run [ "quickstart"; "--order"; "-1" ]
                Expect.equal r.ExitCode 1 "exit code for --order -1"
                Expect.stringContains r.Stderr "--order must be an integer in 0..64" "message"
            }
        ]
