namespace Jet.Core.Models

open System
open System.Collections.Generic
open TorchSharp
open Jet.Core

/// How a checkpoint stores a tensor relative to the orientation the network uses.
[<RequireQualifiedAccess>]
type StoredAs =
    /// As used: a Linear weight [out, in], a norm weight [d], an embedding [vocab, d].
    | AsUsed
    /// GPT-2's Conv1D: stored [in, out]; the network uses the transpose [out, in] (a view, no copy).
    | Transposed
    /// Rows start .. start + (used rows) − 1 of a tensor stored with `total` rows (one part of a fused weight such as
    /// Phi-3's gate_up_proj); the network uses that slice (a view, no copy).
    | Rows of start: int64 * total: int64

/// One parameter the network needs: its name in the syntax, the checkpoint tensor it comes from and the shape
/// the network uses. Two parameters may share a source (tied weights read once).
type TensorRequest =
    {
        Parameter: string
        Source: string
        Shape: int64[]
        StoredAs: StoredAs
    }

    /// The shape the checkpoint must store.
    member r.StoredShape =
        match r.StoredAs with
        | StoredAs.AsUsed -> r.Shape
        | StoredAs.Transposed -> Array.rev r.Shape
        | StoredAs.Rows(_, total) -> Array.append [| total |] (Array.tail r.Shape)

/// What an architecture family makes of a checkpoint: the network's structure and the tensors it needs.
type Lowering = { Spec: NetSpec; Tensors: TensorRequest list }

/// An architecture family: the `architectures` class names and `model_type` it recognises and how it lowers a
/// config plus the checkpoint's tensor names to the DSL.
type Family =
    {
        /// The model_type, used as the family name ("gpt2", "llama", …).
        Name: string
        Architectures: string list
        /// config → "does the checkpoint have this tensor?" → lowering.
        Lower: HfConfig -> (string -> bool) -> Lowering
    }

/// Collects the tensor requests of a family builder while it writes the syntax. Parameter names are the
/// checkpoint names without the model prefix (`transformer.`, `model.`, …), so a model saved with or without its
/// head class lowers to the same syntax.
[<Sealed>]
type TensorPlan(prefix: string) =
    let requests = ResizeArray<TensorRequest>()

    /// The model prefix of the checkpoint's names ("transformer.", "model.", or "").
    member _.Prefix = prefix
    /// The requests so far, in order.
    member _.Requests = List.ofSeq requests

    /// Requests `prefix + name` with the shape the network uses; returns the parameter name.
    member _.Tensor(name: string, shape: int list, ?storedAs: StoredAs) =
        requests.Add
            {
                Parameter = name
                Source = prefix + name
                Shape = shape |> List.map int64 |> Array.ofList
                StoredAs = defaultArg storedAs StoredAs.AsUsed
            }
        name

    /// Requests a tensor stored outside the model prefix (for example `lm_head.weight`).
    member _.Unprefixed(name: string, shape: int list) =
        requests.Add
            {
                Parameter = name
                Source = name
                Shape = shape |> List.map int64 |> Array.ofList
                StoredAs = StoredAs.AsUsed
            }
        name

    /// A torch.nn.Linear `name.weight` [out, in] with an optional `name.bias` [out].
    member p.Linear(name: string, outDim: int, inDim: int, bias: bool) : Linear =
        {
            Weight = p.Tensor(name + ".weight", [ outDim; inDim ])
            Bias =
                (if bias then
                     Some(p.Tensor(name + ".bias", [ outDim ]))
                 else
                     None)
        }

    /// Rows start .. start + outDim − 1 of a bias-free torch.nn.Linear `name.weight` stored [totalOut, in], as a Linear
    /// [outDim, in] of its own, named `name.weight[start:end]` (one part of a fused projection).
    member p.LinearRows(name: string, start: int, outDim: int, totalOut: int, inDim: int) : Linear =
        let source = name + ".weight"
        requests.Add
            {
                Parameter = sprintf "%s[%d:%d]" source start (start + outDim)
                Source = prefix + source
                Shape = [| int64 outDim; int64 inDim |]
                StoredAs = StoredAs.Rows(int64 start, int64 totalOut)
            }
        { Weight = sprintf "%s[%d:%d]" source start (start + outDim); Bias = None }

    /// A GPT-2 Conv1D `name.weight` stored [in, out] (used transposed) with `name.bias` [out].
    member p.Conv1D(name: string, inDim: int, outDim: int) : Linear =
        {
            Weight = p.Tensor(name + ".weight", [ outDim; inDim ], StoredAs.Transposed)
            Bias = Some(p.Tensor(name + ".bias", [ outDim ]))
        }

    /// A LayerNorm with `name.weight` and `name.bias`, both [d].
    member p.LayerNorm(name: string, width: int, eps: float) : Fn =
        LayerNorm
            {
                Weight = Some(p.Tensor(name + ".weight", [ width ]))
                Bias = Some(p.Tensor(name + ".bias", [ width ]))
                Eps = eps
            }

    /// An RMSNorm with `name.weight` [d], scaling by w or, when `plusOne`, by 1 + w.
    member p.RmsNorm(name: string, width: int, eps: float, plusOne: bool) : Fn =
        RmsNorm { Weight = Some(p.Tensor(name + ".weight", [ width ])); Eps = eps; PlusOne = plusOne }

