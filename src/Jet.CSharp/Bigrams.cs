using Microsoft.FSharp.Core;
using TorchSharp;
using static TorchSharp.torch;
using Apps = Jet.Core.Apps;

namespace JetDsl;

/// <summary>A vocabulary readout: a path from the token embedding through chosen residual layers to the logits (or a
/// decoder expansion), read as a next-token table over the whole vocabulary (row z₁ = the readout's logits for the
/// one-token input z₁). Built fluently, for example <c>ReadoutPath.Embedding.Attention(2).Mlp(3)</c>, or read from the
/// path grammar of the jet command (<c>ReadoutPath.Parse("emb>attn2>mlp3")</c>); it is checked against a model when
/// a sweep runs (or by <see cref="Notation"/>), with an error that names the model's valid steps.</summary>
public sealed class ReadoutPath : IEquatable<ReadoutPath>
{
    private readonly string? grammar;
    private readonly Jet.Core.Expansion? plan;

    private ReadoutPath(string? grammar, Jet.Core.Expansion? plan)
    {
        this.grammar = grammar;
        this.plan = plan;
    }

    /// <summary>U·LN_f(Emb(z₁)): the token embedding, without positions, straight to the decoder.</summary>
    public static ReadoutPath Embedding { get; } = new("emb", null);

    /// <summary>U·LN_f(Enc(z₁)): the encoder output at position 0 (the embedding plus the first absolute position).</summary>
    public static ReadoutPath Encoder { get; } = new("enc", null);

    /// <summary>Reads the path grammar of the jet command: <c>SOURCE>STEP>…</c>, for example "emb>attn2>mlp3",
    /// "embed" or "mlp:1" (see docs/lenses-and-ngrams.md).</summary>
    public static ReadoutPath Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return new(text, null);
    }

    /// <summary>A decoder expansion evaluated on one-token inputs: U·(Σ terms) + b, its remainder left out.</summary>
    public static ReadoutPath Of(ExpansionPlan plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        return new(null, plan.Core);
    }

    private ReadoutPath Then(string step) => plan is null
        ? new(grammar + ">" + step, null)
        : throw new InvalidOperationException("An expansion readout takes no further steps; build a path from ReadoutPath.Embedding or ReadoutPath.Encoder.");

    /// <summary>Adds the attention layer of block <paramref name="block"/> (1-based).</summary>
    public ReadoutPath Attention(int block) => Then("attn" + block);

    /// <summary>Adds the MLP of block <paramref name="block"/> (1-based): its MLP layer, or the MLP branch of a parallel
    /// block.</summary>
    public ReadoutPath Mlp(int block) => Then("mlp" + block);

    /// <summary>Adds residual layer <paramref name="layer"/> (1-based, as <see cref="JetModel.PathSteps"/> lists them).</summary>
    public ReadoutPath Layer(int layer) => Then("γ" + layer);

    /// <summary>Adds head <paramref name="head"/> (1-based) of the attention in residual layer <paramref name="layer"/>
    /// alone: its OV circuit W_O,h·V_h with its pre-norm, no output bias (notation OVₗ,ₕ). Emb then one head is a skip-gram
    /// table; steps after it are allowed.</summary>
    public ReadoutPath Head(int layer, int head) => Then("γ" + layer + ".h" + head);

    internal Jet.Core.Readout Resolve(JetModel model)
    {
        if (plan is null) return Apps.Readouts.Parse(model.Core.Net, grammar);
        var readout = Apps.Readouts.OfExpansion(plan);
        Apps.Readouts.Check(model.Core.Net, readout);
        return readout;
    }

    /// <summary>The path in path notation for <paramref name="model"/>, with its layer names, for example
    /// "U·LN(γ₄(γ₃(Emb))) (emb > attn2 > mlp2)"; checks the path against the model.</summary>
    public string Notation(JetModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Apps.Readouts.Describe(model.Core.Net, Resolve(model));
    }

    /// <inheritdoc/>
    public bool Equals(ReadoutPath? other) => other is not null && grammar == other.grammar && Equals(plan, other.plan);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => Equals(obj as ReadoutPath);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(grammar, plan);

    /// <summary>The path as the grammar writes it ("emb>attn2>mlp3"), or the expansion plan.</summary>
    public override string ToString() => grammar ?? plan!.ToString();
}

