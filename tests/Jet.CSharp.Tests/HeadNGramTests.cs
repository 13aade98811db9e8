using JetDsl;
using TorchSharp;

namespace JetDsl.Tests;

/// <summary>Skip-grams per head and trigrams through the facade, on the trained stories260K (grouped-query Llama):
/// the multi-head sweep against one head's path swept as a bigram table, trigram rows in product order, the head
/// ranking's shape and bad input.</summary>
public class HeadNGramTests
{
    private static JetModel Stories() => JetModel.Load(Fixtures.Path("stories260K"), torch.ScalarType.Float64);

    [Fact]
    public void EachHeadsSkipGramTableIsItsHeadPathSweptAsBigrams()
    {
        using var model = Stories();
        var tables = model.SkipGrams(3).BatchSize(100).GlobalTopK(5);
        Assert.Equal(8, tables.Count);
        foreach (var head in new[] { 1, 4, 8 })
        {
            var table = tables[head - 1];
            var single = model.Bigrams(ReadoutPath.Embedding.Head(3, head)).GlobalTopK(5);
            Assert.Equal("U·LN(OV₃," + "₀₁₂₃₄₅₆₇₈₉"[head] + "(Emb)) (emb > attn2.h" + head + ")", table.Notation);
            Assert.Equal(single.Rows.Select(r => (r.From, r.To)), table.Rows.Select(r => (r.From, r.To)));
            foreach (var (a, b) in table.Rows.Zip(single.Rows))
                Assert.Equal(b.Score, a.Score, 1e-12);
        }
    }

    [Fact]
    public void TrigramRowsFollowTheProductOrderAndTheRankingCoversEveryHead()
    {
        using var model = Stories();
        var table = model.Trigrams(ReadoutPath.Parse("emb>attn1>mlp1")).First([7, 3]).Second([1, 2, 5]).RowTopK(2);
        Assert.Equal(12, table.Rows.Count);
        Assert.Equal(new[] { 7, 7, 7, 7, 7, 7, 3, 3, 3, 3, 3, 3 }, table.Rows.Select(r => r.First));
        Assert.Equal(new[] { 1, 1, 2, 2, 5, 5, 1, 1, 2, 2, 5, 5 }, table.Rows.Select(r => r.Second));
        var ranking = model.RankHeads(tokenIds: Enumerable.Range(50, 20), layers: [1, 9]);
        Assert.Equal(16, ranking.Heads.Count);
        Assert.All(ranking.Heads, h => Assert.InRange(h.Copying, 0.0, h.SetMass));
        Assert.Throws<Jet.Core.InvalidPlanException>(() => model.Trigrams(ReadoutPath.Parse("emb>mlp1")).First([1]).GlobalTopK(3));
        Assert.Throws<Jet.Core.IndexRangeException>(() => model.SkipGrams(1).Heads(9).GlobalTopK(3));
    }
}
