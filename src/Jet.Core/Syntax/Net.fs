namespace Jet.Core

open System
open System.Collections.Generic
open TorchSharp

/// A residual network: its structure (compared structurally) and its parameters (stored beside it). The network owns
/// its parameter store: `Dispose` frees the weights, after which the parameters (and so every forward pass, lens or
/// expansion of this network) fail with an ObjectDisposedException; the structure stays readable.
[<Sealed>]
type Net(spec: NetSpec, parameters: ParameterStore) =
    member _.Spec = spec
    member _.Parameters = parameters
    member _.Depth = spec.Depth
    member _.Vocab = spec.Vocab
    member _.Width = spec.Width

    /// The dtype the network computes in: every parameter is handed to the interpreters in it (widened just in time
    /// when the weights are stored narrower), and streams, jets and results have it.
    member _.DType =
        match parameters.Widening with
        | Some w -> w.ComputeDType
        | None -> parameters.Tensors.[spec.Encoder.TokenEmbedding].dtype

    /// The dtype the token embedding is stored in (the checkpoint's, for example bfloat16, unless converted).
    member _.StorageDType = parameters.Tensors.[spec.Encoder.TokenEmbedding].dtype

    member _.Device = parameters.Tensors.[spec.Encoder.TokenEmbedding].device

    /// Frees the network's weights (its parameter store); later calls do nothing.
    member _.Dispose() = parameters.Dispose()

    interface IDisposable with
        member n.Dispose() = n.Dispose()

    /// The structure, as `Print.net` writes it.
    override _.ToString() = Print.net spec

