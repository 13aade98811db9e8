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

    /// Sets VER_FLG_WEAK on the GNU version requirement named `version` in an ELF64 little-endian library, in
    /// place; true when it changed the bytes. The same walk as build/WeakenGlibcxxRequirement.cs (MSBuild needs C#).
    let private weaken (elf: byte[]) (version: string) =
        let u16 i = int (BitConverter.ToUInt16(elf, i))
        let u32 i = int (BitConverter.ToUInt32(elf, i))
        let u64 i = Checked.int (BitConverter.ToUInt64(elf, i))

        if
            elf.Length < 64
            || elf.[0] <> 0x7fuy
            || elf.[1] <> byte 'E'
            || elf.[2] <> byte 'L'
            || elf.[3] <> byte 'F'
            || elf.[4] <> 2uy
            || elf.[5] <> 1uy
        then
            false
        else
            let sections = u64 0x28
            let entrySize = u16 0x3A
            let mutable changed = false

            for s in 0 .. u16 0x3C - 1 do
                let header = sections + s * entrySize

                if not changed && BitConverter.ToUInt32(elf, header + 4) = 0x6ffffffeu then
                    let strings = u64 (sections + u32 (header + 0x28) * entrySize + 0x18)
                    let mutable need = u64 (header + 0x18)

                    for _ in 1 .. u32 (header + 0x2C) do
                        let mutable aux = need + u32 (need + 8)

                        for _ in 1 .. u16 (need + 2) do
                            let name = strings + u32 (aux + 8)
                            let stop = Array.IndexOf(elf, 0uy, name)

                            if Text.Encoding.ASCII.GetString(elf, name, stop - name) = version then
                                let flags = u16 (aux + 4)

                                if flags &&& 2 = 0 then
                                    elf.[aux + 4] <- byte (flags ||| 2)
                                    changed <- true

                            aux <- aux + u32 (aux + 12)

                        need <- need + u32 (need + 12)

            changed

    /// The unpatched libLibTorchSharp.so that TorchSharp ships: beside the app, or in the NuGet cache beside
    /// TorchSharp.dll (lib/<tfm>/TorchSharp.dll -> runtimes/linux-x64/native).
    let private shipped () =
        let torchDir = Path.GetDirectoryName(typeof<torch>.Assembly.Location)

        [
            yield! candidates ()
            if not (String.IsNullOrEmpty torchDir) then
                yield Path.Combine(torchDir, "..", "..", "runtimes", "linux-x64", "native", "libLibTorchSharp.so")
        ]
        |> List.tryFind File.Exists

    /// Folders that may hold libtorch's libraries (libtorch.so, libc10.so, libtorch_cpu.so): beside the original
    /// libLibTorchSharp.so and the app, and in the NuGet cache's libtorch-* packages (F# Interactive's #r "nuget: …").
    let private libtorchFolders (original: string) =
        let torchDir = Path.GetDirectoryName(typeof<torch>.Assembly.Location)

        let cached =
            if String.IsNullOrEmpty torchDir then
                []
            else
                let packages = Path.GetFullPath(Path.Combine(torchDir, "..", "..", "..", ".."))

                if Directory.Exists packages then
                    [
                        for package in Directory.GetDirectories(packages, "libtorch-*") do
                            for version in Directory.GetDirectories package do
                                yield Path.Combine(version, "runtimes", "linux-x64", "native")
                    ]
                else
                    []

        [
            Path.GetDirectoryName original
            AppContext.BaseDirectory
            Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native")
            yield! cached
        ]
        |> List.filter (fun dir -> File.Exists(Path.Combine(dir, "libtorch.so")))

    /// The runtime half of the GLIBCXX_3.4.32 fix, for hosts no JetDsl build step touched (a package consumer, a
    /// project reference, F# Interactive): writes a patched copy into a per-user folder (never the NuGet cache),
    /// keyed by the original's hash, loads libtorch's libraries it needs from their own folder, then the copy.
    /// It must run before TorchSharp's first use (its static constructor would fail for good); TorchSharp's later
    /// lookups of "LibTorchSharp" then find the loaded copy by its soname.
    let private loadPatchedCopy () =
        match shipped () with
        | None -> false
        | Some original ->
            let bytes = File.ReadAllBytes original

            let key =
                Security.Cryptography.SHA256.HashData(bytes)
                |> Convert.ToHexString
                |> fun hex -> hex.Substring(0, 16)

            let root =
                match Environment.GetFolderPath Environment.SpecialFolder.LocalApplicationData with
                | "" -> Path.GetTempPath()
                | dir -> dir

            let target = Path.Combine(root, "jetdsl", "native", key, "libLibTorchSharp.so")

            if not (File.Exists target) && weaken bytes "GLIBCXX_3.4.32" then
                Directory.CreateDirectory(Path.GetDirectoryName target) |> ignore
                // Write then rename, so a concurrent process never loads half a file.
                let temporary = target + "." + string Environment.ProcessId + ".tmp"
                File.WriteAllBytes(temporary, bytes)
                File.Move(temporary, target, true)

            if File.Exists target then
                match libtorchFolders original with
                | folder :: _ ->
                    for name in [ "libc10.so"; "libtorch_cpu.so"; "libtorch.so" ] do
                        NativeLibrary.TryLoad(Path.Combine(folder, name)) |> ignore
                | [] -> ()

                fst (NativeLibrary.TryLoad target)
            else
                false

    let private troubleshooting =
        "TorchSharp's native library could not be loaded. On Debian 12 / Ubuntu 22.04 this is usually the "
        + "GLIBCXX_3.4.32 requirement of libLibTorchSharp.so, which JetDsl patches into a copy under "
        + "~/.local/share/jetdsl/native (is it writable?). It also needs a native TorchSharp package: add "
        + "TorchSharp-cpu (or TorchSharp-cuda-linux). See docs/troubleshooting.md."

    /// Makes sure TorchSharp can run; safe to call many times and from many threads.
    [<CompiledName("Ensure")>]
    let ensure () =
        if not ready then
            lock gate (fun () ->
                if not ready then
                    if RuntimeInformation.IsOSPlatform OSPlatform.Linux then
                        let loaded =
                            match candidates () |> List.tryFind File.Exists with
                            | Some path -> fst (NativeLibrary.TryLoad path)
                            | None -> false

                        // Not loadable as shipped, or not beside the app: the patched copy, before TorchSharp starts.
                        if not loaded then
                            try
                                loadPatchedCopy () |> ignore
                            with _ ->
                                ()

                    try
                        torch.InitializeDeviceType(DeviceType.CPU)
                    with e ->
                        raise (NativeRuntimeException(troubleshooting + " Original error: " + e.Message, e))

                    ready <- true)
