using Microsoft.FSharp.Core;
using TorchSharp;
using static TorchSharp.torch;
using Apps = Jet.Core.Apps;

namespace JetDsl;

/// <summary>A jet bigram path: an order-0 chain from the token embedding to the logits, read as a next-token table
/// over the whole vocabulary (row z₁ = the path's logits for the one-token input z₁).</summary>
public sealed class BigramPath : IEquatable<BigramPath>
{
    internal Apps.BigramPath Core { get; }

    private BigramPath(Apps.BigramPath core) => Core = core;

    /// <summary>U·LN_f(Emb(z₁)): embedding → decoder.</summary>
    public static BigramPath Embedding { get; } = new(Apps.BigramPath.Embedding);

    /// <summary>U·LN_f(MLP_b(Emb(z₁))): embedding → the MLP of block <paramref name="block"/> (1-based, its pre-norm
    /// included) → decoder. The block is checked against the model when the sweep runs.</summary>
    public static BigramPath Mlp(int block) => new(Apps.BigramPath.NewMlp(block));

    /// <summary>Reads "embed" or "mlp:B" (B a 1-based block number), the syntax of the jet command's --path.</summary>
    public static BigramPath Parse(string text) => new(Apps.Bigrams.ParsePath(text));

    /// <summary>The MLP's block, or null for the embedding path.</summary>
    public int? Block => Core is Apps.BigramPath.Mlp m ? m.block : null;

    /// <summary>The path in words, for example "embedding → MLP of block 1 → decoder".</summary>
    public string Description => Apps.Readings.DescribePath(Core);

    /// <inheritdoc/>
    public bool Equals(BigramPath? other) => other is not null && Core.Equals(other.Core);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => Equals(obj as BigramPath);

    /// <inheritdoc/>
    public override int GetHashCode() => Core.GetHashCode();

    /// <summary>"embed" or "mlp:B", as <see cref="Parse"/> reads it.</summary>
    public override string ToString() => Core.ToString();
}

/// <summary>Whether bigram scores are next-token probabilities (a softmax over each row) or raw logits.</summary>
public enum ScoreSpace
{
    /// <summary>P(z₂ | z₁), each row a softmax.</summary>
    Probability,
    /// <summary>The path's raw logits.</summary>
    Logit,
}

/// <summary>One scored bigram (z₁, z₂) with readable tokens.</summary>
/// <param name="From">The first token z₁.</param>
/// <param name="To">The next token z₂.</param>
/// <param name="FromToken">z₁'s readable piece.</param>
/// <param name="ToToken">z₂'s readable piece.</param>
/// <param name="Score">The probability or logit, as the sweep asked.</param>
public sealed record Bigram(int From, int To, string FromToken, string ToToken, double Score);

/// <summary>The result of a top-k sweep: plain .NET rows (nothing to dispose).</summary>
/// <param name="Path">The path swept.</param>
/// <param name="Space">Probabilities or logits.</param>
/// <param name="Global">True: the k best pairs of the whole table, best first. False: the k best next tokens of every
/// first token, grouped by first token ascending, best first within a group.</param>
/// <param name="K">The k asked for.</param>
/// <param name="DiagonalDropped">True when pairs (z, z) were left out.</param>
/// <param name="Rows">The scored bigrams.</param>
public sealed record BigramTable(BigramPath Path, ScoreSpace Space, bool Global, int K, bool DiagonalDropped, IReadOnlyList<Bigram> Rows)
{
    /// <summary>Writes the table (rank, token, next token, score; at most <paramref name="maxRows"/> rows, a note says how
    /// many were left out) as PNG or SVG by the file's extension.</summary>
    public void SaveTable(string file, int maxRows = 40)
    {
        var rows = Rows.Select(r => new Apps.BigramRow(r.From, r.To, r.FromToken, r.ToToken, r.Score));
        Readings.SavePicture(file, () => Jet.Core.Pictures.Figures.BigramTable(Path.Core, Global, K, BigramSweep.Core(Space), DiagonalDropped, maxRows, rows));
    }
}

