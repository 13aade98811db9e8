using JetDsl;
using TorchSharp;
using static TorchSharp.torch;

namespace JetDsl.Tests;

/// <summary>Jet bigrams and n-gram mass through the facade: tables against hand computations from the parameters,
/// streamed top-k against the full table and a brute-force sort, mass against a brute-force sum, progress,
/// cancellation and bad input.</summary>
public class BigramTests
{
    private static JetModel Toy(int seed = 13) => JetModel.Toy(seed: seed, width: 12, dtype: ScalarType.Float64);

    // U·LN_f(x) for x = E (embedding path) or γ_b(E) (the toy's MLP blocks), by hand, in the asked space.
    private static Tensor HandTable(JetModel model, int? mlpBlock, ScoreSpace space, bool dropDiagonal)
    {
        var p = model.Network.Parameters;
        var x = Reference.Embedding(model);
        if (mlpBlock is { } b)
        {
            string Name(string part) => $"block{b}.{part}";
            x = torch.nn.functional.linear(torch.nn.functional.relu(torch.nn.functional.linear(x, p[Name("fc1.weight")], p[Name("fc1.bias")])), p[Name("fc2.weight")], p[Name("fc2.bias")]);
        }
        var logits = Reference.Decoder(model, x);
        if (dropDiagonal)
            logits = logits.masked_fill(torch.eye(model.Vocabulary, dtype: ScalarType.Bool), double.NegativeInfinity);
        return space == ScoreSpace.Probability ? logits.softmax(1) : logits;
    }

    public static TheoryData<ScoreSpace, bool> Combinations => new()
    {
        { ScoreSpace.Probability, false }, { ScoreSpace.Probability, true }, { ScoreSpace.Logit, false }, { ScoreSpace.Logit, true },
    };

    [Theory]
    [MemberData(nameof(Combinations))]
    public void TheFullTableIsTheHandComputedPathTable(ScoreSpace space, bool drop)
    {
        using var model = Toy();
        foreach (var (path, block) in new[] { (ReadoutPath.Embedding, (int?)null), (ReadoutPath.Embedding.Mlp(2), 2), (ReadoutPath.Parse("emb>block2"), 2) })
        {
            using var table = model.Bigrams(path).Space(space).DropDiagonal(drop).BatchSize(17).FullTable();
            Reference.Close(table, HandTable(model, block, space, drop), 1e-10, $"{path}, {space}, drop {drop}");
        }
    }

    [Theory]
    [MemberData(nameof(Combinations))]
    public void RowTopKIsTheTopKOfTheFullTable(ScoreSpace space, bool drop)
    {
        using var model = Toy();
        const int k = 6;
        var sweep = model.Bigrams(ReadoutPath.Embedding.Mlp(1)).Space(space).DropDiagonal(drop).BatchSize(7);
        var best = sweep.RowTopK(k);
        using var table = sweep.FullTable();
        var (values, ids) = table.topk(k, dim: 1);

        Assert.False(best.Global);
        Assert.Equal((k, drop, space), (best.K, best.DiagonalDropped, best.Space));
        Assert.Equal(model.Vocabulary * k, best.Rows.Count);
        for (var i = 0; i < best.Rows.Count; i++)
        {
            var row = best.Rows[i];
            Assert.Equal(i / k, row.From);
            Assert.Equal(ids[i / k, i % k].item<long>(), row.To);
            Assert.Equal(values[i / k, i % k].item<double>(), row.Score, 12);
            Assert.Equal(model.Piece(row.From), row.FromToken);
            Assert.Equal(model.Piece(row.To), row.ToToken);
            if (drop) Assert.NotEqual(row.From, row.To);
        }
    }

