/// Shared pieces of the `jet` command: JSON output, tables, progress and error reporting.
module Jet.Cli.Console

open System
open System.IO
open System.Text.Json
open Jet.Core

let private jsonOptions =
    JsonSerializerOptions(
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        NumberHandling = Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals
    )

/// Prints one value (records, anonymous records, arrays, lists) as compact JSON on one line of standard output.
/// Member names are written as declared, so anonymous records spell the JSON schema directly.
let writeJson (value: obj) =
    Console.Out.WriteLine(JsonSerializer.Serialize(value, value.GetType(), jsonOptions))
    Console.Out.Flush()

/// A [rows, cols] tensor as nested float arrays, for JSON.
let matrix (t: Tensor) : float32[][] =
    let data = t.detach().cpu().to_type(TorchSharp.torch.float32).contiguous()
    let rows, cols = int data.shape.[0], int data.shape.[1]
    let values = data.data<float32>().ToArray()
    Array.init rows (fun r -> Array.sub values (r * cols) cols)

/// Left-aligned text table with a header row, for terminals.
let printTable (headers: string list) (rows: string list list) =
    let widths =
        headers
        |> List.mapi (fun i h -> (h :: (rows |> List.map (fun r -> r.[i]))) |> List.map (fun s -> s.Length) |> List.max)
    let line (cells: string list) =
        cells |> List.mapi (fun i c -> c.PadRight widths.[i]) |> String.concat "  " |> fun s -> s.TrimEnd()
    printfn "%s" (line headers)
    printfn "%s" (widths |> List.map (fun w -> String('─', w)) |> String.concat "  ")
    for r in rows do
        printfn "%s" (line r)

/// A progress bar on standard error. When standard error is redirected (a log file) it writes one line at the end
/// instead of redrawing the bar.
type ProgressBar(label: string, total: int64) =
    let started = Diagnostics.Stopwatch.StartNew()
    let mutable last = -1
    member _.Report(done': int64) =
        let percent = if total <= 0L then 100 else int (100L * done' / total)
        if percent <> last then
            last <- percent
            let elapsed = started.Elapsed.TotalSeconds
            if not Console.IsErrorRedirected then
                let filled = percent * 30 / 100
                eprintf "\r%s [%s%s] %3d%% %5.1fs" label (String('#', filled)) (String('.', 30 - filled)) percent elapsed
                if done' >= total then eprintfn ""
            elif done' >= total then
                eprintfn "%s: 100%% in %.1fs" label elapsed
    interface IProgress<int64> with
        member p.Report(v) = p.Report v

/// Runs a command body, turning JetDsl errors into one line on stderr and exit code 1.
let guard (body: unit -> int) : int =
    try
        body ()
    with
    | :? JetException as e ->
        eprintfn "error: %s" e.Message
        1
    | :? IOException as e ->
        eprintfn "error: %s" e.Message
        1
    | :? UnauthorizedAccessException as e ->
        eprintfn "error: %s" e.Message
        1