/// <summary>One step a readout path may take through a model.</summary>
/// <param name="Name">The name the path grammar reads, for example "attn2", "mlp3" or "block1".</param>
/// <param name="Notation">The step in path notation, for example "γ₃", or "γ₃[mlp]" for a parallel block's MLP branch.</param>
/// <param name="Description">What the step computes, for example "attention of block 2".</param>
public sealed record PathStep(string Name, string Notation, string Description);

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
/// <param name="Notation">The path in path notation with the model's layer names, for example "U·LN(γ₂(Emb)) (emb > mlp1)".</param>
/// <param name="Space">Probabilities or logits.</param>
/// <param name="Global">True: the k best pairs of the whole table, best first. False: the k best next tokens of every
/// first token, grouped by first token ascending, best first within a group.</param>
/// <param name="K">The k asked for.</param>
/// <param name="DiagonalDropped">True when pairs (z, z) were left out.</param>
/// <param name="Rows">The scored bigrams.</param>
public sealed record BigramTable(ReadoutPath Path, string Notation, ScoreSpace Space, bool Global, int K, bool DiagonalDropped, IReadOnlyList<Bigram> Rows)
{
    /// <summary>Writes the table (rank, token, next token, score; at most <paramref name="maxRows"/> rows, a note says how
    /// many were left out) as PNG or SVG by the file's extension.</summary>
    public void SaveTable(string file, int maxRows = 40)
    {
        var rows = Rows.Select(r => new Apps.BigramRow(r.From, r.To, r.FromToken, r.ToToken, r.Score));
        Readings.SavePicture(file, () => Jet.Core.Pictures.Figures.BigramTable(Notation, Global, K, BigramSweep.Core(Space), DiagonalDropped, maxRows, rows));
    }
}

/// <summary>A word of a word list that spans several tokens in a model's tokenizer; it is scored by its first token.</summary>
/// <param name="Line">The 1-based line of the list.</param>
/// <param name="Word">The word.</param>
/// <param name="Tokens">The tokens it encodes to; the first is scored.</param>
public sealed record SplitWord(int Line, string Word, IReadOnlyList<int> Tokens);

/// <summary>The n-gram mass of a word list under one model.</summary>
/// <param name="Model">The model's source ("toy", or the checkpoint directory).</param>
/// <param name="Tokens">How many distinct tokens the list resolved to in this model's vocabulary.</param>
/// <param name="Mass">The mean over first tokens z₁ of Σ_{z₂ ∈ S} P(z₂ | z₁).</param>
/// <param name="TopKMass">With a top-k asked for: the same mean counting only the z₂ inside each row's k best.</param>
/// <param name="SplitWords">The words that span several tokens in this model's tokenizer.</param>
public sealed record ModelMass(string Model, int Tokens, double Mass, double? TopKMass, IReadOnlyList<SplitWord> SplitWords);

/// <summary>How a model-against-model comparison measures the change of a pair.</summary>
public enum ChangeSpace
{
    /// <summary>P_after − P_before.</summary>
    Probability,
    /// <summary>log P_after − log P_before.</summary>
    LogProbability,
}

/// <summary>One pair (z₁, z₂) under two models.</summary>
/// <param name="From">The first token z₁.</param>
/// <param name="To">The next token z₂.</param>
/// <param name="FromToken">z₁'s readable piece.</param>
/// <param name="ToToken">z₂'s readable piece.</param>
/// <param name="Before">The score under the first model (probability or log-probability).</param>
/// <param name="After">The score under the second model.</param>
/// <param name="Change">After − before.</param>
public sealed record BigramChange(int From, int To, string FromToken, string ToToken, double Before, double After, double Change);

