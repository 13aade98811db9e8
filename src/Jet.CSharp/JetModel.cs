using Jet.Core;
using Jet.Core.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace JetDsl;

/// <summary>Which residual layer of a transformer block.</summary>
public enum LayerPart
{
    /// <summary>The block's only residual layer (fails when it has several).</summary>
    Only,
    /// <summary>The attention layer.</summary>
    Attention,
    /// <summary>The MLP layer.</summary>
    Mlp,
}

/// <summary>A network with its tokenizer: the built-in toy, a Hugging Face checkpoint, or a network built from parts.
/// The model owns its weights: dispose it (<c>using var model = …</c>) to free them; afterwards every analysis, lens
/// or sweep of it fails with an <see cref="ObjectDisposedException"/>.</summary>
public sealed class JetModel : IDisposable
{
    internal Model Core { get; }

    internal JetModel(Model core) => Core = core;

    /// <summary>The paper's toy: vocabulary 100, width <paramref name="width"/>, two residual MLP blocks, LayerNorm,
    /// untied unembedding, seeded weights; its tokenizer maps printable ASCII characters to ids.</summary>
    public static JetModel Toy(int seed = 0, int width = 32, ScalarType dtype = ScalarType.Float32) =>
        new(Model.Toy(seed, width, dtype));

    /// <summary>Loads a Hugging Face checkpoint directory (config.json, model.safetensors or its shards, tokenizer
    /// files). Families: GPT-2, GPT-Neo, GPT-NeoX (Pythia), Llama, Mistral, Gemma.</summary>
    /// <param name="directory">The checkpoint directory.</param>
    /// <param name="dtype">The element type the network computes in (float32 by default). bfloat16 and float16
    /// weights stay as stored and are widened to it layer by layer, just in time.</param>
    /// <param name="device">Where to put the weights (the CPU by default).</param>
    /// <param name="allowNonFinite">Load weights that hold NaN or ±Inf instead of throwing a
    /// <see cref="NonFiniteException"/> naming them (false by default).</param>
    /// <param name="storageDType">The element type to keep the weights in (null, the default: as stored, unless
    /// <paramref name="dtype"/> is narrower).</param>
    /// <param name="memoryMap">Map the weight files into memory (the default): weights kept as stored are views of
    /// the files, read when first used. False copies them at load, for files that may be overwritten meanwhile.</param>
    public static JetModel Load(
        string directory,
        ScalarType dtype = ScalarType.Float32,
        Device? device = null,
        bool allowNonFinite = false,
        ScalarType? storageDType = null,
        bool memoryMap = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Native.Ensure();
        var storage = storageDType is { } s
            ? Microsoft.FSharp.Core.FSharpOption<ScalarType>.Some(s)
            : Microsoft.FSharp.Core.FSharpOption<ScalarType>.None;
        return new(Model.Load(directory, dtype, device ?? torch.CPU, new LoadOptions(allowNonFinite, storage, memoryMap)));
    }

    /// <summary>"toy" for the built-in toy network, or a checkpoint directory (as the jet command's --model).</summary>
    public static JetModel Open(string source, ScalarType dtype = ScalarType.Float32)
    {
        ArgumentException.ThrowIfNullOrEmpty(source);
        Native.Ensure();
        return new(Model.Resolve(source, dtype, torch.CPU));
    }

    /// <summary>Wraps a network built with <see cref="NetworkBuilder"/> and a tokenizer (the toy's character
    /// tokenizer when none is given). The model takes ownership of <paramref name="network"/>: disposing the model
    /// disposes the network and its weights.</summary>
    public static JetModel FromNetwork(Net network, ITokenizer? tokenizer = null, string family = "custom")
    {
        ArgumentNullException.ThrowIfNull(network);
        return new(new Model(network, tokenizer ?? CharTokenizer.Instance, family, "memory"));
    }

    /// <summary>The network (syntax and parameters), owned by this model: it is disposed with it.</summary>
    public Net Network => Core.Net;

    /// <summary>The element type the network computes in.</summary>
    public ScalarType ComputeDType => Core.Net.DType;

    /// <summary>The element type the weights are kept in (the checkpoint's, for example bfloat16, unless
    /// converted).</summary>
    public ScalarType StorageDType => Core.Net.StorageDType;

    /// <summary>The tokenizer.</summary>
    public ITokenizer Tokenizer => Core.Tokenizer;

    /// <summary>The architecture family, for example "toy" or "gpt2".</summary>
    public string Family => Core.Family;

    /// <summary>Where the model came from: "toy", "memory", or the checkpoint directory's full path.</summary>
    public string Source => Core.Source;

    /// <summary>The vocabulary size V.</summary>
    public int Vocabulary => Core.Net.Vocab;

    /// <summary>The width d of the residual stream.</summary>
    public int Width => Core.Net.Width;

    /// <summary>The number L of residual layers.</summary>
    public int Depth => Core.Net.Depth;

    /// <summary>The number of transformer blocks.</summary>
    public int Blocks => Core.Net.Spec.BlockCount;

    /// <summary>The residual layer (1..L) of a block (1-based).</summary>
    public int LayerOf(int block, LayerPart part = LayerPart.Only)
    {
        var layers = Core.Net.LayersOfBlock(block);
        return part switch
        {
            LayerPart.Attention => Core.Net.LayerOfBlock(block, LayerKind.Attention),
            LayerPart.Mlp => Core.Net.LayerOfBlock(block, LayerKind.Mlp),
            _ when layers.Length == 1 => layers[0],
            _ => throw new IndexRangeException(
                $"Block {block} has {layers.Length} residual layers ({string.Join(", ", layers)}); ask for LayerPart.Attention or LayerPart.Mlp."),
        };
    }

