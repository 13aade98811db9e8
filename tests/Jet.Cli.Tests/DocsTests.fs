/// The documentation shows code that CI runs: every fenced block preceded by `<!-- from: PATH -->` in README.md or
/// docs/*.md must appear verbatim (as consecutive lines) in PATH, a file that the test suite builds or runs.
module Jet.Cli.Tests.DocsTests

open System
open System.IO
open System.Text.RegularExpressions
open Expecto

let private repositoryRoot =
    let rec up (dir: DirectoryInfo) =
        if isNull dir then failwith "JetDsl.sln not found above the test assembly"
        elif File.Exists(Path.Combine(dir.FullName, "JetDsl.sln")) then dir.FullName
        else up dir.Parent
    up (DirectoryInfo AppContext.BaseDirectory)

/// (document, source path, block lines) for every marked block.
let private markedBlocks () =
    let documents = Path.Combine(repositoryRoot, "README.md") :: List.ofArray (Directory.GetFiles(Path.Combine(repositoryRoot, "docs"), "*.md"))
    [ for doc in documents do
        let lines = File.ReadAllLines doc
        for i in 0 .. lines.Length - 2 do
            let m = Regex.Match(lines.[i].Trim(), @"^<!--\s*from:\s*(\S+)\s*-->$")
            if m.Success && lines.[i + 1].StartsWith "```" then
                let body = lines |> Array.skip (i + 2) |> Array.takeWhile (fun l -> not (l.StartsWith "```")) |> List.ofArray
                yield Path.GetFileName doc, m.Groups.[1].Value, body ]

let private containsRun (haystack: string list) (needle: string list) =
    let trim (l: string) = l.TrimEnd()
    let haystack, needle = List.map trim haystack, List.map trim needle
    haystack |> List.windowed needle.Length |> List.exists ((=) needle)

[<Tests>]
let tests =
    testList "documentation" [
        test "every marked code block is copied from a file CI builds or runs" {
            let blocks = markedBlocks ()
            Expect.isGreaterThanOrEqual blocks.Length 2 "README and the C# guide mark their examples"
            for doc, source, body in blocks do
                let path = Path.Combine(repositoryRoot, source)
                Expect.isTrue (File.Exists path) (sprintf "%s cites %s, which does not exist" doc source)
                Expect.isTrue (containsRun (List.ofArray (File.ReadAllLines path)) body) (sprintf "%s: the block marked from %s is not a verbatim excerpt of it" doc source)
        }
    ]