/// <summary>The n-gram mass of a token set under one model.</summary>
/// <param name="Model">The model's source ("toy", or the checkpoint directory).</param>
/// <param name="Tokens">How many distinct tokens the set resolved to in this model's vocabulary.</param>
/// <param name="Mass">The mean over first tokens z₁ of Σ_{z₂ ∈ S} P(z₂ | z₁).</param>
public sealed record ModelMass(string Model, int Tokens, double Mass);

/// <summary>A jet bigram sweep of one path over a model's whole vocabulary, streamed in batches (memory grows with the
/// batch size × vocabulary, never vocabulary²). Set the options, then ask for row top-k, global top-k, the full table,
/// chosen rows or the n-gram mass of a token set. Every option call returns a new sweep.</summary>
public sealed class BigramSweep
{
    private readonly JetModel model;
    private readonly BigramPath path;
    private readonly ScoreSpace space;
    private readonly bool dropDiagonal;
    private readonly int batchSize;
    private readonly long maxFullBytes;

    internal BigramSweep(JetModel model, BigramPath path)
        : this(model, path, ScoreSpace.Probability, Apps.SweepOptions.Default.DropDiagonal, Apps.SweepOptions.Default.BatchSize, Apps.SweepOptions.Default.MaxFullBytes) { }

    private BigramSweep(JetModel model, BigramPath path, ScoreSpace space, bool dropDiagonal, int batchSize, long maxFullBytes)
    {
        this.model = model;
        this.path = path;
        this.space = space;
        this.dropDiagonal = dropDiagonal;
        this.batchSize = batchSize;
        this.maxFullBytes = maxFullBytes;
    }

    /// <summary>Probabilities (the default) or logits. The n-gram mass always uses probabilities.</summary>
    public BigramSweep Space(ScoreSpace space) => new(model, path, space, dropDiagonal, batchSize, maxFullBytes);

    /// <summary>Leaves out the pairs (z, z): probabilities are renormalised over z₂ ≠ z₁, logits on the diagonal become −∞.</summary>
    public BigramSweep DropDiagonal(bool drop = true) => new(model, path, space, drop, batchSize, maxFullBytes);

    /// <summary>First tokens per batch (default 512; ≥ 1).</summary>
    public BigramSweep BatchSize(int rows) => new(model, path, space, dropDiagonal, rows, maxFullBytes);

    /// <summary>The largest full table <see cref="FullTable"/> may build, in bytes (default 1 GiB).</summary>
    public BigramSweep MaxFullBytes(long bytes) => new(model, path, space, dropDiagonal, batchSize, bytes);

    internal static Apps.ScoreSpace Core(ScoreSpace space) => space == ScoreSpace.Logit ? Apps.ScoreSpace.Logit : Apps.ScoreSpace.Probability;

    private Apps.SweepOptions Options(IProgress<long>? progress, CancellationToken cancellation) =>
        new(Core(space), dropDiagonal, batchSize,
            progress is null ? FSharpOption<IProgress<long>>.None : FSharpOption<IProgress<long>>.Some(progress), cancellation, maxFullBytes);

    private BigramTable Table(bool global, int k, IEnumerable<Apps.ScoredPair> pairs) =>
        new(path, space, global, k, dropDiagonal, Apps.Bigrams.Decode(model.Core.Tokenizer, pairs)
            .Select(r => new Bigram(r.From, r.To, r.FromToken, r.ToToken, r.Score)).ToList());

    /// <summary>The k best next tokens of every first token (vocabulary × k rows).</summary>
    /// <param name="k">1..vocabulary (one less with the diagonal dropped).</param>
    /// <param name="progress">Receives the number of first tokens done after each batch.</param>
    /// <param name="cancellation">Checked before every batch; throws <see cref="OperationCanceledException"/>.</param>
    public BigramTable RowTopK(int k, IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        using var scope = torch.NewDisposeScope();
        using var best = Apps.Bigrams.RowTopK(model.Core.Net, path.Core, k, Options(progress, cancellation));
        return Table(false, k, Apps.Bigrams.PairsOf(best));
    }

