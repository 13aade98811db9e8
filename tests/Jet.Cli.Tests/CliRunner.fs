/// Runs the built `jet` command (copied beside this test assembly) as a child process.
module Jet.Cli.Tests.CliRunner

open System
open System.Diagnostics
open System.IO
open System.Text.Json

type CliResult = { ExitCode: int; Stdout: string; Stderr: string }

let private jetDll = Path.Combine(AppContext.BaseDirectory, "jet.dll")

/// `jet args…` in `workingDirectory` with extra `environment` variables; fails the test if it runs longer than
/// `timeoutSeconds`.
let runWith
    (environment: (string * string) list)
    (workingDirectory: string)
    (timeoutSeconds: int)
    (args: string list)
    : CliResult =
    let info =
        ProcessStartInfo(
            "dotnet",
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory
        )
    for name, value in environment do
        info.Environment.[name] <- value
    info.ArgumentList.Add jetDll
    for a in args do
        info.ArgumentList.Add a
    use p = Process.Start info
    let stdout = p.StandardOutput.ReadToEndAsync()
    let stderr = p.StandardError.ReadToEndAsync()
    if not (p.WaitForExit(timeoutSeconds * 1000)) then
        p.Kill true
        failwithf "jet %s did not finish within %d s" (String.Join(" ", args)) timeoutSeconds
    { ExitCode = p.ExitCode; Stdout = stdout.Result; Stderr = stderr.Result }

/// `jet args…` in `workingDirectory`; fails the test if it runs longer than `timeoutSeconds`.
let runFrom (workingDirectory: string) (timeoutSeconds: int) (args: string list) : CliResult =
    runWith [] workingDirectory timeoutSeconds args

/// `jet args…` in the test's working directory, within five minutes.
let run (args: string list) = runFrom Environment.CurrentDirectory 300 args

/// `jet args…` with `dir` as the working directory.
let runIn (dir: string) (args: string list) = runFrom dir 300 args

/// Parses the single JSON line a `--json` command prints.
let json (r: CliResult) =
    if r.ExitCode <> 0 then
        failwithf "exit code %d, stderr: %s" r.ExitCode r.Stderr
    JsonDocument.Parse(r.Stdout.Trim()).RootElement

let private created = Collections.Concurrent.ConcurrentBag<string>()

// Temporary folders go when the test process ends.
AppDomain.CurrentDomain.ProcessExit.Add(fun _ ->
    for dir in created do
        try
            Directory.Delete(dir, true)
        with _ ->
            ())

/// A fresh temporary directory for output files, deleted when the test process exits.
let tempDir () =
    let dir = Path.Combine(Path.GetTempPath(), "jetdsl-cli-" + Guid.NewGuid().ToString("N"))
    Directory.CreateDirectory dir |> ignore
    created.Add dir
    dir
