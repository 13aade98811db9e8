/// Where the shared test fixtures live (real tokenizer files and save_pretrained checkpoints that the repository
/// does not redistribute): $JETDSL_FIXTURES if set, else `shared/fixtures` beside the repository
/// (`../shared/fixtures` from its root), else /work/shared/fixtures. Tests that need them fail, never skip, when
/// none of these exists.
module Jet.Tests.Fixtures

open System
open System.IO

let private candidates () =
    let fromEnvironment = Environment.GetEnvironmentVariable "JETDSL_FIXTURES"
    let rec repositoryRoot (dir: DirectoryInfo) =
        if isNull dir then
            None
        elif File.Exists(Path.Combine(dir.FullName, "JetDsl.sln")) then
            Some dir
        else
            repositoryRoot dir.Parent
    [
        if not (String.IsNullOrEmpty fromEnvironment) then
            fromEnvironment
        match repositoryRoot (DirectoryInfo AppContext.BaseDirectory) with
        | Some root when not (isNull root.Parent) -> Path.Combine(root.Parent.FullName, "shared", "fixtures")
        | _ -> ()
        "/work/shared/fixtures"
    ]

/// The fixtures folder.
let directory =
    lazy
        (match candidates () |> List.tryFind Directory.Exists with
         | Some dir -> dir
         | None ->
             failwithf
                 "The shared fixtures were not found (looked in: %s); set JETDSL_FIXTURES to the fixtures folder."
                 (String.concat ", " (candidates ())))

/// A path inside the fixtures folder.
let path (parts: string list) = Path.Combine(Array.ofList (directory.Value :: parts))

/// A file of this repository (for example `[ "docs"; "examples"; "refusal-words.txt" ]`), found from the test assembly
/// upwards: `__SOURCE_DIRECTORY__` is path-mapped in CI builds, so tests must not build paths from it.
let repositoryFile (parts: string list) =
    let rec up (dir: DirectoryInfo) =
        if isNull dir then
            failwithf "JetDsl.sln was not found above %s." AppContext.BaseDirectory
        elif File.Exists(Path.Combine(dir.FullName, "JetDsl.sln")) then
            dir.FullName
        else
            up dir.Parent
    Path.Combine(Array.ofList (up (DirectoryInfo AppContext.BaseDirectory) :: parts))