/// <summary>Two models' tables of one path compared: plain .NET rows (nothing to dispose).</summary>
/// <param name="Path">The path swept.</param>
/// <param name="Notation">The path in path notation with the model's layer names.</param>
/// <param name="Space">Probability or log-probability changes.</param>
/// <param name="K">The k asked for.</param>
/// <param name="Rises">The k pairs that rose most over the whole table, biggest first.</param>
/// <param name="Falls">The k pairs that fell most, biggest fall first.</param>
/// <param name="RowRises">Per first token its k biggest rises, grouped by first token (empty unless asked for).</param>
/// <param name="RowFalls">Per first token its k biggest falls (empty unless asked for).</param>
/// <param name="TopBefore">The first model's global top-k pairs by probability.</param>
/// <param name="TopAfter">The second model's global top-k pairs by probability.</param>
/// <param name="Overlap">How many pairs the two global top-k lists share.</param>
public sealed record BigramComparison(ReadoutPath Path, string Notation, ChangeSpace Space, int K,
    IReadOnlyList<BigramChange> Rises, IReadOnlyList<BigramChange> Falls,
    IReadOnlyList<BigramChange> RowRises, IReadOnlyList<BigramChange> RowFalls,
    IReadOnlyList<Bigram> TopBefore, IReadOnlyList<Bigram> TopAfter, int Overlap)
{
    private static IEnumerable<Apps.PairChangeRow> Core(IEnumerable<BigramChange> rows) =>
        rows.Select(r => new Apps.PairChangeRow(r.From, r.To, r.FromToken, r.ToToken, r.Before, r.After, r.Change));

    /// <summary>Writes the biggest fallers and risers as a two-column chart (at most <paramref name="maxRows"/> each),
    /// PNG or SVG by the file's extension.</summary>
    public void SaveChart(string file, int maxRows = 40) =>
        Readings.SavePicture(file, () => Jet.Core.Pictures.Figures.BigramChanges(
            "Jet bigrams compared: " + Notation, Space == ChangeSpace.Probability ? "probability change" : "log-probability change",
            Space == ChangeSpace.Probability ? Apps.ChangeSpace.Probability : Apps.ChangeSpace.LogProbability, maxRows, Core(Rises), Core(Falls)));
}

/// <summary>A jet bigram sweep of one path over a model's whole vocabulary, streamed in batches (memory grows with the
/// batch size × vocabulary, never vocabulary²). Set the options, then ask for row top-k, global top-k, the full table,
/// chosen rows or the n-gram mass of a token set. Every option call returns a new sweep.</summary>
public sealed class BigramSweep
{
    private readonly JetModel model;
    private readonly ReadoutPath path;
    private readonly ScoreSpace space;
    private readonly bool dropDiagonal;
    private readonly int batchSize;
    private readonly long maxFullBytes;

    internal BigramSweep(JetModel model, ReadoutPath path)
        : this(model, path, ScoreSpace.Probability, Apps.SweepOptions.Default.DropDiagonal, Apps.SweepOptions.Default.BatchSize, Apps.SweepOptions.Default.MaxFullBytes) { }

    private BigramSweep(JetModel model, ReadoutPath path, ScoreSpace space, bool dropDiagonal, int batchSize, long maxFullBytes)
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

    /// <summary>The core's sweep options over every first token: one place builds them for every sweep of the facade.</summary>
    internal static Apps.SweepOptions CoreOptions(Apps.ScoreSpace space, bool dropDiagonal, int batchSize,
        IProgress<long>? progress, CancellationToken cancellation, long maxFullBytes) =>
        new(space, dropDiagonal, batchSize,
            progress is null ? FSharpOption<IProgress<long>>.None : FSharpOption<IProgress<long>>.Some(progress), cancellation, maxFullBytes,
            FSharpOption<Apps.RowRange>.None);

    private Apps.SweepOptions Options(IProgress<long>? progress, CancellationToken cancellation) =>
        CoreOptions(Core(space), dropDiagonal, batchSize, progress, cancellation, maxFullBytes);