    /// <summary>The k best (z₁, z₂) pairs of the whole table, best first.</summary>
    /// <param name="k">1..vocabulary² (vocabulary × (vocabulary − 1) with the diagonal dropped).</param>
    /// <param name="progress">Receives the number of first tokens done after each batch.</param>
    /// <param name="cancellation">Checked before every batch; throws <see cref="OperationCanceledException"/>.</param>
    public BigramTable GlobalTopK(int k, IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        using var scope = torch.NewDisposeScope();
        return Table(true, k, Apps.Bigrams.GlobalTopK(model.Core.Net, path.Core, k, Options(progress, cancellation)));
    }

    /// <summary>The whole [vocabulary, vocabulary] table (row z₁, column z₂), only when it fits in
    /// <see cref="MaxFullBytes"/> (the error says its size otherwise). The caller owns the tensor: dispose it.</summary>
    /// <param name="progress">Receives the number of first tokens done after each batch.</param>
    /// <param name="cancellation">Checked before every batch; throws <see cref="OperationCanceledException"/>.</param>
    public Tensor FullTable(IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        // The scope frees what the sweep leaves behind; only the table leaves it.
        using var scope = torch.NewDisposeScope();
        return Apps.Bigrams.Full(model.Core.Net, path.Core, Options(progress, cancellation)).MoveToOuterDisposeScope();
    }

    /// <summary>The rows of chosen first tokens: ids [B] (integers in 0..vocabulary − 1) → scores [B, vocabulary].
    /// The caller owns the tensor.</summary>
    public Tensor Scores(Tensor firstTokens)
    {
        using var scope = torch.NewDisposeScope();
        return Apps.Bigrams.Scores(model.Core.Net, path.Core, Options(null, CancellationToken.None), firstTokens).MoveToOuterDisposeScope();
    }

    /// <summary>The n-gram mass of a set of token ids: the mean over first tokens z₁ of Σ_{z₂ ∈ S} P(z₂ | z₁).</summary>
    /// <param name="tokenIds">The set S (ids in 0..vocabulary − 1; duplicates count once).</param>
    /// <param name="progress">Receives the number of first tokens done after each batch.</param>
    /// <param name="cancellation">Checked before every batch; throws <see cref="OperationCanceledException"/>.</param>
    public double Mass(IEnumerable<int> tokenIds, IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(tokenIds);
        using var scope = torch.NewDisposeScope();
        return Apps.Bigrams.Mass(model.Core.Net, path.Core, tokenIds.ToArray(), Options(progress, cancellation));
    }

    /// <summary>The n-gram mass of a set of tokens written as tables print them (for example "␣" for the toy's space), or
    /// as text that encodes to exactly one token.</summary>
    /// <param name="tokens">The set S, one token per string; empty strings are skipped, duplicates count once.</param>
    /// <param name="progress">Receives the number of first tokens done after each batch.</param>
    /// <param name="cancellation">Checked before every batch; throws <see cref="OperationCanceledException"/>.</param>
    public double Mass(IEnumerable<string> tokens, IProgress<long>? progress = null, CancellationToken cancellation = default) =>
        Mass(TokenSet(model, tokens), progress, cancellation);

    /// <summary>The n-gram mass of the same token set under this model and another (for example a base model beside its
    /// fine-tune), each set resolved with that model's tokenizer. Both paths and sets are checked before either sweep.</summary>
    /// <param name="other">The second model.</param>
    /// <param name="tokens">The set S, one token per string, as in <see cref="Mass(IEnumerable{string}, IProgress{long}?, CancellationToken)"/>.</param>
    /// <param name="progress">Receives the first tokens done across both sweeps (up to the sum of both vocabularies).</param>
    /// <param name="cancellation">Checked before every batch; throws <see cref="OperationCanceledException"/>.</param>
    /// <returns>This model's mass, then the other's.</returns>
    public IReadOnlyList<ModelMass> CompareMass(JetModel other, IEnumerable<string> tokens, IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(other);
        ArgumentNullException.ThrowIfNull(tokens);
        var masses = Apps.Bigrams.MassOfModels(path.Core, "the token list", tokens, Options(progress, cancellation), new[] { model.Core, other.Core });
        return Readings.All(masses, m => new ModelMass(m.Model, m.Tokens, m.Mass));
    }

    private static int[] TokenSet(JetModel model, IEnumerable<string> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        return Apps.Vocabulary.TokenSet(model.Core.Tokenizer, model.Vocabulary, "the token list", tokens);
    }
}