/// Operations on networks.
[<RequireQualifiedAccess>]
module Net =
    /// Checks that every parameter the structure names exists.
    let validate (net: Net) =
        let spec = net.Spec
        let names =
            [ spec.Encoder.TokenEmbedding ]
            @ Option.toList spec.Encoder.Positions
            @ (spec.Layers |> List.collect (fun l -> Fn.parameterNames l.Gamma))
            @ Fn.parameterNames spec.FinalNorm
            @ [ spec.Unembedding.Weight ]
            @ Option.toList spec.Unembedding.Bias
        // Stored tensors: validating must not widen anything.
        for n in names do
            net.Parameters.Stored n |> ignore
        let expectShape (what: string) (name: string) (expected: int64[]) =
            let actual = (net.Parameters.Stored name).shape
            if actual <> expected then
                let message =
                    sprintf
                        "%s '%s' has shape %s but the network needs %s."
                        what
                        name
                        (Tensors.shapeText actual)
                        (Tensors.shapeText expected)
                raise (ShapeMismatchException message)
        let vocab, width = int64 spec.Vocab, int64 spec.Width
        expectShape "The token embedding" spec.Encoder.TokenEmbedding [| vocab; width |]
        expectShape "The unembedding" spec.Unembedding.Weight [| vocab; width |]
        match spec.Encoder.Positions, spec.MaxPositions with
        | Some p, Some n -> expectShape "The position table" p [| int64 n; width |]
        | Some p, None ->
            raise (
                InvalidPlanException(
                    sprintf "The network has a position table '%s' but no MaxPositions; set it to the table's length." p
                )
            )
        | None, _ -> ()
        net

    /// Below this many widened bytes of layer weights, every layer stays widened (small networks pay no refills).
    [<Literal>]
    let MinWideningBudget = 64L * 1024L * 1024L

    /// How a network over `spec` whose parameters have the shapes `shapeOf` hands them out in `compute`: the
    /// position table, final norm and unembedding widened once and kept, the token embedding by rows; the layers'
    /// weights widened just in time into reused buffers, with slots for any two consecutive residual layers (every
    /// layer when they all take at most `keepAllBelow` bytes widened).
    let wideningWith
        (keepAllBelow: int64)
        (spec: NetSpec)
        (shapeOf: string -> int64[])
        (compute: torch.ScalarType)
        : Widening =
        // Not the token embedding: it is read by rows (ParameterStore.Rows), which widens only those rows.
        let pinned =
            [ spec.Unembedding.Weight ]
            @ Option.toList spec.Encoder.Positions
            @ Option.toList spec.Unembedding.Bias
            @ Fn.parameterNames spec.FinalNorm
            |> set
        let layers =
            spec.Layers
            |> List.map (fun l ->
                Fn.parameterNames l.Gamma
                |> List.distinct
                |> List.filter (pinned.Contains >> not)
                |> List.map shapeOf)
        let bytes =
            layers
            |> List.concat
            |> List.sumBy (fun s -> (Array.fold (*) 1L s) * int64 (TensorExtensionMethods.ElementSize compute))
        let windows =
            if bytes <= keepAllBelow then
                [ List.concat layers ]
            else
                match layers with
                | [ one ] -> [ one ]
                | _ -> layers |> List.pairwise |> List.map (fun (a, b) -> a @ b)
        // Each shape gets as many slots as the window that holds most of it.
        let slots =
            windows
            |> List.collect (List.countBy Tensors.shapeText)
            |> List.groupBy fst
            |> List.map (fun (shape, counts) -> shape, counts |> List.map snd |> List.max)
            |> Map.ofList
        { ComputeDType = compute; Pinned = pinned; Slots = slots }

    /// `wideningWith MinWideningBudget`: small networks keep every layer widened.
    let wideningFor spec shapeOf compute = wideningWith MinWideningBudget spec shapeOf compute

    /// A validated network over `spec` and `parameters`. On success the network owns the store (disposing the network
    /// disposes it); when validation fails the caller still owns it.
    [<CompiledName("Create")>]
    let create spec parameters = new Net(spec, parameters) |> validate

    /// A new network with every parameter mapped by `convert` (tied parameters stay shared); `net` is untouched.
    /// `convert` must return a tensor with its own storage (a copy), so that neither network's Dispose frees the
    /// other's weights. On failure every converted tensor is freed.
    let private mapParameters (convert: Tensor -> Tensor) (widening: Widening option) (net: Net) =
        let source = net.Parameters.Tensors
        Native.ensure ()
        // The scope frees the detached views and, when a conversion fails, the tensors converted so far.
        use scope = torch.NewDisposeScope()
        let converted = Dictionary<nativeint, Tensor>()
        let once (t: Tensor) =
            match converted.TryGetValue t.Handle with
            | true, c -> c
            | _ ->
                let c = convert (t.detach ())
                converted.[t.Handle] <- c
                c
        let pairs = [ for kv in source -> kv.Key, once kv.Value ]
        for c in converted.Values do
            c.DetachFromDisposeScope() |> ignore
        new Net(net.Spec, ParameterStore.OfSeq(pairs, widening))

    /// A new network, with its own weights, whose parameters are `net`'s converted to `dtype` (float32 or float64).
    /// `net` is untouched and still owned by the caller; dispose each network on its own. The weights are copied even
    /// when they already have this dtype, so the two never share memory.
    let toDType (dtype: torch.ScalarType) (net: Net) = mapParameters (fun t -> t.to_type (dtype, copy = true)) None net

    /// A new network, with its own weights, whose parameters are `net`'s moved to `device` (for example `torch.CUDA`
    /// with a CUDA build of TorchSharp). `net` is untouched and still owned by the caller; dispose each network on its
    /// own. The weights are copied even when they are already on `device`, so the two never share memory; they keep
    /// their dtype and the network its compute dtype.
    let toDevice (device: torch.Device) (net: Net) =
        mapParameters (fun t -> t.``to`` (device, copy = true)) net.Parameters.Widening net

    /// The residual layers (1-based) of a block (1-based); fails with the valid range.
    [<CompiledName("LayersOfBlock")>]
    let layersOfBlock (block: int) (net: Net) =
        match net.Spec.BlockLayers.TryFind block with
        | Some layers -> layers
        | None ->
            raise (
                IndexRangeException(
                    sprintf "Block %d does not exist; this network has blocks 1..%d." block net.Spec.BlockCount
                )
            )

    /// The residual layer of a block whose kind matches (for example the MLP of block 3).
    [<CompiledName("LayerOfBlock")>]
    let layerOfBlock (block: int) (kind: LayerKind) (net: Net) =
        let layers = layersOfBlock block net
        match layers |> List.tryFind (fun l -> net.Spec.Layers.[l - 1].Kind = kind) with
        | Some l -> l
        | None ->
            let kinds =
                layers |> List.map (fun l -> sprintf "%A" net.Spec.Layers.[l - 1].Kind) |> String.concat ", "
            raise (IndexRangeException(sprintf "Block %d has no %A layer; its layers are: %s." block kind kinds))

    /// Fails unless `layer` is a residual layer index 1..L.
    let checkLayer (layer: int) (net: Net) =
        if layer < 1 || layer > net.Depth then
            raise (
                IndexRangeException(
                    sprintf
                        "Residual layer %d does not exist; valid layers are 1..%d (use the decoder site for the final norm)."
                        layer
                        net.Depth
                )
            )

    /// Fails unless `stream` is a stream index 0..L (h₀ is the encoder output).
    let checkStream (stream: int) (net: Net) =
        if stream < 0 || stream > net.Depth then
            raise (
                IndexRangeException(sprintf "Stream h_%d does not exist; valid streams are h_0..h_%d." stream net.Depth)
            )

    /// Turns token ids into a validated int64 batch [batch, seq]; accepts [seq] too.
    let checkTokens (tokens: Tensor) (net: Net) =
        if isNull (box tokens) then
            raise (MissingArgumentException "The token batch is null.")
        if tokens.dtype <> torch.int64 && tokens.dtype <> torch.int32 then
            raise (
                DTypeException(
                    sprintf "Token ids must be an integer tensor (int64 or int32); got %s." (Tensors.describe tokens)
                )
            )
        let batch =
            match tokens.dim () with
            | 1L -> tokens.unsqueeze 0
            | 2L -> tokens
            | _ ->
                raise (
                    ShapeMismatchException(
                        sprintf "Token ids must have shape [batch, seq] or [seq]; got %s." (Tensors.describe tokens)
                    )
                )
        let batch =
            if batch.dtype = torch.int64 then
                batch
            else
                batch.to_type torch.int64
        if batch.shape.[1] = 0L then
            raise (ShapeMismatchException "The token sequence is empty; give at least one token.")
        let lo, hi = batch.min().item<int64> (), batch.max().item<int64> ()
        if lo < 0L || hi >= int64 net.Vocab then
            let bad = if lo < 0L then lo else hi
            raise (
                IndexRangeException(
                    sprintf "Token id %d is outside the vocabulary; valid ids are 0..%d." bad (net.Vocab - 1)
                )
            )
        match net.Spec.MaxPositions with
        | Some limit when batch.shape.[1] > int64 limit ->
            raise (
                IndexRangeException(
                    sprintf
                        "The sequence has %d tokens but the network accepts at most %d positions."
                        batch.shape.[1]
                        limit
                )
            )
        | _ -> ()
        batch.``to`` (net.Device)

/// The network functions under .NET names, for C# (the `Net` module compiles to `NetModule`).
type Net with
    /// A network from its structure and parameters, validated; the network owns the store.
    static member Create(spec: NetSpec, parameters: ParameterStore) = Net.create spec parameters

    /// The residual layers (1-based) of a block (1-based); fails with the valid range.
    member net.LayersOfBlock(block: int) : int[] = Net.layersOfBlock block net |> Array.ofList

    /// The residual layer of a block whose kind matches (for example the MLP of block 3).
    member net.LayerOfBlock(block: int, kind: LayerKind) = Net.layerOfBlock block kind net