    /// <summary>Token ids of a prompt, [1, seq] int64.</summary>
    public Tensor Encode(string prompt)
    {
        // The encoder's intermediate tensors are freed here rather than left to the finalizers.
        using var scope = torch.NewDisposeScope();
        return Core.Encode(prompt).MoveToOuterDisposeScope();
    }

    /// <summary>The text of some token ids.</summary>
    public string Decode(IEnumerable<int> ids) => Core.Tokenizer.Decode(ids.ToArray());

    /// <summary>A readable rendering of one token.</summary>
    public string Piece(int id) => Core.Tokenizer.Piece(id);

    /// <summary>The <paramref name="count"/> token ids greedy decoding appends to one token sequence ([seq] or
    /// [1, seq]): each step takes the most likely next token (one full forward pass per step, no cache).</summary>
    public int[] Generate(Tensor tokens, int count) => Jet.Core.Apps.Generate.Greedy(Core.Net, tokens, count);

    /// <summary>The greedy continuation of a prompt, <paramref name="count"/> tokens: their ids and text.</summary>
    public (int[] Ids, string Text) Generate(string prompt, int count)
    {
        using var tokens = Encode(prompt);
        var ids = Generate(tokens, count);
        return (ids, Decode(ids));
    }

    /// <summary>Runs the model once on a token batch ([batch, seq] or [seq]) for expansions.</summary>
    public Analysis Analyse(Tensor tokens) => new(Expand.Session(Core.Net, tokens));

    /// <summary>Runs the model once on a prompt for expansions.</summary>
    public Analysis Analyse(string prompt)
    {
        // The analysis keeps its own handle on the tokens.
        using var tokens = Encode(prompt);
        return Analyse(tokens);
    }

    /// <summary>The iterative jet lens U J^k LN_f(h_l)(h_L) (order 0 is the logit lens): set streams, order and top-N,
    /// then <see cref="LensBuilder.Run(string)"/>.</summary>
    public LensBuilder Lens() => new(this);

    /// <summary>The joint jet lens (per-token weights over {h_{l₁}, h_{l₂} − h_{l₁}, …} fitted by Adam): set streams,
    /// order, iterations and learning rate, then <see cref="JointLensBuilder.Fit(string, IProgress{long}, CancellationToken)"/>.</summary>
    public JointLensBuilder JointLens() => new(this);

    /// <summary>A jet bigram sweep of <paramref name="path"/> over the whole vocabulary: set the options, then ask for row
    /// or global top-k, the full table or the n-gram mass of a token set.</summary>
    public BigramSweep Bigrams(ReadoutPath path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return new(this, path);
    }

    /// <summary>Jet skip-grams of the attention heads of residual layer <paramref name="layer"/> (1-based): one
    /// vocabulary × vocabulary table per head, U·LN_f(OVₗ,ₕ(Emb)); set the heads and options, then ask for row or global
    /// top-k.</summary>
    public SkipGramSweep SkipGrams(int layer) => new(this, layer);

    /// <summary>Ranks the heads of every attention layer (or of <paramref name="layers"/>) by how much they copy, mean
    /// P(z | z), and promote a token set (default: the whole vocabulary) through their skip-gram tables.</summary>
    /// <param name="tokenIds">The set S (ids; null: every token).</param>
    /// <param name="layers">Residual layers to rank (null: every layer with attention).</param>
    /// <param name="batchSize">First tokens per batch.</param>
    /// <param name="progress">Receives the number of first tokens done after each batch.</param>
    /// <param name="cancellation">Checked before every batch.</param>
    public HeadRanking RankHeads(IEnumerable<int>? tokenIds = null, IEnumerable<int>? layers = null, int batchSize = 512,
        IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        var set = tokenIds?.ToArray();
        var options = BigramSweep.CoreOptions(Jet.Core.Apps.ScoreSpace.Probability, false, batchSize, progress,
            cancellation, Jet.Core.Apps.SweepOptions.Default.MaxFullBytes);
        var scores = Jet.Core.Apps.SkipGrams.Rank(Core.Net, layers?.ToArray() ?? [], set ?? [], options);
        return new(Source, set is { Length: > 0 } ? set.Distinct().Count() : Vocabulary,
            scores.Select(s => new HeadScore(s.Layer, s.Head, Jet.Core.Apps.SkipGrams.Notation(s.Layer, s.Head), s.Copying, s.SetMass)).ToList());
    }

    /// <summary>Jet trigrams of <paramref name="path"/> (with at least one attention step) over pairs of tokens: set
    /// the token sets and options, then ask for row or global top-k.</summary>
    public TrigramSweep Trigrams(ReadoutPath path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return new(this, path);
    }

    /// <summary>The steps a readout path through this model may take, in order: every residual layer by name (as the
    /// path grammar reads it, for example "attn2"), its notation ("γ₃") and what it computes.</summary>
    public IReadOnlyList<PathStep> PathSteps() =>
        Readings.All(Jet.Core.Apps.Readouts.StepsOf(Core.Net), s => new PathStep(s.Name, s.Notation, s.Description));

    /// <summary>Frees the model's weights; later calls do nothing.</summary>
    public void Dispose() => Core.Dispose();

    /// <summary>The network's structure, one residual layer per line.</summary>
    public override string ToString() => Core.Net.ToString();
}
