/// Test-side safetensors writing and reading, independent of the core's reader: tiny random checkpoints in each
/// family's Hugging Face layout, crafted malformed files, and a plain reader for the reference implementations.
module Jet.Core.Tests.TestCheckpoints

open System
open System.IO
open System.Text
open System.Text.Json
open TorchSharp
open Jet.Core

/// One folder per test process for every checkpoint the tests write, removed when the process exits.
let private root =
    let dir = Path.Combine(Path.GetTempPath(), "jetdsl-tests-" + Guid.NewGuid().ToString("N"))
    Directory.CreateDirectory dir |> ignore
    AppDomain.CurrentDomain.ProcessExit.Add(fun _ ->
        try
            Directory.Delete(dir, true)
        with _ ->
            ())
    dir

/// A fresh temporary directory.
let tempDir () =
    let dir = Path.Combine(root, Guid.NewGuid().ToString("N"))
    Directory.CreateDirectory dir |> ignore
    dir

let private torchType (dtype: string) =
    match dtype with
    | "F64" -> torch.float64
    | "F32" -> torch.float32
    | "F16" -> torch.float16
    | "BF16" -> torch.bfloat16
    | other -> failwithf "the test writer does not write %s" other

/// The bytes of a tensor stored as `dtype` (little-endian, row-major).
let tensorBytes (dtype: string) (t: Tensor) : byte[] =
    use typed = t.detach().cpu().to_type(torchType dtype).contiguous ()
    typed.bytes.ToArray()

/// The header JSON for entries (name, dtype, shape, begin, end), with `__metadata__`.
let headerJson (entries: (string * string * int64[] * int64 * int64) list) =
    let entry (name: string, dtype: string, shape: int64[], first: int64, last: int64) =
        sprintf
            "%s:{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%d,%d]}"
            (JsonSerializer.Serialize name)
            dtype
            (shape |> Array.map string |> String.concat ",")
            first
            last
    "{\"__metadata__\":{\"format\":\"pt\"}," + (entries |> List.map entry |> String.concat ",") + "}"

/// Writes a safetensors file from an explicit header text and data bytes (for malformed files too);
/// `declaredLength` overrides the 8-byte header length.
let writeRaw (path: string) (header: string) (data: byte[]) (declaredLength: uint64 option) =
    // The format pads the header with spaces to a multiple of 8 bytes.
    let headerBytes =
        let b = Encoding.UTF8.GetBytes header
        let padded = (b.Length + 7) / 8 * 8
        Array.append b (Array.create (padded - b.Length) (byte ' '))
    use stream = File.Create path
    stream.Write(BitConverter.GetBytes(defaultArg declaredLength (uint64 headerBytes.Length)), 0, 8)
    stream.Write(headerBytes, 0, headerBytes.Length)
    stream.Write(data, 0, data.Length)

/// Writes tensors (name, tensor) as one safetensors file, every tensor stored as `dtype`.
let writeSafetensors (path: string) (dtype: string) (tensors: (string * Tensor) list) =
    let mutable offset = 0L
    let data = ResizeArray<byte>()
    let entries =
        [
            for name, t in tensors ->
                let bytes = tensorBytes dtype t
                data.AddRange bytes
                let e = name, dtype, t.shape, offset, offset + int64 bytes.Length
                offset <- offset + int64 bytes.Length
                e
        ]
    writeRaw path (headerJson entries) (data.ToArray()) None

/// Writes `config.json` from an anonymous record or any serialisable value.
let writeConfig (dir: string) (config: obj) =
    File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(config, config.GetType()))

/// Reads every tensor of a safetensors file as float64 with a plain BinaryReader (not the core's reader).
let readAll (path: string) : Map<string, Tensor> =
    let bytes = File.ReadAllBytes path
    let n = int (BitConverter.ToUInt64(bytes, 0))
    use doc = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, n))
    [
        for p in doc.RootElement.EnumerateObject() do
            if p.Name <> "__metadata__" then
                let dtype = p.Value.GetProperty("dtype").GetString()
                let shape = [| for s in p.Value.GetProperty("shape").EnumerateArray() -> s.GetInt64() |]
                let offsets = [| for o in p.Value.GetProperty("data_offsets").EnumerateArray() -> int (o.GetInt64()) |]
                let start = 8 + n + offsets.[0]
                let count = (offsets.[1] - offsets.[0])
                let values =
                    match dtype with
                    | "F32" -> Array.init (count / 4) (fun i -> float (BitConverter.ToSingle(bytes, start + 4 * i)))
                    | "F64" -> Array.init (count / 8) (fun i -> BitConverter.ToDouble(bytes, start + 8 * i))
                    | other -> failwithf "readAll reads F32 and F64, not %s" other
                p.Name, torch.tensor(values, dtype = torch.float64).reshape shape
    ]
    |> Map.ofList

/// A seeded random generator for checkpoint tensors (float64, then rounded to the stored dtype).
type Weights(seed: int, dtype: string) =
    let g = new torch.Generator(uint64 seed)
    let tensors = ResizeArray<string * Tensor>()
    /// Rounds through the stored dtype so the reference sees exactly the stored values.
    let rounded (t: Tensor) = t.to_type(torchType dtype).to_type torch.float64

    member _.DType = dtype

    /// N(0, std²) of the given shape.
    member _.Normal(name: string, shape: int list, std: float) =
        let t =
            rounded (torch.randn (shape |> List.map int64 |> Array.ofList, dtype = torch.float64, generator = g) * std)
        tensors.Add((name, t))
        t

    /// 1 + N(0, std²) (norm weights).
    member _.AroundOne(name: string, shape: int list, std: float) =
        let t =
            rounded (
                1.0
                + torch.randn (shape |> List.map int64 |> Array.ofList, dtype = torch.float64, generator = g) * std
            )
        tensors.Add((name, t))
        t

    /// Adds a tensor as given.
    member _.Add(name: string, t: Tensor) = tensors.Add((name, t))

    member _.Tensors = List.ofSeq tensors
    member _.Map = tensors |> Seq.map (fun (n, t) -> n, t) |> Map.ofSeq

    /// Writes the tensors to `dir/model.safetensors` in the stored dtype.
    member this.Save(dir: string) = writeSafetensors (Path.Combine(dir, "model.safetensors")) dtype this.Tensors
