using Microsoft.FSharp.Core;
using Apps = Jet.Core.Apps;

namespace JetDsl;

/// <summary>How much one attention head copies and promotes a token set S.</summary>
/// <param name="Layer">The residual layer (1-based).</param>
/// <param name="Head">The query head (1-based).</param>
/// <param name="Notation">The head's path step, for example "OV₃,₂".</param>
/// <param name="Copying">The mean over z ∈ S of P(z | z) through U·LN_f(OVₗ,ₕ(Emb)).</param>
/// <param name="SetMass">The mean over z₁ ∈ S of Σ_{z₃ ∈ S} P(z₃ | z₁) (1 when S is the whole vocabulary).</param>
public sealed record HeadScore(int Layer, int Head, string Notation, double Copying, double SetMass);

/// <summary>The heads of a model ranked by copying: plain .NET rows, layer by layer, head by head.</summary>
/// <param name="Model">The model's source.</param>
/// <param name="TokenCount">The size of the set S (the vocabulary when none was given).</param>
/// <param name="Heads">One score per head.</param>
public sealed record HeadRanking(string Model, int TokenCount, IReadOnlyList<HeadScore> Heads)
{
    /// <summary>Writes a layers × heads heatmap of <see cref="HeadScore.Copying"/> (PNG or SVG by the file's extension).</summary>
    /// <param name="file">A .png or .svg file.</param>
    /// <param name="layerName">Labels a row from its residual layer (default "γ3").</param>
    public void SaveHeatmap(string file, Func<int, string>? layerName = null)
    {
        var scores = Heads.Select(h => new Apps.HeadScore(h.Layer, h.Head, h.Copying, h.SetMass)).ToList();
        var name = layerName ?? (l => "γ" + l);
        Readings.SavePicture(file, () => Jet.Core.Pictures.HeadHeatmap.Of(
            "Copying by head, " + Model, $"mean P(z | z) over {TokenCount} tokens; rows are layers, columns heads",
            FuncConvert.FromFunc(name), FuncConvert.FromFunc<Apps.HeadScore, double>(s => s.Copying), scores));
    }
}

/// <summary>Jet skip-grams of the attention heads of one layer: for a token z₁ anywhere earlier, head h adds
/// U·LN_f(OVₗ,ₕ(LN_l(E[z₁]))) to the logits, a vocabulary × vocabulary table per head. Streamed like bigrams; every
/// option call returns a new sweep. One head's table with further steps after it is a bigram sweep of
/// <see cref="ReadoutPath.Head"/>.</summary>
public sealed class SkipGramSweep
{
    private readonly JetModel model;
    private readonly int layer;
    private readonly int[] heads;
    private readonly ScoreSpace space;
    private readonly bool dropDiagonal;
    private readonly int batchSize;

    internal SkipGramSweep(JetModel model, int layer)
        : this(model, layer, [], ScoreSpace.Probability, Apps.SweepOptions.Default.DropDiagonal, Apps.SweepOptions.Default.BatchSize) { }

    private SkipGramSweep(JetModel model, int layer, int[] heads, ScoreSpace space, bool dropDiagonal, int batchSize)
    {
        this.model = model;
        this.layer = layer;
        this.heads = heads;
        this.space = space;
        this.dropDiagonal = dropDiagonal;
        this.batchSize = batchSize;
    }

    /// <summary>Only these query heads (1-based; default: every head of the layer).</summary>
    public SkipGramSweep Heads(params int[] heads)
    {
        ArgumentNullException.ThrowIfNull(heads);
        return new(model, layer, heads.ToArray(), space, dropDiagonal, batchSize);
    }

    /// <summary>Probabilities (the default) or logits.</summary>
    public SkipGramSweep Space(ScoreSpace space) => new(model, layer, heads, space, dropDiagonal, batchSize);

    /// <summary>Leaves out the pairs (z, z).</summary>
    public SkipGramSweep DropDiagonal(bool drop = true) => new(model, layer, heads, space, drop, batchSize);

    /// <summary>First tokens per batch (default 512; ≥ 1).</summary>
    public SkipGramSweep BatchSize(int rows) => new(model, layer, heads, space, dropDiagonal, rows);

    private Apps.SweepOptions Options(IProgress<long>? progress, CancellationToken cancellation) =>
        BigramSweep.CoreOptions(BigramSweep.Core(space), dropDiagonal, batchSize, progress, cancellation,
            Apps.SweepOptions.Default.MaxFullBytes);

    private BigramTable Table(int head, bool global, int k, IEnumerable<Apps.ScoredPair> pairs)
    {
        var path = ReadoutPath.Embedding.Head(layer, head);
        return new(path, path.Notation(model), space, global, k, dropDiagonal, Apps.Bigrams.Decode(model.Core.Tokenizer, pairs)
            .Select(r => new Bigram(r.From, r.To, r.FromToken, r.ToToken, r.Score)).ToList());
    }

    /// <summary>The k best next tokens of every first token, one table per head (in the order asked).</summary>
    public IReadOnlyList<BigramTable> RowTopK(int k, IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        return Apps.SkipGrams.RowTopKPairs(model.Core.Net, layer, heads, k, Options(progress, cancellation))
            .Select(t => Table(t.Head, false, k, t.Pairs)).ToList();
    }

