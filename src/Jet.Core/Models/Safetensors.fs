namespace Jet.Core.Models

#nowarn "9" // native pointers: the tensor's storage is native memory that positioned reads fill

open System
open System.Buffers.Binary
open System.Collections.Generic
open System.IO
open System.Runtime.InteropServices
open Microsoft.Win32.SafeHandles
open System.Text.Json
open Microsoft.FSharp.NativeInterop
open TorchSharp
open Jet.Core

/// One tensor as a safetensors header describes it. Offsets count from the start of the data section.
type SafetensorsEntry =
    {
        Name: string
        /// The element type as written in the header, for example "BF16".
        DType: string
        Shape: int64[]
        Begin: int64
        End: int64
    }

    /// The number of bytes the tensor occupies.
    member e.ByteCount = e.End - e.Begin

/// The validated header of one safetensors file: every entry has a known element type and a byte range that
/// lies inside the data section, matches its shape and overlaps no other, and together they cover the data exactly.
[<Sealed>]
type SafetensorsHeader
    (
        path: string,
        dataStart: int64,
        dataLength: int64,
        entries: IReadOnlyDictionary<string, SafetensorsEntry>,
        metadata: Map<string, string>
    ) =
    /// The file, for messages.
    member _.Path = path
    /// The file offset of the data section (8 + the header length).
    member _.DataStart = dataStart
    /// The size of the data section in bytes.
    member _.DataLength = dataLength
    /// The validated entries by tensor name.
    member _.Entries = entries
    /// The `__metadata__` strings (for example format = pt).
    member _.Metadata = metadata

/// Asking Linux to map pages ahead of a copy. Copying into fresh tensor memory costs one page fault per 4 KiB
/// page, which dominates the copy itself (on virtual machines especially); MADV_POPULATE_WRITE (Linux 5.14+)
/// maps a whole range in one call. Best effort: where the call is unsupported the copy faults pages as usual.
module internal Prefault =
    [<System.Runtime.InteropServices.DllImport("libc", SetLastError = false)>]
    extern int private madvise(nativeint address, unativeint length, int advice)

    let private populateWrite = 23
    let private page = 4096L
    let mutable private supported = OperatingSystem.IsLinux()

    /// Maps the whole pages inside [address, address + length) for writing.
    let forWriting (address: nativeint) (length: int64) =
        if supported then
            let first = (int64 address + page - 1L) / page * page
            let last = (int64 address + length) / page * page
            if last > first then
                try
                    if madvise (nativeint first, unativeint (last - first), populateWrite) <> 0 then
                        supported <- false
                with
                | :? DllNotFoundException
                | :? EntryPointNotFoundException -> supported <- false