/// Helpers shared by the family builders, and turning a lowering into a network.
[<RequireQualifiedAccess>]
module Lowering =
    /// The first prefix under which the checkpoint has `probe`; fails naming the tensor when none has it.
    let detectPrefix (has: string -> bool) (family: string) (prefixes: string list) (probe: string) =
        match prefixes |> List.tryFind (fun p -> has (p + probe)) with
        | Some p -> p
        | None ->
            let tried = prefixes |> List.map (fun p -> "'" + p + probe + "'") |> String.concat " or "
            let message =
                sprintf
                    "The checkpoint has no %s, which every %s checkpoint has; is config.json describing these weights?"
                    tried
                    family
            raise (CheckpointException message)

    /// The DSL activation for a Hugging Face activation name (`activation_function`, `hidden_act`).
    let activation (config: HfConfig) (key: string) (name: string) =
        match name with
        | "gelu_new"
        | "gelu_pytorch_tanh"
        | "gelu_fast" -> Activation.GeluTanh
        | "gelu" -> Activation.Gelu
        | "relu" -> Activation.Relu
        | "silu"
        | "swish" -> Activation.Silu
        | "tanh" -> Activation.Tanh
        | "sigmoid" -> Activation.Sigmoid
        | other ->
            config.Invalid(
                key,
                sprintf
                    "is '%s'; supported activations are gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, silu, swish, tanh, sigmoid."
                    other
            )

    /// head_dim = width / heads, failing when it does not divide.
    let headDim (config: HfConfig) (widthKey: string) (width: int) (headsKey: string) (heads: int) =
        if width % heads <> 0 then
            config.Invalid(widthKey, sprintf "is %d, which %s = %d does not divide." width headsKey heads)
        width / heads

    /// The block-local attention and MLP residual layers of a sequential (pre-norm) transformer block.
    let sequentialBlock (block: int) (attention: Fn) (mlp: Fn) : ResidualLayer list =
        [
            { Name = sprintf "attn%d" block; Block = block; Kind = LayerKind.Attention; Gamma = attention }
            { Name = sprintf "mlp%d" block; Block = block; Kind = LayerKind.Mlp; Gamma = mlp }
        ]

    /// The unembedding: tied to the token embedding when the config ties them (the default given) or when a base
    /// model class without a head was saved; otherwise the separate head tensor `head` [vocab, d].
    let unembedding
        (config: HfConfig)
        (has: string -> bool)
        (plan: TensorPlan)
        (tiedByDefault: bool)
        (baseClasses: string list)
        (embedding: string)
        (head: string)
        (vocab: int)
        (width: int)
        =
        let tied = config.BoolOr("tie_word_embeddings", tiedByDefault)
        let headless =
            not (has head) && (config.Architectures |> List.exists (fun a -> List.contains a baseClasses))
        if tied || headless then
            { Weight = embedding; Bias = None; Tied = true; SoftCap = None }
        else
            { Weight = plan.Unprefixed(head, [ vocab; width ]); Bias = None; Tied = false; SoftCap = None }

    /// A LayerNorm without weight or bias (OLMo's).
    let plainLayerNorm (eps: float) : Fn = LayerNorm { Weight = None; Bias = None; Eps = eps }

    /// Fails on `rope_scaling`, which the DSL's rotary embedding does not model.
    let requireNoRopeScaling (config: HfConfig) =
        match config.TryGet "rope_scaling" with
        | Some v ->
            config.Invalid(
                "rope_scaling",
                sprintf "is %s; JetDsl supports plain rotary embeddings only (rope_scaling null)." (v.GetRawText())
            )
        | None -> ()

    /// The rotary scaling of `rope_scaling` (or, in newer configs, `rope_parameters`): none, "default", "linear"
    /// (factor) and "llama3" (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings) are
    /// supported; any other rope_type is refused, naming it.
    let ropeScaling (config: HfConfig) : RotaryScaling =
        let key, scaling =
            match config.TryGet "rope_scaling", config.TryGet "rope_parameters" with
            | Some v, _ -> "rope_scaling", Some v
            | None, Some v -> "rope_parameters", Some v
            | None, None -> "rope_scaling", None
        match scaling with
        | None -> RotaryScaling.Plain
        | Some v when v.ValueKind <> Text.Json.JsonValueKind.Object ->
            config.Invalid(key, sprintf "is %s; it must be an object with a rope_type, or null." (v.GetRawText()))
        | Some v ->
            let field (name: string) =
                match v.TryGetProperty name with
                | true, x when x.ValueKind <> Text.Json.JsonValueKind.Null -> Some x
                | _ -> None
            let text (name: string) =
                field name
                |> Option.map (fun x ->
                    if x.ValueKind = Text.Json.JsonValueKind.String then
                        x.GetString()
                    else
                        config.Invalid(key, sprintf "has %s = %s; it must be a string." name (x.GetRawText())))
            let number (name: string) =
                match field name with
                | Some x when x.ValueKind = Text.Json.JsonValueKind.Number -> x.GetDouble()
                | Some x -> config.Invalid(key, sprintf "has %s = %s; it must be a number." name (x.GetRawText()))
                | None -> config.Invalid(key, sprintf "has no %s, which its rope_type needs." name)
            // Hugging Face reads "rope_type", and "type" in older configs.
            let ropeType =
                match text "rope_type", text "type" with
                | Some t, _
                | None, Some t -> t
                | None, None when
                    v.EnumerateObject() |> Seq.exists (fun p -> p.Value.ValueKind = Text.Json.JsonValueKind.Object)
                    ->
                    config.Invalid(
                        key,
                        "gives parameters per attention type; JetDsl reads one rope_type for all layers."
                    )
                | None, None -> "default"
            let factor () =
                let f = number "factor"
                if not (f > 0.0) then
                    config.Invalid(key, sprintf "has factor %g; it must be positive." f)
                f
            match ropeType with
            | "default" -> RotaryScaling.Plain
            | "linear" -> RotaryScaling.Linear(factor ())
            | "llama3" ->
                let factor = factor ()
                let low, high = number "low_freq_factor", number "high_freq_factor"
                let context = number "original_max_position_embeddings"
                if not (low > 0.0 && high > low) then
                    config.Invalid(
                        key,
                        sprintf "has low_freq_factor %g and high_freq_factor %g; it needs 0 < low < high." low high
                    )
                if not (context >= 1.0 && context = Math.Floor context) then
                    config.Invalid(
                        key,
                        sprintf "has original_max_position_embeddings %g; it must be a positive integer." context
                    )
                RotaryScaling.Llama3
                    { Factor = factor; LowFreqFactor = low; HighFreqFactor = high; OriginalContext = int context }
            | other ->
                config.Invalid(
                    key,
                    sprintf
                        "has rope_type '%s', which JetDsl does not implement; supported: default, linear, llama3."
                        other
                )

    /// The rotary embedding of a config: `rope_theta` (or `rope_parameters.rope_theta`; `defaultBase` when neither
    /// is given), rotating `fraction` of each head in `style`, scaled as `ropeScaling` reads.
    let rotary (config: HfConfig) (defaultBase: float) (fraction: float) (style: RotaryStyle) : Rotary =
        let theta =
            match config.TryFloat "rope_theta", config.TryGet "rope_parameters" with
            | Some t, _ -> t
            | None, Some p when p.ValueKind = Text.Json.JsonValueKind.Object ->
                match p.TryGetProperty "rope_theta" with
                | true, t when t.ValueKind = Text.Json.JsonValueKind.Number -> t.GetDouble()
                | _ -> defaultBase
            | None, _ -> defaultBase
        if not (theta > 0.0) || System.Double.IsInfinity theta then
            config.Invalid("rope_theta", sprintf "is %g; it must be positive and finite." theta)
        { Fraction = fraction; Base = theta; Style = style; Scaling = ropeScaling config }

    // Raw bytes read before conversion, and the threads that copy them.
    let private batchBytes = 256L * 1024L * 1024L
    let private parallelism = min 8 Environment.ProcessorCount

    let private sameDevice (a: torch.Device) (b: torch.Device) = a.``type`` = b.``type`` && a.index = b.index

    /// Checks every request against the checkpoint before any tensor is read: present, floating, right shape.
    let validate (checkpoint: Checkpoint) (family: string) (requests: TensorRequest list) =
        let missing =
            requests
            |> List.filter (fun r -> not (checkpoint.Contains r.Source))
            |> List.map (fun r -> r.Source)
            |> List.distinct
        if not missing.IsEmpty then
            let examples = checkpoint.Names |> List.truncate 6 |> String.concat ", "
            let more =
                if missing.Length > 1 then
                    sprintf " (and %d more missing)" (missing.Length - 1)
                else
                    ""
            let message =
                sprintf
                    "The checkpoint in %s has no tensor '%s'%s, which the %s config requires. It has %d tensors, for example: %s."
                    checkpoint.Directory
                    missing.Head
                    more
                    family
                    checkpoint.Count
                    examples
            raise (CheckpointException message)
        for r in requests do
            let entry = (checkpoint.TryEntry r.Source).Value
            if not (Safetensors.isFloating entry.DType) then
                let message =
                    sprintf
                        "Tensor '%s' in %s is %s; network parameters must be F16, BF16, F32 or F64."
                        r.Source
                        (checkpoint.FileOf r.Source)
                        entry.DType
                raise (CheckpointException message)
            if entry.Shape <> r.StoredShape then
                let orientation =
                    match r.StoredAs with
                    | StoredAs.Transposed -> " (Conv1D layout [in, out])"
                    | StoredAs.Rows _ -> " (a fused weight)"
                    | StoredAs.AsUsed -> ""
                let message =
                    sprintf
                        "Tensor '%s' in %s has shape %s, but the %s config requires %s%s."
                        r.Source
                        (checkpoint.FileOf r.Source)
                        (Tensors.shapeText entry.Shape)
                        family
                        (Tensors.shapeText r.StoredShape)
                        orientation
                raise (CheckpointException message)

    /// Buffers some checkpoints save beside the weights and no network reads: causal masks (GPT-2's `attn.bias` and
    /// `attn.masked_bias`, GPT-Neo's and GPT-NeoX's `attention.bias` / `attention.masked_bias`) and rotary
    /// frequencies (`rotary_emb.inv_freq`).
    let private knownBuffers =
        [
            ".attn.bias"
            ".attn.masked_bias"
            ".attention.bias"
            ".attention.masked_bias"
            "rotary_emb.inv_freq"
        ]

    /// The 0-based block index in a checkpoint tensor name ("h.4.mlp…", "layers.4.…"), if it has one.
    let private blockIndex (name: string) =
        let m = Text.RegularExpressions.Regex.Match(name, @"(?:^|\.)(?:h|layers|layer|blocks)\.(\d+)\.")
        match m.Success, Int32.TryParse m.Groups.[1].Value with
        | true, (true, i) -> Some i
        | _ -> None

    /// Fails naming the checkpoint tensors the lowering does not use (known buffers, and a saved copy of a tied head,
    /// excepted): weights that are silently ignored mean config.json does not describe the checkpoint (for example
    /// fewer layers than it holds).
    let requireAllUsed (checkpoint: Checkpoint) (family: string) (lowering: Lowering) =
        let used = HashSet(lowering.Tensors |> List.map (fun r -> r.Source))
        let ignorable (name: string) =
            knownBuffers |> List.exists (fun b -> name.EndsWith b)
            || (lowering.Spec.Unembedding.Tied && name = "lm_head.weight")
        let unused = checkpoint.Names |> List.filter (fun n -> not (used.Contains n || ignorable n))
        if not unused.IsEmpty then
            let blocks = lowering.Spec.BlockCount
            let beyond = unused |> List.choose blockIndex |> List.filter (fun i -> i >= blocks) |> List.distinct
            let hint =
                if beyond.IsEmpty then
                    "Is config.json describing these weights?"
                else
                    sprintf
                        "They include blocks %d..%d (counting from 0, as the names do), but config.json describes %d blocks: its layer count (n_layer, num_layers or num_hidden_layers) must match the checkpoint."
                        (List.min beyond)
                        (List.max beyond)
                        blocks
            let listed = unused |> List.truncate 5 |> List.map (sprintf "'%s'") |> String.concat ", "
            let more =
                if unused.Length > 5 then
                    sprintf " and %d more" (unused.Length - 5)
                else
                    ""
            let message =
                sprintf
                    "The checkpoint in %s has %d tensor(s) that the %s network config.json describes does not use: %s%s. %s"
                    checkpoint.Directory
                    unused.Length
                    family
                    listed
                    more
                    hint
            raise (CheckpointException message)

    /// Reads the requested tensors (each source once), keeps each in the dtype `storage` picks for its stored dtype
    /// (the stored one itself avoids any conversion copy), moves them to `device` and returns the parameter store,
    /// which hands them out as `widening` says. Every tensor is checked for NaN and ±∞ after conversion (so a value
    /// that overflows its storage dtype counts too): unless `allowNonFinite`, a NonFiniteException names each tensor
    /// that has some and how many. With `memoryMap`, tensors kept as stored on the CPU are views of their files mapped
    /// in memory (no copy; pages are read when first touched). Tensors outlive any caller's dispose scope; on failure
    /// everything read is freed.
    let materializeWith
        (allowNonFinite: bool)
        (memoryMap: bool)
        (checkpoint: Checkpoint)
        (family: string)
        (requests: TensorRequest list)
        (storage: torch.ScalarType -> torch.ScalarType)
        (widening: Widening option)
        (device: torch.Device)
        =
        validate checkpoint family requests
        Native.ensure ()
        use scope = torch.NewDisposeScope()
        let bySource = Dictionary<string, Tensor>()
        let parameters = Dictionary<string, Tensor>()
        let nonFinite = ResizeArray<NonFiniteReport>()
        let mutable converted = None
        // Sources are read in batches of about `batchBytes`: the copies of a batch run in parallel, then each
        // tensor is converted and moved, so a conversion never holds more than one batch of raw bytes besides
        // the finished parameters.
        let sources = requests |> List.map (fun r -> r.Source) |> List.distinct
        let batches =
            sources
            |> List.fold
                (fun (batches: string list list, size: int64) source ->
                    let bytes = (checkpoint.TryEntry source).Value.ByteCount
                    match batches with
                    | current :: rest when size + bytes <= batchBytes -> ((source :: current) :: rest), size + bytes
                    | _ -> ([ source ] :: batches), bytes)
                ([], 0L)
            |> fst
            |> List.rev
            |> List.map List.rev
        for batch in batches do
            let raws = checkpoint.ReadRawMany(batch, parallelism, memoryMap)
            for source, raw in List.zip batch raws do
                let dtype = storage raw.dtype
                if dtype <> raw.dtype then
                    converted <- Some dtype
                let typed =
                    if raw.dtype = dtype then
                        raw
                    else
                        (let c = raw.to_type dtype in
                         raw.Dispose()
                         c)
                let placed =
                    if sameDevice typed.device device then
                        typed
                    else
                        (let c = typed.``to`` device in
                         typed.Dispose()
                         c)
                bySource.[source] <- placed
                match NonFinite.tryFind (sprintf "tensor '%s'" source) placed with
                | Some report -> nonFinite.Add report
                | None -> ()
        if nonFinite.Count > 0 && not allowNonFinite then
            let listed = nonFinite |> Seq.truncate 5 |> Seq.map (fun r -> r.Describe()) |> String.concat "; "
            let more =
                if nonFinite.Count > 5 then
                    sprintf "; and %d more tensors" (nonFinite.Count - 5)
                else
                    ""
            let message =
                sprintf
                    "The checkpoint in %s has non-finite weights (NaN or ±Inf%s): %s%s. Every result would be garbage; to load it anyway (for example to inspect it), pass --allow-nonfinite (LoadOptions.AllowNonFinite in the library)."
                    checkpoint.Directory
                    (match converted with
                     | Some dtype when dtype <> torch.float32 && dtype <> torch.float64 ->
                         sprintf ", after conversion to %O" dtype
                     | _ -> "")
                    listed
                    more
            raise (NonFiniteException message)
        for r in requests do
            let stored = bySource.[r.Source]
            parameters.[r.Parameter] <-
                match r.StoredAs with
                | StoredAs.AsUsed -> stored
                | StoredAs.Transposed -> stored.t ()
                | StoredAs.Rows(start, _) -> stored.narrow (0L, start, r.Shape.[0])
        for t in parameters.Values |> Seq.distinct do
            t.DetachFromDisposeScope() |> ignore
        new ParameterStore(parameters :> IReadOnlyDictionary<_, _>, widening)

    /// `materializeWith` refusing non-finite weights, every tensor converted to `dtype` and handed out as stored.
    let materialize checkpoint family requests (dtype: torch.ScalarType) device =
        materializeWith false true checkpoint family requests (fun _ -> dtype) None device