    [Theory]
    [MemberData(nameof(Combinations))]
    public void GlobalTopKIsABruteForceSortOfAllPairs(ScoreSpace space, bool drop)
    {
        using var model = Toy();
        const int k = 25;
        var best = model.Bigrams(ReadoutPath.Embedding).Space(space).DropDiagonal(drop).BatchSize(13).GlobalTopK(k);
        var v = model.Vocabulary;
        var table = HandTable(model, null, space, drop).data<double>().ToArray();
        var expected = table.Select((score, i) => (From: i / v, To: i % v, Score: score))
            .Where(pair => !(drop && pair.From == pair.To))
            .OrderByDescending(pair => pair.Score)
            .Take(k)
            .ToList();

        Assert.True(best.Global);
        Assert.Equal(expected.Select(e => (e.From, e.To)), best.Rows.Select(r => (r.From, r.To)));
        foreach (var (row, e) in best.Rows.Zip(expected))
            Assert.True(Math.Abs(row.Score - e.Score) <= 1e-12 * Math.Max(1, Math.Abs(e.Score)), $"score {row.Score} vs {e.Score}");
    }

    [Fact]
    public void MassIsTheBruteForceSumOverTheTokenSet()
    {
        using var model = Toy();
        int[] set = { 4, 17, 33, 4 };
        foreach (var (path, block, drop) in new[] { (ReadoutPath.Embedding, (int?)null, false), (ReadoutPath.Embedding.Mlp(2), 2, false), (ReadoutPath.Embedding, null, true) })
        {
            var table = HandTable(model, block, ScoreSpace.Probability, drop);
            var expected = table.index_select(1, torch.tensor(new long[] { 4, 17, 33 })).sum(1).mean().item<double>();
            var sweep = model.Bigrams(path).DropDiagonal(drop).BatchSize(9);
            Assert.Equal(expected, sweep.Mass(set), 12);
            // The same set written as the tables print it; the score space does not matter to the mass.
            Assert.Equal(expected, sweep.Space(ScoreSpace.Logit).Mass(set.Select(model.Piece)), 12);
        }
    }

    [Fact]
    public void MassOfTwoModelsSideBySideIsEachModelsMass()
    {
        using var first = Toy(13);
        using var second = Toy(14);
        var tokens = new[] { "a", "e", "␣", "" };
        var reports = new List<long>();
        var masses = first.Bigrams(ReadoutPath.Embedding).BatchSize(40).CompareMass(second, tokens, progress: new Reporter(reports.Add));

        Assert.Equal(2, masses.Count);
        Assert.Equal(("toy", 3), (masses[0].Model, masses[0].Tokens));
        Assert.Equal(first.Bigrams(ReadoutPath.Embedding).Mass(tokens), masses[0].Mass, 14);
        Assert.Equal(second.Bigrams(ReadoutPath.Embedding).Mass(tokens), masses[1].Mass, 14);
        Assert.NotEqual(masses[0].Mass, masses[1].Mass);
        Assert.Equal(new long[] { 40, 80, 100, 140, 180, 200 }, reports);
    }

