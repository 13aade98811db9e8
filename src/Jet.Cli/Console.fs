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

/// Left-aligned text table with a header row, for terminals.
let printTable (headers: string list) (rows: string list list) =
    let widths =
        headers
        |> List.mapi (fun i h -> (h :: (rows |> List.map (fun r -> r.[i]))) |> List.map (fun s -> s.Length) |> List.max)
    let line (cells: string list) =
        cells
        |> List.mapi (fun i c -> c.PadRight widths.[i])
        |> String.concat "  "
        |> fun s -> s.TrimEnd()
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
                eprintf
                    "\r%s [%s%s] %3d%% %5.1fs"
                    label
                    (String('#', filled))
                    (String('.', 30 - filled))
                    percent
                    elapsed
                if done' >= total then
                    eprintfn ""
            elif done' >= total then
                eprintfn "%s: 100%% in %.1fs" label elapsed
    interface IProgress<int64> with
        member p.Report(v) = p.Report v

/// The error (and hidden usage text) of the lens commands' old `--layers`, which took stream indices.
[<Literal>]
let RenamedLayers =
    "--layers was renamed --streams (stream indices l of h_l, 0..L); for example --streams 0,1,2."

/// "0,3,6" → [0; 3; 6], for an option of comma-separated integers named `option` in errors.
let parseIndices (option: string) (text: string) : int list =
    if String.IsNullOrWhiteSpace text then
        raise (InvalidPlanException(sprintf "%s is empty; give comma-separated integers, for example 0,3,6." option))
    let parse (p: string) =
        match Int32.TryParse p with
        | true, v -> v
        | _ when p = "" ->
            raise (
                InvalidPlanException(
                    sprintf "%s has an empty item in %A; give comma-separated integers, for example 0,3,6." option text
                )
            )
        | _ ->
            raise (
                InvalidPlanException(
                    sprintf "%s must be comma-separated integers, for example 0,3,6; got %A." option text
                )
            )
    text.Split(',', StringSplitOptions.TrimEntries) |> Array.map parse |> List.ofArray

/// Writes a picture when a file was given (PNG or SVG by its extension, checked before the scene is drawn), and
/// says where on stderr.
let savePicture (file: string option) (scene: unit -> Jet.Core.Pictures.Scene) =
    match file with
    | Some f ->
        Jet.Core.Pictures.Pictures.save f (scene ())
        eprintfn "wrote %s" f
    | None -> ()

/// Checks, before any work, that a picture can be written where `option` (for example "--out") asks: a name ending
/// in .png or .svg, not a folder, in a folder that exists or can be made, where a file can be created. A file that
/// did not exist before is removed again. Returns the full path.
let checkOutput (option: string) (file: string) : string =
    if String.IsNullOrWhiteSpace file then
        raise (InvalidPlanException(sprintf "%s is empty; give a file name ending in .png or .svg." option))
    Jet.Core.Pictures.Pictures.formatOf file |> ignore
    let cannot (why: string) = raise (InvalidPlanException(sprintf "Cannot write %s %s: %s" option file why))
    let full =
        try
            Path.GetFullPath file
        with e ->
            cannot e.Message
    if Directory.Exists full then
        cannot "it is a folder; give a file name ending in .png or .svg."
    let existed = File.Exists full
    try
        Directory.CreateDirectory(Path.GetDirectoryName full) |> ignore
        (new FileStream(full, FileMode.OpenOrCreate, FileAccess.Write)).Dispose()
        if not existed then
            File.Delete full
    with
    | :? IOException
    | :? UnauthorizedAccessException as e -> cannot e.Message
    full

/// `checkOutput` for an optional picture argument.
let checkOutputs (option: string) (file: string option) : string option = file |> Option.map (checkOutput option)

/// Splits `--flag=value` into `--flag value`, so every option takes either form (Argu reads the spaced one).
let splitAssignments (argv: string[]) : string[] =
    argv
    |> Array.collect (fun a ->
        match a.IndexOf '=' with
        | i when
            a.StartsWith "--"
            && i > 2
            && a.[2 .. i - 1] |> Seq.forall (fun c -> Char.IsLetterOrDigit c || c = '-')
            ->
            [| a.Substring(0, i); a.Substring(i + 1) |]
        | _ -> [| a |])

/// The exit code of a command whose result holds a non-finite value (NaN or ±Inf), unless --allow-nonfinite.
[<Literal>]
let NonFiniteExit = 3

/// The usage text of `--allow-nonfinite`.
let allowNonFiniteUsage =
    "load weights holding NaN or ±Inf, and exit 0 when a result holds some (they are still reported on stderr and in the JSON's non_finite field)."

/// The JSON value of a non-finite report: null when the result is finite, otherwise where the first non-finite value
/// is, its index there, its kind ("NaN", "+Inf", "-Inf") and how many of how many values are not finite.
let nonFiniteJson (report: NonFiniteReport option) : obj =
    match report with
    | None -> null
    | Some r -> box {| where = r.Where; index = r.Index; value = r.Kind; count = r.Count; total = r.Total |}

/// Ends a command that computed a result: warns on stderr where its first non-finite value is, and returns the exit
/// code (0 when the result is finite or `allow`, NonFiniteExit otherwise). Every command that computes calls this.
let finish (allow: bool) (report: NonFiniteReport option) : int =
    match report with
    | None -> 0
    | Some r ->
        eprintfn "warning: the result is not finite: %s." (r.Describe())
        if allow then
            0
        else
            eprintfn
                "error: exit code %d because of non-finite values; pass --allow-nonfinite to accept them."
                NonFiniteExit
            NonFiniteExit

/// Warns on stderr when a text argument holds U+FFFD, the character .NET puts in place of bytes that are not valid
/// UTF-8 (or the text holds U+FFFD itself): the text the model reads is then not the text that was typed.
let warnReplacementCharacters (option: string) (text: string) =
    if not (isNull text) && text.Contains '\uFFFD' then
        let count = text |> Seq.filter (fun c -> c = '\uFFFD') |> Seq.length
        eprintfn
            "warning: %s holds %d U+FFFD replacement character(s) at character %d: bytes that were not valid UTF-8 were replaced."
            option
            count
            (text.IndexOf '\uFFFD')

/// Fails unless `file` names a readable file, saying what is actually wrong (missing, a folder, a broken link).
let requireFile (option: string) (file: string) : string =
    if String.IsNullOrWhiteSpace file then
        raise (MissingArgumentException(sprintf "%s is empty; give a file name." option))
    match Paths.problem PathKind.File file with
    | None -> file
    | Some why -> raise (MissingArgumentException(sprintf "%s %s %s; give a file." option file why))

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
