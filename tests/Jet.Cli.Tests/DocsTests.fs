/// The documentation shows code that CI runs: every fenced block preceded by `<!-- from: PATH -->` in README.md or
/// docs/*.md must appear verbatim (as consecutive lines) in PATH, a file that the test suite builds or runs.
module Jet.Cli.Tests.DocsTests

open System
open System.IO
open System.Text.RegularExpressions
open Expecto

let private repositoryRoot =
    let rec up (dir: DirectoryInfo) =
        if isNull dir then
            failwith "JetDsl.sln not found above the test assembly"
        elif File.Exists(Path.Combine(dir.FullName, "JetDsl.sln")) then
            dir.FullName
        else
            up dir.Parent
    up (DirectoryInfo AppContext.BaseDirectory)

/// (document, source path, block lines) for every marked block.
let private markedBlocks () =
    let documents =
        Path.Combine(repositoryRoot, "README.md")
        :: List.ofArray (Directory.GetFiles(Path.Combine(repositoryRoot, "docs"), "*.md"))
    [
        for doc in documents do
            let lines = File.ReadAllLines doc
            for i in 0 .. lines.Length - 2 do
                let m = Regex.Match(lines.[i].Trim(), @"^<!--\s*from:\s*(\S+)\s*-->$")
                if m.Success && lines.[i + 1].StartsWith "```" then
                    let body =
                        lines
                        |> Array.skip (i + 2)
                        |> Array.takeWhile (fun l -> not (l.StartsWith "```"))
                        |> List.ofArray
                    yield Path.GetFileName doc, m.Groups.[1].Value, body
    ]

let private containsRun (haystack: string list) (needle: string list) =
    let trim (l: string) = l.TrimEnd()
    let haystack, needle = List.map trim haystack, List.map trim needle
    haystack |> List.windowed needle.Length |> List.exists ((=) needle)

/// (document, command arguments, transcript lines) for every ```console block that runs `jet` on the toy model.
let private transcripts () =
    let documents =
        Path.Combine(repositoryRoot, "README.md")
        :: List.ofArray (Directory.GetFiles(Path.Combine(repositoryRoot, "docs"), "*.md"))
    [
        for doc in documents do
            let lines = File.ReadAllLines doc
            for i in 0 .. lines.Length - 2 do
                if lines.[i] = "```console" && lines.[i + 1].StartsWith "$ jet " then
                    let command = lines.[i + 1].Substring 6
                    let output =
                        lines
                        |> Array.skip (i + 2)
                        |> Array.takeWhile (fun l -> not (l.StartsWith "```"))
                        |> List.ofArray
                    // Shell-style words: "…" groups words.
                    let words =
                        [
                            for m in Regex.Matches(command, "\"([^\"]*)\"|(\\S+)") ->
                                if m.Groups.[1].Success then
                                    m.Groups.[1].Value
                                else
                                    m.Groups.[2].Value
                        ]
                    let usesToy = not (List.contains "--model" words) || List.contains "toy" words
                    if usesToy then
                        yield Path.GetFileName doc, words, output
    ]

/// Replaces the value of every picture option with a file in `dir`, so running a documented command never writes
/// into the repository.
let private redirectPictures (dir: string) (words: string list) =
    let rec go =
        function
        | option :: value :: rest when option = "--out" || option = "--plot" ->
            option :: Path.Combine(dir, Path.GetFileName(value: string)) :: go rest
        | w :: rest -> w :: go rest
        | [] -> []
    go words

[<Tests>]
let tests =
    testList
        "documentation"
        [
            test "every marked code block is copied from a file CI builds or runs" {
                let blocks = markedBlocks ()
                Expect.isGreaterThanOrEqual blocks.Length 2 "README and the C# guide mark their examples"
                for doc, source, body in blocks do
                    let path = Path.Combine(repositoryRoot, source)
                    Expect.isTrue (File.Exists path) (sprintf "%s cites %s, which does not exist" doc source)
                    Expect.isTrue
                        (containsRun (List.ofArray (File.ReadAllLines path)) body)
                        (sprintf "%s: the block marked from %s is not a verbatim excerpt of it" doc source)
            }
            test "every documented jet command on the toy model runs and prints what the documentation shows" {
                let blocks = transcripts ()
                Expect.isGreaterThanOrEqual blocks.Length 4 "README and the lens guide show commands"
                for doc, words, output in blocks do
                    let dir = CliRunner.tempDir ()
                    let r = CliRunner.run (redirectPictures dir words)
                    Expect.equal r.ExitCode 0 (sprintf "%s: jet %s failed: %s" doc (String.Join(" ", words)) r.Stderr)
                    let printed = r.Stdout.Replace("\r", "").TrimEnd('\n').Split('\n') |> List.ofArray
                    // The one line that names the picture's path differs by where the test writes it.
                    let comparable (lines: string list) = lines |> List.filter (fun l -> not (l.StartsWith "picture: "))
                    if not output.IsEmpty then
                        Expect.sequenceEqual
                            (comparable printed)
                            (comparable output)
                            (sprintf "%s: the output of jet %s" doc (String.Join(" ", words)))
            }
        ]
