/// The model arguments every command that opens a model shares: `--model toy|DIR`, `--dtype`, `--compute-dtype` and
/// `--device`. Argu cannot share union cases between commands, so each command's arguments repeat the cases `Model`,
/// `Dtype`, `Compute_Dtype` and `Device` with the usage texts below, and `read` reads them (`tokenize`, which reads no weights, takes only
/// `--model`).
module Jet.Cli.ModelArgs

open System
open Argu
open Microsoft.FSharp.Quotations
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps

/// The usage text of `--model` for commands that read weights.
let modelUsage = "toy, or a Hugging Face checkpoint directory (config.json + model.safetensors)."

/// The usage text of `--model` for `tokenize`, which reads only the tokenizer.
let tokenizerUsage =
    "toy, or a directory with Hugging Face tokenizer files (tokenizer.json, vocab.json + merges.txt, or tokenizer.model)."

/// The usage text of `--dtype`.
let dtypeUsage =
    "float32, float64, bfloat16 or float16: the element type to keep the weights in (default: as stored); alone, the compute dtype too."

/// The usage text of `--compute-dtype`.
let computeDtypeUsage =
    "float32, float64, bfloat16 or float16: the element type layers compute in (default: float32 on the CPU, with bfloat16/float16 weights widened layer by layer; the weights' dtype on a GPU)."

/// The usage text of `--device`.
let deviceUsage =
    "cpu (default), cuda or cuda:N; cuda needs a CUDA build of TorchSharp (docs/troubleshooting.md)."

/// What the model arguments ask for, checked before any weights are read.
type ModelRequest =
    {
        Source: string
        /// --dtype: the element type to keep the weights in (None: as stored).
        DType: torch.ScalarType option
        /// --compute-dtype: the element type layers compute in (None: `computeDType` decides).
        ComputeDType: torch.ScalarType option
        Device: torch.Device
        /// --allow-nonfinite: load weights holding NaN or ±Inf (reported on stderr) and accept non-finite results.
        AllowNonFinite: bool
    }

/// The element types `--dtype` accepts, by name.
let private dtypes =
    [
        "float32", torch.float32
        "float64", torch.float64
        "bfloat16", torch.bfloat16
        "float16", torch.float16
    ]

/// The `--model` value, trimmed; fails when it is empty.
let source (spec: string) =
    if String.IsNullOrWhiteSpace spec then
        raise (MissingArgumentException "--model is empty; give toy or a checkpoint directory.")
    spec.Trim()

/// A model's name for titles: its checkpoint folder's name (or "toy"), not its whole path.
let displayName (source: string) = IO.Path.GetFileName(source.TrimEnd('/', '\\'))

/// The element type named by an option (`flag`, for the message); fails listing the valid names.
let private named (flag: string) (name: string) =
    match dtypes |> List.tryFind (fun (n, _) -> n = name) with
    | Some(_, t) -> t
    | None ->
        let valid = dtypes |> List.map fst |> String.concat ", "
        raise (DTypeException(sprintf "Unknown %s '%s'; choose one of: %s." flag name valid))

/// The element type named by `--dtype` (default float32); fails listing the valid names.
let dtype (name: string option) = named "--dtype" (defaultArg name "float32")

/// The device named by `--device` (default cpu): cpu, cuda or cuda:N. CUDA on a build without it (the CPU-only
/// TorchSharp package this repository references) fails saying how to switch.
let device (name: string option) =
    let name = defaultArg name "cpu"
    let text = name.Trim().ToLowerInvariant()
    // (is CUDA, GPU index); a CUDA device is made only once CUDA is known to be there (making one starts it).
    let parsed =
        match text with
        | "cpu" -> Some(false, -1)
        | "cuda" -> Some(true, -1)
        | _ when text.StartsWith "cuda:" ->
            match Int32.TryParse(text.Substring 5) with
            | true, index when index >= 0 -> Some(true, index)
            | _ -> None
        | _ -> None
    match parsed with
    | None ->
        raise (
            DeviceUnavailableException(
                sprintf "Unknown --device '%s'; choose cpu, cuda or cuda:N (N a GPU index ≥ 0)." name
            )
        )
    | Some(false, _) -> torch.CPU
    | Some(true, index) ->
        Native.ensure ()
        if not (torch.cuda.is_available ()) then
            raise (
                DeviceUnavailableException(
                    sprintf
                        "--device %s: CUDA is not available in this build, which uses the CPU-only TorchSharp package; to run on a GPU, switch to a CUDA build as docs/troubleshooting.md#using-a-gpu-cuda describes."
                        name
                )
            )
        torch.device (DeviceType.CUDA, index)

/// Reads a command's model arguments, given its `Model`, `Dtype`, `Compute_Dtype`, `Device` and `Allow_Nonfinite`
/// cases; every name is checked here, before any weights are read.
let read
    (args: ParseResults<'T>)
    (model: Expr<string -> 'T>)
    (dtypeCase: Expr<string -> 'T>)
    (computeCase: Expr<string -> 'T>)
    (deviceCase: Expr<string -> 'T>)
    (allowCase: Expr<'T>)
    =
    {
        Source = source (args.GetResult model)
        DType = args.TryGetResult dtypeCase |> Option.map (named "--dtype")
        ComputeDType = args.TryGetResult computeCase |> Option.map (named "--compute-dtype")
        Device = device (args.TryGetResult deviceCase)
        AllowNonFinite = args.Contains allowCase
    }

/// The element type a request computes in: --compute-dtype, else --dtype, else float32 on the CPU (half-precision
/// matmuls there are slow and less accurate; docs/performance.md) and the weights' stored dtype on a GPU.
let computeDType (request: ModelRequest) =
    match request.ComputeDType, request.DType with
    | Some c, _ -> c
    | None, Some d -> d
    | None, None when request.Device.``type`` = DeviceType.CPU || request.Source = "toy" -> torch.float32
    | None, None -> Architectures.storedDType request.Source

/// False when $JETDSL_MMAP is 0, off, false or no: weights are then copied at load instead of mapped from their files
/// (for files that may be overwritten while a command runs).
let memoryMap () =
    match Environment.GetEnvironmentVariable "JETDSL_MMAP" with
    | null -> true
    | value -> not (List.contains (value.Trim().ToLowerInvariant()) [ "0"; "off"; "false"; "no" ])

/// Opens the model a request names: the built-in toy or a checkpoint directory, its weights kept in their dtype,
/// computing in its compute dtype on its device. Non-finite weights fail the load unless the request allows them;
/// then the first one is reported on stderr.
let load (request: ModelRequest) : Model =
    Native.ensure ()
    let options =
        { AllowNonFinite = request.AllowNonFinite; StorageDType = request.DType; MemoryMap = memoryMap () }
    let model = Model.resolveWith options request.Source (computeDType request) request.Device
    if request.AllowNonFinite then
        NonFiniteChecks.weights model.Net
        |> Option.iter (fun r -> eprintfn "warning: the weights are not finite: %s." (r.Describe()))
    model

/// Only the tokenizer of `--model` (toy or a directory with tokenizer files); no weights are read.
let tokenizer (spec: string) : ITokenizer =
    Native.ensure ()
    Model.tokenizer (source spec)