    private BigramTable Table(bool global, int k, IEnumerable<Apps.ScoredPair> pairs) =>
        new(path, path.Notation(model), space, global, k, dropDiagonal, Apps.Bigrams.Decode(model.Core.Tokenizer, pairs)
            .Select(r => new Bigram(r.From, r.To, r.FromToken, r.ToToken, r.Score)).ToList());

    /// <summary>The k best next tokens of every first token (vocabulary × k rows).</summary>
    /// <param name="k">1..vocabulary (one less with the diagonal dropped).</param>
    /// <param name="progress">Receives the number of first tokens done after each batch.</param>
    /// <param name="cancellation">Checked before every batch; throws <see cref="OperationCanceledException"/>.</param>
    public BigramTable RowTopK(int k, IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        using var scope = torch.NewDisposeScope();
        using var best = Apps.Bigrams.RowTopK(model.Core.Net, path.Resolve(model), k, Options(progress, cancellation));
        return Table(false, k, Apps.Bigrams.PairsOf(best));
    }

    /// <summary>The k best (z₁, z₂) pairs of the whole table, best first.</summary>
    /// <param name="k">1..vocabulary² (vocabulary × (vocabulary − 1) with the diagonal dropped).</param>
    /// <param name="progress">Receives the number of first tokens done after each batch.</param>
    /// <param name="cancellation">Checked before every batch; throws <see cref="OperationCanceledException"/>.</param>
    public BigramTable GlobalTopK(int k, IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        using var scope = torch.NewDisposeScope();
        return Table(true, k, Apps.Bigrams.GlobalTopK(model.Core.Net, path.Resolve(model), k, Options(progress, cancellation)));
    }

    /// <summary>The whole [vocabulary, vocabulary] table (row z₁, column z₂), only when it fits in
    /// <see cref="MaxFullBytes"/> (the error says its size otherwise). The caller owns the tensor: dispose it.</summary>
    /// <param name="progress">Receives the number of first tokens done after each batch.</param>
    /// <param name="cancellation">Checked before every batch; throws <see cref="OperationCanceledException"/>.</param>
    public Tensor FullTable(IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        // The scope frees what the sweep leaves behind; only the table leaves it.
        using var scope = torch.NewDisposeScope();
        return Apps.Bigrams.Full(model.Core.Net, path.Resolve(model), Options(progress, cancellation)).MoveToOuterDisposeScope();
    }

    /// <summary>The rows of chosen first tokens: ids [B] (integers in 0..vocabulary − 1) → scores [B, vocabulary].
    /// The caller owns the tensor.</summary>
    public Tensor Scores(Tensor firstTokens)
    {
        using var scope = torch.NewDisposeScope();
        return Apps.Bigrams.Scores(model.Core.Net, path.Resolve(model), Options(null, CancellationToken.None), firstTokens).MoveToOuterDisposeScope();
    }

    /// <summary>The n-gram mass of a set of token ids: the mean over first tokens z₁ of Σ_{z₂ ∈ S} P(z₂ | z₁).</summary>
    /// <param name="tokenIds">The set S (ids in 0..vocabulary − 1; duplicates count once).</param>
    /// <param name="progress">Receives the number of first tokens done after each batch.</param>
    /// <param name="cancellation">Checked before every batch; throws <see cref="OperationCanceledException"/>.</param>
    public double Mass(IEnumerable<int> tokenIds, IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(tokenIds);
        using var scope = torch.NewDisposeScope();
        return Apps.Bigrams.Mass(model.Core.Net, path.Resolve(model), tokenIds.ToArray(), Options(progress, cancellation));
    }

    /// <summary>The n-gram mass of a set of tokens written as tables print them (for example "␣" for the toy's space), or
    /// as text that encodes to exactly one token.</summary>
    /// <param name="tokens">The set S, one token per string; empty strings are skipped, duplicates count once.</param>
    /// <param name="progress">Receives the number of first tokens done after each batch.</param>
    /// <param name="cancellation">Checked before every batch; throws <see cref="OperationCanceledException"/>.</param>
    public double Mass(IEnumerable<string> tokens, IProgress<long>? progress = null, CancellationToken cancellation = default) =>
        Mass(TokenSet(model, tokens), progress, cancellation);

