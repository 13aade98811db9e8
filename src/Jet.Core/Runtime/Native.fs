namespace Jet.Core

open System
open System.IO
open System.Runtime.InteropServices
open TorchSharp

/// Starts TorchSharp's native runtime. On Linux it loads the libLibTorchSharp.so that the build placed beside
/// the JetDsl assemblies (patched there when the system libstdc++ lacks GLIBCXX_3.4.32), so F# Interactive and
/// hosts without a deps.json find the working copy instead of the unpatched one in the NuGet cache.
[<RequireQualifiedAccess>]
module Native =
    let private gate = obj ()
    let mutable private ready = false

    let private candidates () =
        let here = Path.GetDirectoryName(typeof<JetException>.Assembly.Location)
        let torchDir = Path.GetDirectoryName(typeof<torch>.Assembly.Location)
        [
            for dir in [ here; torchDir; AppContext.BaseDirectory ] do
                if not (String.IsNullOrEmpty dir) then
                    yield Path.Combine(dir, "runtimes", "linux-x64", "native", "libLibTorchSharp.so")
                    yield Path.Combine(dir, "libLibTorchSharp.so")
        ]

    let private troubleshooting =
        "TorchSharp's native library could not be loaded. On Debian 12 / Ubuntu 22.04 this is usually the "
        + "GLIBCXX_3.4.32 requirement of libLibTorchSharp.so: build the project with `dotnet build` (the build writes "
        + "a patched copy into its output) and reference the assemblies from that output folder. "
        + "See README.md, section Troubleshooting."

    /// Makes sure TorchSharp can run; safe to call many times and from many threads.
    [<CompiledName("Ensure")>]
    let ensure () =
        if not ready then
            lock gate (fun () ->
                if not ready then
                    if RuntimeInformation.IsOSPlatform OSPlatform.Linux then
                        match candidates () |> List.tryFind File.Exists with
                        | Some path -> NativeLibrary.TryLoad(path) |> ignore
                        | None -> ()
                    try
                        torch.InitializeDeviceType(DeviceType.CPU)
                    with e ->
                        raise (NativeRuntimeException(troubleshooting + " Original error: " + e.Message, e))
                    ready <- true)
