namespace Jet.Core.Models

open TorchSharp
open Jet.Core

/// A network with its tokenizer and where it came from: what the applications and the CLI work on. The model owns its
/// network: `use model = …` (or `Dispose`) frees the weights, after which every forward pass, lens or expansion of it
/// fails with an ObjectDisposedException. A copy made with `{ model with … }` shares the network: dispose one of
/// them.
type Model =
    // A record rather than a class: F# scripts read its fields without referencing Microsoft.ML.Tokenizers, which a
    // member lookup on a type of this namespace needs (FS0074); so scripts dispose it through IDisposable.
    {
        Net: Net
        Tokenizer: ITokenizer
        /// The architecture family, for example "toy", "gpt2", "llama".
        Family: string
        /// "toy" or the checkpoint directory.
        Source: string
    }

    /// Frees the network's weights; later calls do nothing.
    member m.Dispose() = m.Net.Dispose()

    interface System.IDisposable with
        member m.Dispose() = m.Dispose()

/// Opening models.
[<RequireQualifiedAccess>]
module Model =
    /// The built-in toy network (seed, width) with its character tokenizer. The caller owns the model (dispose it).
    [<CompiledName("Toy")>]
    let toy (seed: int) (width: int) (dtype: torch.ScalarType) =
        {
            Net = Toy.create seed width dtype
            Tokenizer = CharTokenizer.Instance
            Family = "toy"
            Source = "toy"
        }

    /// Token ids of a prompt as a [1, seq] int64 tensor; fails on an empty prompt.
    [<CompiledName("Encode")>]
    let encode (model: Model) (prompt: string) =
        if System.String.IsNullOrEmpty prompt then
            raise (MissingArgumentException "The prompt is empty; give some text to tokenize.")
        let ids = model.Tokenizer.Encode prompt
        if ids.Length = 0 then
            raise (MissingArgumentException(sprintf "The prompt %A produced no tokens." prompt))
        use flat = torch.tensor (ids |> Array.map int64, dtype = torch.int64)
        flat.unsqueeze 0

    /// The width of the toy network that `resolve "toy"` opens (the quickstart's default width).
    [<Literal>]
    let ToyWidth = 32

    /// The seed of the toy network that `resolve "toy"` opens.
    [<Literal>]
    let ToySeed = 0

    /// Loads a Hugging Face checkpoint directory (config.json, model.safetensors or its shards, tokenizer files)
    /// as a network that computes in `dtype` on `device`, with its tokenizer. The weights stay in their stored dtype
    /// (bfloat16 and float16 computed in float32 are widened layer by layer, just in time) unless
    /// `options.StorageDType` names another or `dtype` is narrower than they are. Families: gpt2, gpt_neo, gpt_neox, llama, mistral, gemma,
    /// qwen2, qwen3.
    /// The caller owns the model (dispose it); when loading fails, every tensor read so far is freed.
    [<CompiledName("LoadWith")>]
    let loadWith (options: LoadOptions) (directory: string) (dtype: torch.ScalarType) (device: torch.Device) : Model =
        let net, family = Architectures.loadNetWith options directory dtype device
        try
            let tokenizer = HfTokenizer.load directory net.Vocab (Architectures.addsBosByDefault family)
            {
                Net = net
                Tokenizer = tokenizer
                Family = family.Name
                Source = System.IO.Path.GetFullPath directory
            }
        with _ ->
            net.Dispose()
            reraise ()

    /// `loadWith` the default options: weights holding NaN or ±∞ are refused with a NonFiniteException.
    [<CompiledName("Load")>]
    let load (directory: string) (dtype: torch.ScalarType) (device: torch.Device) : Model =
        loadWith LoadOptions.Default directory dtype device

    /// Only the tokenizer of "toy" or of a checkpoint directory, without reading any weights (a directory may
    /// hold just tokenizer files; config.json, when present, decides whether a bare tokenizer.model adds BOS).
    [<CompiledName("Tokenizer")>]
    let tokenizer (source: string) : ITokenizer =
        if source = "toy" then
            CharTokenizer.Instance :> ITokenizer
        else
            Checkpoint.requireDirectory source
            let config = System.IO.Path.Combine(source, HfConfig.FileName)
            let addBos, vocab =
                if System.IO.File.Exists config then
                    let c = HfConfig.load source
                    Architectures.addsBosByDefault (Architectures.find c), c.IntOr("vocab_size", 0)
                else
                    false, 0
            HfTokenizer.load source vocab addBos

    /// "toy" opens the built-in toy network (seed ToySeed, width ToyWidth); anything else is a checkpoint directory.
    /// The caller owns the model (dispose it).
    [<CompiledName("ResolveWith")>]
    let resolveWith (options: LoadOptions) (source: string) (dtype: torch.ScalarType) (device: torch.Device) : Model =
        if source = "toy" then
            Architectures.requireFloatingDType dtype
            let model = toy ToySeed ToyWidth dtype
            if device.``type`` = DeviceType.CPU then
                model
            else
                // The toy is built on the CPU; the moved copy is the model, the CPU weights are freed here.
                use cpu = model
                { cpu with Net = Net.toDevice device cpu.Net }
        else
            loadWith options source dtype device

    /// `resolveWith` the default options.
    [<CompiledName("Resolve")>]
    let resolve (source: string) (dtype: torch.ScalarType) (device: torch.Device) : Model =
        resolveWith LoadOptions.Default source dtype device

    /// What `jet info` reports about a model.
    type Summary =
        {
            Family: string
            Source: string
            Blocks: int
            ResidualLayers: int
            Width: int
            /// Query heads of the first attention layer (0 when the network has none).
            Heads: int
            KvHeads: int
            Vocab: int
            MaxPositions: int option
            /// Scalars in the parameters, tied tensors counted once.
            Parameters: int64
            /// The dtype the network computes in.
            DType: string
            /// The dtype the token embedding's weights are kept in (for example bfloat16 computed in float32).
            StorageDType: string
            /// Bytes of the weights as kept, tied tensors counted once.
            WeightBytes: int64
        }

    /// The first attention primitive inside a γ, if any.
    let private attentionIn (f: Fn) : Attention option =
        f
        |> Fn.tryPick (function
            | Attention a -> Some a
            | _ -> None)

    /// The family, sizes, parameter count and dtype of a model.
    [<CompiledName("Summary")>]
    let summary (model: Model) : Summary =
        let net = model.Net
        let attention = net.Spec.Layers |> List.tryPick (fun l -> attentionIn l.Gamma)
        {
            Family = model.Family
            Source = model.Source
            Blocks = net.Spec.BlockCount
            ResidualLayers = net.Depth
            Width = net.Width
            Heads = attention |> Option.map (fun a -> a.Heads) |> Option.defaultValue 0
            KvHeads = attention |> Option.map (fun a -> a.KvHeads) |> Option.defaultValue 0
            Vocab = net.Vocab
            MaxPositions = net.Spec.MaxPositions
            Parameters = net.Parameters.ScalarCount
            DType = (string net.DType).ToLowerInvariant()
            StorageDType = (string net.StorageDType).ToLowerInvariant()
            WeightBytes = net.Parameters.StoredBytes
        }

/// The model functions under .NET names, for C# (the `Model` module compiles to `ModelModule`).
type Model with
    /// The built-in toy network (seed, width) with its character tokenizer. The caller owns the model (dispose it).
    static member Toy(seed: int, width: int, dtype: torch.ScalarType) = Model.toy seed width dtype

    /// Loads a Hugging Face checkpoint directory as a network computing in `dtype` on `device` with its tokenizer;
    /// the weights stay as stored where `dtype` holds them exactly.
    static member Load(directory: string, dtype: torch.ScalarType, device: torch.Device) =
        Model.load directory dtype device

    /// Loads a checkpoint directory with options (for example allowing non-finite weights).
    static member Load(directory: string, dtype: torch.ScalarType, device: torch.Device, options: LoadOptions) =
        Model.loadWith options directory dtype device

    /// "toy" or a checkpoint directory, as the jet command's --model reads it.
    static member Resolve(source: string, dtype: torch.ScalarType, device: torch.Device) =
        Model.resolve source dtype device

    /// Token ids of a prompt as a [1, seq] int64 tensor.
    member model.Encode(prompt: string) = Model.encode model prompt
