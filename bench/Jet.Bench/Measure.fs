/// Timing and memory measurement shared by every benchmark suite.
module Jet.Bench.Measure

open System
open System.Diagnostics
open System.IO
open System.Runtime.InteropServices
open System.Text.Json

/// Median wall time in milliseconds of `run` over `repeats` runs after `warmup` runs.
let medianMs (warmup: int) (repeats: int) (run: unit -> unit) =
    for _ in 1..warmup do
        run ()
    let times =
        [|
            for _ in 1..repeats ->
                let sw = Stopwatch.StartNew()
                run ()
                sw.Elapsed.TotalMilliseconds
        |]
    Array.sortInPlace times
    times.[times.Length / 2]

/// Resets the kernel's peak-RSS counter of this process (Linux: writing 5 to /proc/self/clear_refs).
let resetPeak () =
    try
        File.WriteAllText("/proc/self/clear_refs", "5")
    with _ ->
        ()

let private statusKb (field: string) =
    try
        File.ReadAllLines "/proc/self/status"
        |> Array.tryFind (fun l -> l.StartsWith(field + ":"))
        |> Option.map (fun l -> float (l.Split([| ' '; '\t' |], StringSplitOptions.RemoveEmptyEntries).[1]))
        |> Option.defaultValue nan
    with _ ->
        nan

/// Peak resident set size since the last `resetPeak`, in MiB (native libtorch memory included).
let peakMb () = statusKb "VmHWM" / 1024.0

/// Current resident set size in MiB.
let currentMb () = statusKb "VmRSS" / 1024.0

[<DllImport("libc", EntryPoint = "malloc_trim")>]
extern int private mallocTrim(unativeint pad)

/// Runs the finalizers, decommits the GC's free memory and hands glibc's free heap pages back to the OS, so the
/// resident size read next counts what is still allocated rather than what earlier runs left in the allocators.
let settleNative () =
    GC.Collect()
    GC.WaitForPendingFinalizers()
    GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, true, true)
    if RuntimeInformation.IsOSPlatform OSPlatform.Linux then
        try
            mallocTrim 0un |> ignore
        with _ ->
            ()

/// Prints one benchmark record as a JSON line.
let emit (record: obj) =
    Console.Out.WriteLine(JsonSerializer.Serialize(record, record.GetType()))
    Console.Out.Flush()

/// Runs a sweep, stopping it (by its cancellation token) after `limit` batches when given; returns the batches run.
let limitedSweep (run: Jet.Core.Apps.SweepOptions -> unit) (options: Jet.Core.Apps.SweepOptions) (limit: int option) =
    use stop = new Threading.CancellationTokenSource()
    let seen = ref 0
    let progress =
        { new IProgress<int64> with
            member _.Report _ =
                seen.Value <- seen.Value + 1
                if limit |> Option.exists (fun n -> seen.Value >= n) then
                    stop.Cancel()
        }
    try
        run { options with Progress = Some progress; Cancellation = stop.Token }
    with :? OperationCanceledException ->
        ()
    seen.Value
