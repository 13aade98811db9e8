namespace Jet.Core.Models

open TorchSharp
open Jet.Core
open Jet.Core.Models.Families

/// How a checkpoint is loaded.
type LoadOptions =
    {
        /// Load weights that hold NaN or ±∞ instead of failing with a NonFiniteException (false by default); results
        /// computed from them are then flagged where their first non-finite value appears.
        AllowNonFinite: bool
        /// The dtype the weights are kept in. None (the default) keeps each tensor as the checkpoint stores it whenever
        /// the compute dtype holds its values exactly (bfloat16 or float16 computed in float32 or float64, float32 in
        /// float64): one copy of the weights, each layer widened just in time. Otherwise (a narrower compute dtype)
        /// they are converted to the compute dtype once, at load.
        StorageDType: torch.ScalarType option
        /// Map the weight files into memory (true by default) where the system and the file allow it: weights kept as
        /// stored are then views of the files, read when first used, instead of copies. False copies every tensor at
        /// load, for files that may be overwritten while the model is in use (a mapped file must not be).
        MemoryMap: bool
    }

    /// Non-finite weights refused; weights kept as stored, memory-mapped.
    static member Default = { AllowNonFinite = false; StorageDType = None; MemoryMap = true }

/// The supported architecture families and loading a checkpoint directory into a network.
[<RequireQualifiedAccess>]
module Architectures =
    /// Every family a checkpoint can belong to.
    let families: Family list =
        [
            Gpt2.family
            GptNeo.family
            GptNeoX.family
            Llama.llama
            Llama.mistral
            Llama.gemma
            Llama.qwen2
            Llama.qwen3
            Olmo.olmo
            Olmo.olmo2
            Phi3.family
            Gemma2.family
        ]

    /// The `architectures` class names JetDsl loads.
    let supported = families |> List.collect (fun f -> f.Architectures)

    /// The family of a config: by its `architectures` class name, or by `model_type` when it lists none.
    let find (config: HfConfig) : Family =
        let byClass =
            config.Architectures
            |> List.tryPick (fun a -> families |> List.tryFind (fun f -> List.contains a f.Architectures))
        let byType () = config.ModelType |> Option.bind (fun t -> families |> List.tryFind (fun f -> f.Name = t))
        match byClass with
        | Some f -> f
        | None when config.Architectures.IsEmpty && (byType ()).IsSome -> (byType ()).Value
        | None ->
            let named =
                match config.Architectures, config.ModelType with
                | [], None -> "names no architecture"
                | [], Some t -> sprintf "has model_type '%s'" t
                | classes, _ -> sprintf "describes %s" (String.concat ", " classes)
            let message =
                sprintf
                    "%s %s, which JetDsl cannot load. Supported architectures: %s."
                    config.Path
                    named
                    (String.concat ", " supported)
            raise (UnsupportedArchitectureException message)

    /// True for the SentencePiece families, whose bare `tokenizer.model` starts every text with BOS (Phi-3 ships the
    /// Llama tokenizer, whose add_bos_token defaults to true).
    let addsBosByDefault (family: Family) = List.contains family.Name [ "llama"; "mistral"; "gemma"; "gemma2"; "phi3" ]

    /// Fails unless `dtype` is a floating type networks can compute in.
    let requireFloatingDType (dtype: torch.ScalarType) =
        if
            dtype <> torch.float32
            && dtype <> torch.float64
            && dtype <> torch.float16
            && dtype <> torch.bfloat16
        then
            raise (
                DTypeException(sprintf "Models load as float32, float64, float16 or bfloat16; %O was asked for." dtype)
            )

    /// True when every value of `stored` is exactly representable in `compute` (so widening loses nothing).
    let widensExactly (stored: torch.ScalarType) (compute: torch.ScalarType) =
        let rank (t: torch.ScalarType) =
            if t = torch.float64 then 3
            elif t = torch.float32 then 2
            else 1
        stored = compute || rank compute > rank stored

    /// The dtype a tensor stored as `stored` is kept in when the network computes in `compute` (see
    /// LoadOptions.StorageDType).
    let storageFor (options: LoadOptions) (compute: torch.ScalarType) (stored: torch.ScalarType) =
        match options.StorageDType with
        | Some dtype -> dtype
        | None when widensExactly stored compute -> stored
        | None -> compute

    /// The dtype most of a checkpoint's weight bytes are stored in (read from the headers alone), for example to
    /// compute in the stored dtype on a GPU.
    let storedDType (directory: string) : torch.ScalarType =
        Checkpoint.requireDirectory directory
        use checkpoint = Checkpoint.openDirectory directory
        checkpoint.Names
        |> List.choose checkpoint.TryEntry
        |> List.filter (fun e -> Safetensors.isFloating e.DType)
        |> List.groupBy (fun e -> e.DType)
        |> List.map (fun (dtype, entries) -> dtype, entries |> List.sumBy (fun e -> e.ByteCount))
        |> List.sortByDescending snd
        |> List.tryHead
        |> Option.bind (fun (dtype, _) -> Safetensors.scalarType dtype)
        |> Option.defaultValue torch.float32

    /// Lowers the checkpoint in `directory` to a network that computes in `dtype` on `device`; returns the
    /// network (the caller owns it) and its family. The weights are kept as `options.StorageDType` says (by default
    /// as stored, widened to `dtype` just in time, layer by layer). Every header, name and shape is checked before any
    /// tensor is read, tensors the network would not use are refused, and the weights are checked for NaN and ±∞ as
    /// they are read (refused unless the options allow them); on failure every tensor read is freed.
    let loadNetWith
        (options: LoadOptions)
        (directory: string)
        (dtype: torch.ScalarType)
        (device: torch.Device)
        : Net * Family =
        requireFloatingDType dtype
        options.StorageDType |> Option.iter requireFloatingDType
        Checkpoint.requireDirectory directory
        let config = HfConfig.load directory
        let family = find config
        use checkpoint = Checkpoint.openDirectory directory
        let lowering = family.Lower config checkpoint.Contains
        Lowering.requireAllUsed checkpoint family.Name lowering
        let shapes = lowering.Tensors |> List.map (fun r -> r.Parameter, r.Shape) |> dict
        let widening = Net.wideningFor lowering.Spec (fun name -> shapes.[name]) dtype
        let parameters =
            Lowering.materializeWith
                options.AllowNonFinite
                options.MemoryMap
                checkpoint
                family.Name
                lowering.Tensors
                (storageFor options dtype)
                (Some widening)
                device
        try
            Net.create lowering.Spec parameters, family
        with _ ->
            parameters.Dispose()
            reraise ()

    /// `loadNetWith` with the default options (non-finite weights refused).
    let loadNet (directory: string) (dtype: torch.ScalarType) (device: torch.Device) : Net * Family =
        loadNetWith LoadOptions.Default directory dtype device
