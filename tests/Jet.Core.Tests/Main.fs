module Jet.Core.Tests.Main

open System.Runtime.InteropServices
open Expecto

/// glibc's mallopt; M_MMAP_THRESHOLD = -3.
[<DllImport("libc", EntryPoint = "mallopt")>]
extern int private mallopt(int param, int value)

/// The memory tests read the process's resident size. glibc raises its mmap threshold each time a large block is
/// freed, after which blocks of tens of MB come from per-thread arenas and stay resident after `free`, so what earlier
/// tests freed would show up as growth in later ones. A fixed threshold (which also turns the raising off) makes
/// every large tensor its own mapping, returned to the system when freed, so resident size follows live memory.
let private fixLargeAllocations () =
    if RuntimeInformation.IsOSPlatform OSPlatform.Linux then
        try
            mallopt (-3, 1 <<< 20) |> ignore
        with _ ->
            ()

[<EntryPoint>]
let main argv =
    fixLargeAllocations ()
    Jet.Core.Native.ensure ()
    TorchSharp.torch.set_num_threads (max 1 System.Environment.ProcessorCount)
    runTestsInAssemblyWithCLIArgs [ CLIArguments.Summary ] argv