    [Fact]
    public void ProgressIsReportedAfterEveryBatchAndCancellationStopsTheSweep()
    {
        using var model = Toy();
        var sweep = model.Bigrams(ReadoutPath.Embedding).BatchSize(30);
        var reports = new List<long>();
        sweep.GlobalTopK(3, new Reporter(reports.Add));
        Assert.Equal(new long[] { 30, 60, 90, 100 }, reports);

        var operations = new Action<IProgress<long>, CancellationToken>[]
        {
            (p, c) => sweep.RowTopK(3, p, c), (p, c) => sweep.GlobalTopK(3, p, c), (p, c) => sweep.FullTable(p, c).Dispose(), (p, c) => sweep.Mass(new[] { 1 }, p, c),
        };
        foreach (var operation in operations)
        {
            using var cts = new CancellationTokenSource();
            var seen = new List<long>();
            Assert.ThrowsAny<OperationCanceledException>(() => operation(new Reporter(v => { seen.Add(v); if (v >= 30) cts.Cancel(); }), cts.Token));
            Assert.Equal(new long[] { 30 }, seen);
        }
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => sweep.RowTopK(3, cancellation: cancelled.Token));
    }

    [Fact]
    public void ACheckpointsMlpPathSweepsLikeItsFullTable()
    {
        using var model = JetModel.Load(Fixtures.Path("lm-buddy-tiny-gpt2-toyvocab"), ScalarType.Float64);
        Assert.Equal(21, model.Vocabulary);
        var sweep = model.Bigrams(ReadoutPath.Parse("mlp:1")).Space(ScoreSpace.Logit).BatchSize(4);
        using var table = sweep.FullTable();
        using var rows = sweep.Scores(torch.arange(21, dtype: ScalarType.Int64));
        Reference.Close(rows, table, 1e-12, "Scores of every first token = the full table");
        var (values, ids) = table.topk(3, dim: 1);
        var best = sweep.RowTopK(3);
        Assert.Equal(ids.data<long>().ToArray().Select(i => (int)i), best.Rows.Select(r => r.To));
        Assert.Equal(values.data<double>().ToArray(), best.Rows.Select(r => r.Score));

        using var embedding = model.Bigrams(ReadoutPath.Embedding).Space(ScoreSpace.Logit).FullTable();
        Reference.Close(embedding, Reference.Decoder(model, Reference.Embedding(model)), 1e-10, "U·LN_f(E), tied");
        var mass = model.Bigrams(ReadoutPath.Embedding).Mass(new[] { "l", "o", "w" });
        using var probabilities = model.Bigrams(ReadoutPath.Embedding).FullTable();
        var ids3 = torch.tensor(new long[] { 0, 1, 2 });
        Assert.Equal(probabilities.index_select(1, ids3).sum(1).mean().item<double>(), mass, 12);
    }

    [Fact]
    public void BadInputGivesTheCoresClearErrors()
    {
        using var model = Toy();
        var noBlock = Assert.Throws<Jet.Core.InvalidPlanException>(() => model.Bigrams(ReadoutPath.Embedding.Mlp(3)).RowTopK(2)).Message;
        Assert.Contains("\"mlp3\"", noBlock);
        Assert.Contains("block1, block2", noBlock);
        Assert.Contains("cannot follow", Assert.Throws<Jet.Core.InvalidPlanException>(() => model.Bigrams(ReadoutPath.Parse("emb>block2>block1")).GlobalTopK(2)).Message);
        Assert.Contains("decoder expansion", Assert.Throws<Jet.Core.InvalidPlanException>(() => model.Bigrams(ReadoutPath.Of(Plan.AtLayer(1).Around(Centre.Embedding).Build())).GlobalTopK(2)).Message);
        Assert.Contains("1..99", Assert.Throws<Jet.Core.IndexRangeException>(() => model.Bigrams(ReadoutPath.Embedding).DropDiagonal().RowTopK(100)).Message);
        Assert.Contains("got 0", Assert.Throws<Jet.Core.IndexRangeException>(() => model.Bigrams(ReadoutPath.Embedding).GlobalTopK(0)).Message);
        Assert.Contains("batch size", Assert.Throws<Jet.Core.InvalidPlanException>(() => model.Bigrams(ReadoutPath.Embedding).BatchSize(0).RowTopK(2)).Message);
        var tooBig = Assert.Throws<Jet.Core.InvalidPlanException>(() => model.Bigrams(ReadoutPath.Embedding).MaxFullBytes(1000).FullTable());
        Assert.Contains("100 × 100", tooBig.Message);
        Assert.Contains("top-k", tooBig.Message);
        Assert.Contains("0..99", Assert.Throws<Jet.Core.IndexRangeException>(() => model.Bigrams(ReadoutPath.Embedding).Mass(new[] { 100 })).Message);
        Assert.Throws<Jet.Core.MissingArgumentException>(() => model.Bigrams(ReadoutPath.Embedding).Mass(Array.Empty<int>()));
        var unknown = Assert.Throws<Jet.Core.Apps.UnknownTokenException>(() => model.Bigrams(ReadoutPath.Embedding).Mass(new[] { "a", "not a token" }));
        Assert.Contains("Line 2 of the token list", unknown.Message);
        Assert.Contains("0..99", Assert.Throws<Jet.Core.IndexRangeException>(() => model.Bigrams(ReadoutPath.Embedding).Scores(torch.tensor(new long[] { 100 }))).Message);
        Assert.Throws<ArgumentNullException>(() => model.Bigrams(null!));
    }

    [Fact]
    public void TwoModelsCompareByTheCoresComparison()
    {
        using var before = Toy(1);
        using var after = Toy(2);
        var sweep = after.Bigrams(ReadoutPath.Embedding.Mlp(1)).BatchSize(21);
        var compared = before.Bigrams(ReadoutPath.Embedding.Mlp(1)).BatchSize(21).Compare(after, 6, perRow: true);
        Assert.Equal(6, compared.Rises.Count);
        Assert.Equal(before.Vocabulary * 6, compared.RowRises.Count);
        Assert.Equal(compared.Rises.Select(r => r.Change).OrderByDescending(c => c), compared.Rises.Select(r => r.Change));
        Assert.All(compared.Rises.Concat(compared.Falls), r => Assert.Equal(r.After - r.Before, r.Change, 12));
        Assert.True(compared.Falls[0].Change < 0 && compared.Rises[0].Change > 0);
        // The second model's own top list is what its own sweep ranks first.
        Assert.Equal(sweep.GlobalTopK(6).Rows.Select(r => (r.From, r.To)), compared.TopAfter.Select(r => (r.From, r.To)));
        Assert.Equal(compared.TopBefore.Select(r => (r.From, r.To)).Intersect(compared.TopAfter.Select(r => (r.From, r.To))).Count(), compared.Overlap);
        var file = Path.Combine(Path.GetTempPath(), $"jetdsl-compare-{Guid.NewGuid():N}.svg");
        compared.SaveChart(file);
        Assert.Contains("rose most", File.ReadAllText(file));
        File.Delete(file);
        var log = before.Bigrams(ReadoutPath.Embedding).Compare(after, 3, ChangeSpace.LogProbability);
        Assert.Empty(log.RowRises);
        Assert.All(log.Rises, r => Assert.True(r.Before <= 0 && r.After <= 0));
    }

    [Fact]
    public void WordListMassScoresSplitWordsByTheirFirstTokenAndCountsTheTopK()
    {
        using var first = Toy(1);
        using var second = Toy(2);
        var masses = first.Bigrams(ReadoutPath.Embedding).CompareMass(second, new[] { "sorry", "a" }, topK: 5);
        Assert.Equal(2, masses.Count);
        foreach (var m in masses)
        {
            Assert.Equal("sorry", Assert.Single(m.SplitWords).Word);
            Assert.True(m.TopKMass is { } top && top <= m.Mass);
        }
        var ids = new[] { "s", "a" }.Select(t => (int)first.Encode(t).data<long>().ToArray().Last()).ToArray();
        Assert.Equal(first.Bigrams(ReadoutPath.Embedding).Mass(ids), masses[0].Mass, 12);
        Assert.Equal(first.Bigrams(ReadoutPath.Embedding).MassInTopK(ids, 5), masses[0].TopKMass!.Value, 12);
    }

    [Fact]
    public void PathsParseAndCompareByValue()
    {
        using var model = Toy();
        Assert.Equal(ReadoutPath.Embedding.Mlp(2), ReadoutPath.Parse("emb>mlp2"));
        Assert.Equal("emb>attn2>mlp3", ReadoutPath.Embedding.Attention(2).Mlp(3).ToString());
        Assert.Equal("enc>γ4", ReadoutPath.Encoder.Layer(4).ToString());
        // Every spelling of one path reads the same path of a model.
        foreach (var text in new[] { " MLP:2 ", "emb>block2", "γ2", "emb>mlp2>U" })
            Assert.Equal("U·LN(γ₂(Emb)) (emb > block2)", ReadoutPath.Parse(text).Notation(model));
        Assert.Equal("U·LN(Emb) (emb)", ReadoutPath.Parse("embed").Notation(model));
        Assert.Equal(new[] { "block1", "block2" }, model.PathSteps().Select(s => s.Name));
        Assert.Equal("γ₂", model.PathSteps()[1].Notation);
        Assert.Throws<InvalidOperationException>(() => ReadoutPath.Of(Plan.AtDecoder().Around(Centre.Embedding).Build()).Mlp(1));
    }

    /// <summary>A synchronous IProgress (System.Progress posts to a thread pool, so its reports arrive late).</summary>
    private sealed class Reporter(Action<long> onReport) : IProgress<long>
    {
        public void Report(long value) => onReport(value);
    }
}