    /// <summary>The n-gram mass of the same word list under this model and another (for example a base model beside its
    /// fine-tune), each list read with that model's tokenizer: a word that is not one token is scored by its first token
    /// (listed in <see cref="ModelMass.SplitWords"/>). With <paramref name="topK"/> also the mass inside each row's top k.
    /// Both paths and lists are checked before any sweep.</summary>
    /// <param name="other">The second model.</param>
    /// <param name="words">The list, one word per string; empty strings are skipped.</param>
    /// <param name="topK">Also count the mass inside each row's k best next tokens.</param>
    /// <param name="progress">Receives the first tokens done across all sweeps.</param>
    /// <param name="cancellation">Checked before every batch; throws <see cref="OperationCanceledException"/>.</param>
    /// <returns>This model's mass, then the other's.</returns>
    public IReadOnlyList<ModelMass> CompareMass(JetModel other, IEnumerable<string> words, int? topK = null, IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(other);
        ArgumentNullException.ThrowIfNull(words);
        var k = topK is { } n ? FSharpOption<int>.Some(n) : FSharpOption<int>.None;
        var masses = Apps.TokenMass.OfModels(path.Resolve(model), "the word list", words, k, Options(progress, cancellation), new[] { model.Core, other.Core });
        return Readings.All(masses, m => new ModelMass(m.Model, m.Tokens, m.Mass, m.TopKMass is null ? null : m.TopKMass.Value,
            Readings.All(m.SplitWords, w => new SplitWord(w.Line, w.Word, w.Tokens))));
    }

    /// <summary>The mass of a set of token ids counted only inside each row's <paramref name="k"/> best next tokens.</summary>
    public double MassInTopK(IEnumerable<int> tokenIds, int k, IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(tokenIds);
        using var scope = torch.NewDisposeScope();
        return Apps.TokenMass.InTopK(model.Core.Net, path.Resolve(model), tokenIds.ToArray(), k, Options(progress, cancellation));
    }

    /// <summary>This path's table under this model and <paramref name="other"/> (one tokenizer, for example a fine-tune),
    /// compared in one streamed sweep: the k pairs that rose and fell most, with <paramref name="perRow"/> each first
    /// token's k biggest rises and falls, and the overlap of the two global top-k lists.</summary>
    public BigramComparison Compare(JetModel other, int k, ChangeSpace space = ChangeSpace.Probability, bool perRow = false, IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(other);
        using var scope = torch.NewDisposeScope();
        var coreSpace = space == ChangeSpace.Probability ? Apps.ChangeSpace.Probability : Apps.ChangeSpace.LogProbability;
        var result = Apps.BigramComparison.Compare(model.Core, other.Core, path.Resolve(model), coreSpace, k, perRow, Options(progress, cancellation));
        IReadOnlyList<BigramChange> Rows(IEnumerable<Apps.PairChange> changes) =>
            Readings.All(Apps.BigramComparison.Decode(model.Core.Tokenizer, changes),
                r => new BigramChange(r.From, r.To, r.FromToken, r.ToToken, r.Before, r.After, r.Change));
        IReadOnlyList<Bigram> Top(IEnumerable<Apps.ScoredPair> pairs) =>
            Readings.All(Apps.Bigrams.Decode(model.Core.Tokenizer, pairs), r => new Bigram(r.From, r.To, r.FromToken, r.ToToken, r.Score));
        return new(path, path.Notation(model), space, k, Rows(result.Rises), Rows(result.Falls), Rows(result.RowRises), Rows(result.RowFalls),
            Top(result.TopBefore), Top(result.TopAfter), result.Overlap);
    }

    private static int[] TokenSet(JetModel model, IEnumerable<string> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        return Apps.Vocabulary.TokenSet(model.Core.Tokenizer, model.Vocabulary, "the token list", tokens);
    }
}
