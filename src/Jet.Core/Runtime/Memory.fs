namespace Jet.Core

open System
open System.IO

/// Memory estimates checked before allocating, so a request that cannot fit fails at once with the estimate and the
/// limit instead of hanging, swapping or crashing inside libtorch.
[<RequireQualifiedAccess>]
module Memory =

    /// The environment variable that overrides the limit (in bytes), for tests and for machines whose
    /// `/proc/meminfo` does not tell the truth (containers).
    [<Literal>]
    let LimitVariable = "JETDSL_MEMORY_LIMIT"

    /// MemAvailable from /proc/meminfo, in bytes, where Linux reports it.
    let private memAvailable () =
        try
            File.ReadLines "/proc/meminfo"
            |> Seq.tryFind (fun l -> l.StartsWith "MemAvailable:")
            |> Option.bind (fun l ->
                match Int64.TryParse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries).[1]) with
                | true, kb -> Some(kb * 1024L)
                | _ -> None)
        with _ ->
            None

    /// The bytes a request may use: JETDSL_MEMORY_LIMIT when set, else the memory available now (MemAvailable on
    /// Linux, what the .NET runtime reports elsewhere).
    [<CompiledName("Available")>]
    let available () : int64 =
        match Environment.GetEnvironmentVariable LimitVariable with
        | null
        | "" ->
            match memAvailable () with
            | Some b -> b
            | None -> GC.GetGCMemoryInfo().TotalAvailableMemoryBytes
        | text ->
            match Int64.TryParse text with
            | true, b when b > 0L -> b
            | _ ->
                raise (
                    MemoryLimitException(
                        sprintf "%s is %A; set it to a positive number of bytes, or unset it." LimitVariable text
                    )
                )

    /// "1.5 GB", "320 MB", "12 KB": bytes for messages (decimal units).
    let format (bytes: float) =
        let units = [| "bytes"; "KB"; "MB"; "GB"; "TB"; "PB"; "EB" |]
        let mutable value, unit = bytes, 0
        while value >= 1000.0 && unit < units.Length - 1 do
            value <- value / 1000.0
            unit <- unit + 1
        if unit = 0 then sprintf "%.0f bytes" value
        elif value >= 1e6 then sprintf "%.3g %s" value units.[unit]
        else sprintf "%.1f %s" value units.[unit]

    /// Fails with a MemoryLimitException when `bytes` (an estimate, as a float so products of large sizes cannot
    /// overflow) exceeds the memory available. `what` names the request ("--order 64 on 12 tokens"); `advice` says
    /// what would fit.
    [<CompiledName("Require")>]
    let require (what: string) (bytes: float) (advice: string) =
        let limit = available ()
        if Double.IsNaN bytes || bytes > float limit then
            raise (
                MemoryLimitException(
                    sprintf
                        "%s needs about %s of memory, more than the %s available. %s"
                        what
                        (format bytes)
                        (format (float limit))
                        advice
                )
            )
