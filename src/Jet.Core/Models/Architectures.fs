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
    }

    /// Non-finite weights refused.
    static member Default = { AllowNonFinite = false }

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

    /// Lowers the checkpoint in `directory` to a network whose parameters are `dtype` on `device`; returns the
    /// network (the caller owns it) and its family. Every header, name and shape is checked before any tensor is
    /// read, tensors the network would not use are refused, and the weights are checked for NaN and ±∞ as they are
    /// read (refused unless the options allow them); on failure every tensor read is freed.
    let loadNetWith
        (options: LoadOptions)
        (directory: string)
        (dtype: torch.ScalarType)
        (device: torch.Device)
        : Net * Family =
        requireFloatingDType dtype
        Checkpoint.requireDirectory directory
        let config = HfConfig.load directory
        let family = find config
        use checkpoint = Checkpoint.openDirectory directory
        let lowering = family.Lower config checkpoint.Contains
        Lowering.requireAllUsed checkpoint family.Name lowering
        let parameters =
            Lowering.materializeWith options.AllowNonFinite checkpoint family.Name lowering.Tensors dtype device
        try
            Net.create lowering.Spec parameters, family
        with _ ->
            parameters.Dispose()
            reraise ()

    /// `loadNetWith` with the default options (non-finite weights refused).
    let loadNet (directory: string) (dtype: torch.ScalarType) (device: torch.Device) : Net * Family =
        loadNetWith LoadOptions.Default directory dtype device