/// A strict reader of the safetensors format: an 8-byte little-endian header length, a UTF-8 JSON header of
/// {name: {dtype, shape, data_offsets}} (plus `__metadata__`), then the raw little-endian bytes.
[<RequireQualifiedAccess>]
module Safetensors =
    /// The element types the format defines, with their sizes in bytes and TorchSharp's type where it has one.
    let private elementTypes: (string * int * torch.ScalarType option) list =
        [
            "F64", 8, Some torch.float64
            "F32", 4, Some torch.float32
            "F16", 2, Some torch.float16
            "BF16", 2, Some torch.bfloat16
            "I64", 8, Some torch.int64
            "I32", 4, Some torch.int32
            "I16", 2, Some torch.int16
            "I8", 1, Some torch.int8
            "U8", 1, Some torch.uint8
            "BOOL", 1, Some torch.ScalarType.Bool
            "U64", 8, None
            "U32", 4, None
            "U16", 2, None
            "F8_E4M3", 1, None
            "F8_E5M2", 1, None
        ]

    let private knownTypes = elementTypes |> List.map (fun (n, _, _) -> n) |> String.concat ", "

    /// The safetensors specification caps the header at 100 MB; a larger length means a corrupt file.
    let maxHeaderBytes = 100L * 1024L * 1024L

    /// Bytes per element of a header element type (the type must be known).
    let elementSize (dtype: string) =
        elementTypes |> List.pick (fun (n, size, _) -> if n = dtype then Some size else None)

    /// TorchSharp's element type for a header element type, if TorchSharp has one.
    let scalarType (dtype: string) = elementTypes |> List.pick (fun (n, _, t) -> if n = dtype then Some t else None)

    /// True for the floating element types a network's parameters may be stored in.
    let isFloating (dtype: string) = dtype = "F64" || dtype = "F32" || dtype = "F16" || dtype = "BF16"

    let private fail (path: string) (what: string) = raise (CheckpointException(sprintf "%s: %s" path what))

    let private parseEntry (path: string) (name: string) (value: JsonElement) (dataLength: int64) =
        let bad what = fail path (sprintf "the header entry for tensor '%s' %s." name what)
        if value.ValueKind <> JsonValueKind.Object then
            bad "is not a JSON object"
        let field (key: string) =
            match value.TryGetProperty key with
            | true, v -> v
            | _ -> bad (sprintf "has no '%s'; each entry needs dtype, shape and data_offsets" key)
        let dtypeElement = field "dtype"
        if dtypeElement.ValueKind <> JsonValueKind.String then
            bad "has a dtype that is not a string"
        let dtype = dtypeElement.GetString()
        if not (elementTypes |> List.exists (fun (n, _, _) -> n = dtype)) then
            fail path (sprintf "tensor '%s' has unknown dtype '%s'; safetensors dtypes are %s." name dtype knownTypes)
        let integers (key: string) =
            let v = field key
            if v.ValueKind <> JsonValueKind.Array then
                bad (sprintf "has a %s that is not an array" key)
            [|
                for x in v.EnumerateArray() do
                    match x.ValueKind with
                    | JsonValueKind.Number ->
                        match x.TryGetInt64() with
                        | true, n when n >= 0L -> n
                        | _ -> bad (sprintf "has %s entry %s; it must be a non-negative integer" key (x.GetRawText()))
                    | _ -> bad (sprintf "has %s entry %s; it must be a non-negative integer" key (x.GetRawText()))
            |]
        let shape = integers "shape"
        let offsets = integers "data_offsets"
        if offsets.Length <> 2 then
            bad (sprintf "has %d data_offsets; it needs exactly two, [begin, end]" offsets.Length)
        let first, last = offsets.[0], offsets.[1]
        if first > last then
            fail path (sprintf "tensor '%s' has data_offsets [%d, %d]; begin must not exceed end." name first last)
        if last > dataLength then
            fail
                path
                (sprintf
                    "tensor '%s' has data_offsets [%d, %d] outside the data section of %d bytes (the file may be truncated)."
                    name
                    first
                    last
                    dataLength)
        let size = int64 (elementSize dtype)
        let count =
            try
                shape |> Array.fold (fun acc d -> Checked.(*) acc d) 1L |> (fun n -> Checked.(*) n size)
            with :? OverflowException ->
                bad (sprintf "has shape %s, too large to address" (Tensors.shapeText shape))
        if count <> last - first then
            fail
                path
                (sprintf
                    "tensor '%s' is %s %s = %d bytes, but its data_offsets [%d, %d] span %d bytes."
                    name
                    dtype
                    (Tensors.shapeText shape)
                    count
                    first
                    last
                    (last - first))
        { Name = name; DType = dtype; Shape = shape; Begin = first; End = last }

    /// Reads and validates the header of a safetensors file without touching its data.
    let readHeader (path: string) : SafetensorsHeader =
        if not (File.Exists path) then
            fail path "the file does not exist."
        use stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read)
        let fileLength = stream.Length
        if fileLength < 8L then
            fail
                path
                (sprintf
                    "the file is truncated: it has %d bytes, but a safetensors file starts with an 8-byte header length."
                    fileLength)
        let lengthBytes = Array.zeroCreate<byte> 8
        stream.ReadExactly(lengthBytes, 0, 8)
        let headerLength = BinaryPrimitives.ReadUInt64LittleEndian(ReadOnlySpan lengthBytes)
        if headerLength > uint64 (fileLength - 8L) then
            fail
                path
                (sprintf
                    "the header length %d is beyond the file, which has only %d bytes after the length field (truncated or not safetensors)."
                    headerLength
                    (fileLength - 8L))
        if int64 headerLength > maxHeaderBytes then
            fail
                path
                (sprintf "the header length %d exceeds the format's limit of %d bytes." headerLength maxHeaderBytes)
        let headerBytes = Array.zeroCreate<byte> (int headerLength)
        stream.ReadExactly(headerBytes, 0, headerBytes.Length)
        let dataStart = 8L + int64 headerLength
        let dataLength = fileLength - dataStart
        // JSON strings are decoded lazily (names, dtypes), so invalid UTF-8 would surface later as an
        // InvalidOperationException; the format requires UTF-8, so refuse it here.
        try
            Text.UTF8Encoding(false, true).GetCharCount headerBytes |> ignore
        with :? Text.DecoderFallbackException as e ->
            fail path (sprintf "the header is not valid UTF-8 (byte %d); corrupt or not safetensors." e.Index)
        let document =
            try
                JsonDocument.Parse(ReadOnlyMemory headerBytes)
            with :? JsonException as e ->
                let reason = e.Message.Split('\n').[0].Trim()
                fail path (sprintf "the header is not valid JSON (%s)." reason)
        use document = document
        let root = document.RootElement
        if root.ValueKind <> JsonValueKind.Object then
            fail path "the header must be a JSON object mapping tensor names to {dtype, shape, data_offsets}."
        let entries = Dictionary<string, SafetensorsEntry>()
        let mutable metadata = Map.empty
        for property in root.EnumerateObject() do
            if property.Name = "__metadata__" then
                if property.Value.ValueKind <> JsonValueKind.Object then
                    fail path "the header's __metadata__ must be an object of strings."
                for m in property.Value.EnumerateObject() do
                    if m.Value.ValueKind <> JsonValueKind.String then
                        fail path (sprintf "the header's __metadata__ entry '%s' is not a string." m.Name)
                    metadata <- metadata.Add(m.Name, m.Value.GetString())
            else
                if entries.ContainsKey property.Name then
                    fail path (sprintf "the header names tensor '%s' twice." property.Name)
                entries.[property.Name] <- parseEntry path property.Name property.Value dataLength
        // Sorted by start, the ranges must tile the data section exactly: no overlap, and (as the format requires)
        // no hole between tensors or after the last one. Empty tensors take no bytes.
        let sorted =
            entries.Values
            |> Seq.filter (fun e -> e.ByteCount > 0L)
            |> Seq.sortBy (fun e -> e.Begin, e.End)
            |> Array.ofSeq
        for i in 1 .. sorted.Length - 1 do
            let a, b = sorted.[i - 1], sorted.[i]
            if b.Begin < a.End then
                fail
                    path
                    (sprintf
                        "tensors '%s' [%d, %d] and '%s' [%d, %d] overlap."
                        a.Name
                        a.Begin
                        a.End
                        b.Name
                        b.Begin
                        b.End)
            if b.Begin > a.End then
                fail
                    path
                    (sprintf
                        "bytes [%d, %d] of the data section, between tensors '%s' and '%s', belong to no tensor; the format allows no holes."
                        a.End
                        b.Begin
                        a.Name
                        b.Name)
        let covered = if sorted.Length = 0 then 0L else (Array.last sorted).End
        if sorted.Length > 0 && sorted.[0].Begin > 0L then
            fail
                path
                (sprintf
                    "bytes [0, %d] of the data section, before tensor '%s', belong to no tensor; the format allows no holes."
                    sorted.[0].Begin
                    sorted.[0].Name)
        if covered < dataLength then
            fail
                path
                (sprintf
                    "the data section has %d bytes but its tensors end at byte %d; the %d bytes after them belong to no tensor."
                    dataLength
                    covered
                    (dataLength - covered))
        SafetensorsHeader(path, dataStart, dataLength, entries, metadata)

    // Each copy reads at most this many bytes: windows are the unit of parallel work.
    let private windowBytes = 32L * 1024L * 1024L

    /// TorchSharp's element type of an entry, failing for the safetensors types TorchSharp has no tensor for.
    let torchType (path: string) (entry: SafetensorsEntry) =
        match scalarType entry.DType with
        | Some t -> t
        | None ->
            let message =
                sprintf
                    "%s: tensor '%s' has element type %s, which TorchSharp cannot hold; JetDsl reads F64, F32, F16, BF16 and integer tensors."
                    path
                    entry.Name
                    entry.DType
            raise (CheckpointException message)

    /// The address of element 0 of a contiguous CPU tensor (its storage is native memory that does not move).
    let internal address (tensor: Tensor) : nativeint =
        use flat = tensor.view -1L
        use first = flat.narrow (0L, 0L, 1L)
        let span = first.bytes
        use pointer = fixed span
        NativePtr.toNativeInt pointer

    /// The (offset within the tensor, length) byte ranges an entry is copied in.
    let internal windows (entry: SafetensorsEntry) =
        let size = int64 (elementSize entry.DType)
        let step = max size (windowBytes / size * size)
        [ for first in 0L .. step .. entry.ByteCount - 1L -> first, min step (entry.ByteCount - first) ]

    /// Reads `count` bytes at `fileOffset` of a file straight into `destination` (native tensor memory) with
    /// positioned reads: the kernel copies from the page cache, so no view of the file is mapped and unmapped (a
    /// mapped window costs a fault per 64 KiB of source and a TLB shootdown on every thread when it is unmapped).
    let internal copyWindow
        (file: SafeFileHandle)
        (path: string)
        (fileOffset: int64)
        (destination: nativeint)
        (count: int64)
        =
        Prefault.forWriting destination count
        let mutable done' = 0L
        while done' < count do
            let length = int (min (count - done') (int64 Int32.MaxValue))
            let span =
                Span<byte>(NativePtr.toVoidPtr (NativePtr.ofNativeInt<byte> (destination + nativeint done')), length)
            let read = RandomAccess.Read(file, span, fileOffset + done')
            if read <= 0 then
                raise (
                    CheckpointException(
                        sprintf
                            "%s: the file ended at byte %d while reading bytes up to %d; it was truncated after it was opened."
                            path
                            (fileOffset + done')
                            (fileOffset + count)
                    )
                )
            done' <- done' + int64 read

    /// Fails on big-endian machines: safetensors data is little-endian and is copied byte for byte.
    let internal requireLittleEndian () =
        if not BitConverter.IsLittleEndian then
            raise (
                CheckpointException
                    "safetensors data is little-endian; this machine is big-endian, which JetDsl does not support."
            )

/// An open safetensors file: its validated header, a read-only handle for positioned reads of its bytes, and
/// private memory maps of the whole file (one per element type asked for), from which tensors are views.
[<Sealed>]
type SafetensorsFile(header: SafetensorsHeader) =
    let handle =
        lazy (File.OpenHandle(header.Path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess))

    // The whole file as a 1-D tensor of one element type, mapped copy-on-write (None where mapping failed). Owned
    // here, outside every dispose scope; views of it keep the mapping alive after this file is disposed.
    let maps = Dictionary<torch.ScalarType, Tensor option>()

    let mapAs (dtype: torch.ScalarType) (size: int64) =
        lock maps (fun () ->
            match maps.TryGetValue dtype with
            | true, mapped -> mapped
            | _ ->
                let mapped =
                    try
                        let length = FileInfo(header.Path).Length
                        // A file shorter than its header says is reported by the positioned read that follows.
                        if length < header.DataStart + header.DataLength then
                            None
                        else
                            let whole = torch.from_file (header.Path, false, length / size, dtype)
                            Some(whole.DetachFromDisposeScope())
                    with
                    | :? IOException
                    | :? UnauthorizedAccessException
                    | :? ExternalException -> None
                maps.[dtype] <- mapped
                mapped)

    member _.Header = header
    member _.Path = header.Path

    /// The header entry of `name`; fails naming the file.
    member _.Entry(name: string) =
        match header.Entries.TryGetValue name with
        | true, entry -> entry
        | _ -> raise (CheckpointException(sprintf "%s has no tensor named '%s'." header.Path name))

    /// A fresh, still empty CPU tensor of the entry's shape and stored element type (no memory is touched yet).
    member f.Allocate(name: string) : Tensor =
        let entry = f.Entry name
        torch.empty (entry.Shape, dtype = Safetensors.torchType header.Path entry)

    /// The copies that fill `tensor` (allocated for `name`) from the file: independent, so they may run
    /// on several threads at once.
    member f.CopyJobs(name: string, tensor: Tensor) : (unit -> unit) list =
        Safetensors.requireLittleEndian ()
        let entry = f.Entry name
        if entry.ByteCount = 0L then
            []
        else
            let destination = Safetensors.address tensor
            [
                for first, count in Safetensors.windows entry ->
                    fun () ->
                        Safetensors.copyWindow
                            handle.Value
                            header.Path
                            (header.DataStart + entry.Begin + first)
                            (destination + nativeint first)
                            count
            ]

    /// The tensor `name` as a CPU view of the file mapped in memory (copy-on-write: writing to it never changes the
    /// file), or None where it cannot be mapped: an empty tensor, bytes not aligned to the element size, or a system
    /// that refuses the map. Pages are read from the file (or the page cache) when first touched, and the OS may
    /// drop them again under memory pressure, which is why the file must not be overwritten while it is in use.
    member f.TryMap(name: string) : Tensor option =
        Safetensors.requireLittleEndian ()
        let entry = f.Entry name
        let dtype = Safetensors.torchType header.Path entry
        let size = int64 (Safetensors.elementSize entry.DType)
        let first = header.DataStart + entry.Begin
        if entry.ByteCount = 0L || first % size <> 0L then
            None
        else
            mapAs dtype size
            |> Option.map (fun whole -> whole.narrow(0L, first / size, entry.ByteCount / size).view entry.Shape)

    /// The tensor `name` as a fresh CPU tensor of its stored element type (freed again when a copy fails).
    member f.ReadRaw(name: string) : Tensor =
        let tensor = f.Allocate name
        try
            for copy in f.CopyJobs(name, tensor) do
                copy ()
            tensor
        with _ ->
            tensor.Dispose()
            reraise ()

    /// Opens a file after validating its header.
    static member Open(path: string) = new SafetensorsFile(Safetensors.readHeader path)

    interface IDisposable with
        member _.Dispose() =
            if handle.IsValueCreated then
                handle.Value.Dispose()
            lock maps (fun () ->
                for mapped in maps.Values do
                    mapped |> Option.iter (fun t -> t.Dispose())
                maps.Clear())