    /// <summary>The k best (z₁, z₃) pairs of each head's whole table, best first; one table per head.</summary>
    public IReadOnlyList<BigramTable> GlobalTopK(int k, IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        return Apps.SkipGrams.GlobalTopK(model.Core.Net, layer, heads, k, Options(progress, cancellation))
            .Select(t => Table(t.Head, true, k, t.Pairs)).ToList();
    }
}

/// <summary>One scored trigram: after z₁ then z₂, the path's score for z₃.</summary>
public sealed record Trigram(int First, int Second, int Next, string FirstToken, string SecondToken, string NextToken, double Score);

/// <summary>The result of a trigram sweep: plain .NET rows.</summary>
/// <param name="Path">The path swept.</param>
/// <param name="Notation">The path in path notation with the model's layer names.</param>
/// <param name="Space">Probabilities or logits.</param>
/// <param name="Global">True: the k best triples, best first; false: the k best next tokens of every pair.</param>
/// <param name="K">The k asked for.</param>
/// <param name="Rows">The scored trigrams.</param>
public sealed record TrigramTable(ReadoutPath Path, string Notation, ScoreSpace Space, bool Global, int K, IReadOnlyList<Trigram> Rows)
{
    /// <summary>Writes the table (at most <paramref name="maxRows"/> rows) as PNG or SVG by the file's extension.</summary>
    public void SaveTable(string file, int maxRows = 40)
    {
        var rows = Rows.Select(r => new Apps.BigramRow(r.First, r.Next, r.FirstToken + " " + r.SecondToken, r.NextToken, r.Score));
        Readings.SavePicture(file, () => Jet.Core.Pictures.Figures.Bigrams(
            "Jet trigrams: " + Notation, Apps.Readings.DescribeTable(Global, K, BigramSweep.Core(Space), false), BigramSweep.Core(Space), maxRows, rows));
    }
}

/// <summary>Jet trigrams of a path with at least one attention step: the path read on [z₁, z₂] at position 2, over
/// the product of a first-token set and a second-token set (default: every token, refused above 2²⁴ pairs). Work
/// that depends on one token is shared across the product. Every option call returns a new sweep.</summary>
public sealed class TrigramSweep
{
    private readonly JetModel model;
    private readonly ReadoutPath path;
    private readonly ScoreSpace space;
    private readonly int batchSize;
    private readonly int[]? first;
    private readonly int[]? second;

    internal TrigramSweep(JetModel model, ReadoutPath path)
        : this(model, path, ScoreSpace.Probability, Apps.SweepOptions.Default.BatchSize, null, null) { }

    private TrigramSweep(JetModel model, ReadoutPath path, ScoreSpace space, int batchSize, int[]? first, int[]? second)
    {
        this.model = model;
        this.path = path;
        this.space = space;
        this.batchSize = batchSize;
        this.first = first;
        this.second = second;
    }

    /// <summary>Probabilities (the default) or logits.</summary>
    public TrigramSweep Space(ScoreSpace space) => new(model, path, space, batchSize, first, second);

    /// <summary>Pairs per batch (default 512; ≥ 1).</summary>
    public TrigramSweep BatchSize(int pairs) => new(model, path, space, pairs, first, second);

    /// <summary>The first tokens z₁ (ids; default every token).</summary>
    public TrigramSweep First(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        return new(model, path, space, batchSize, ids.ToArray(), second);
    }

    /// <summary>The second tokens z₂ (ids; default every token).</summary>
    public TrigramSweep Second(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        return new(model, path, space, batchSize, first, ids.ToArray());
    }

    private Apps.SweepOptions Options(IProgress<long>? progress, CancellationToken cancellation) =>
        BigramSweep.CoreOptions(BigramSweep.Core(space), false, batchSize, progress, cancellation,
            Apps.SweepOptions.Default.MaxFullBytes);

    private TrigramTable Table(bool global, int k, IEnumerable<Apps.ScoredTriple> triples)
    {
        string Piece(int id) => Apps.LogitMetrics.Piece(model.Core.Tokenizer, id);
        return new(path, path.Notation(model), space, global, k,
            triples.Select(t => new Trigram(t.First, t.Second, t.Next, Piece(t.First), Piece(t.Second), Piece(t.Next), t.Score)).ToList());
    }

    /// <summary>The k best next tokens of every pair, pair by pair (first tokens outer, second inner).</summary>
    /// <param name="k">1..vocabulary.</param>
    /// <param name="progress">Receives the number of first tokens done after each batch.</param>
    /// <param name="cancellation">Checked before every batch.</param>
    public TrigramTable RowTopK(int k, IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        using var best = Apps.Trigrams.RowTopK(model.Core.Net, path.Resolve(model), first, second, k, Options(progress, cancellation));
        return Table(false, k, Apps.Trigrams.TriplesOf(best));
    }

    /// <summary>The k best (z₁, z₂, z₃) of the whole product, best first.</summary>
    /// <param name="k">1..pairs × vocabulary.</param>
    /// <param name="progress">Receives the number of first tokens done after each batch.</param>
    /// <param name="cancellation">Checked before every batch.</param>
    public TrigramTable GlobalTopK(int k, IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        return Table(true, k, Apps.Trigrams.GlobalTopK(model.Core.Net, path.Resolve(model), first, second, k, Options(progress, cancellation)));
    }
}
