using JetDsl;
using TorchSharp;
using static TorchSharp.torch;

namespace JetDsl.Tests;

public class NetworkBuilderTests
{
    private static Tensor Normal(Generator g, params long[] shape) => torch.randn(shape, dtype: ScalarType.Float64, generator: g) * 0.3;

    private static NetworkBuilder TinyTransformer()
    {
        using var g = new Generator(7);
        const int vocab = 30, d = 8;
        return new NetworkBuilder(vocab, d)
            .TokenEmbedding("wte", Normal(g, vocab, d) / 0.3)
            .Parameter("q", Normal(g, d, d)).Parameter("k", Normal(g, 4, d)).Parameter("v", Normal(g, 4, d)).Parameter("o", Normal(g, d, d))
            .Parameter("gate", Normal(g, 16, d)).Parameter("up", Normal(g, 16, d)).Parameter("down", Normal(g, d, 16))
            .AddLayer("attn1", 1, Fns.Chain(Fns.RmsNorm(null), Fns.Attention(heads: 2, headDim: 4, "q", "k", "v", "o", kvHeads: 1, rotaryBase: 10000)), LayerRole.Attention)
            .AddLayer("mlp1", 1, Fns.Chain(Fns.RmsNorm(null), Fns.GatedMlp("gate", "up", "down", ActivationKind.Silu)), LayerRole.Mlp)
            .FinalNorm(Fns.LayerNorm(null, null))
            .TiedUnembedding();
    }

    [Fact]
    public void ANetworkBuiltFromPartsExpandsExactly()
    {
        using var model = JetModel.FromNetwork(TinyTransformer().Build());
        Assert.Equal(2, model.Depth);
        Assert.Equal(1, model.Blocks);
        Assert.Equal(2, model.LayerOf(1, LayerPart.Mlp));
        using var analysis = model.Analyse(torch.tensor(new long[] { 1, 5, 9, 2 }));
        foreach (var engine in new[] { JetEngine.Taylor, JetEngine.Jvp })
        {
            var outcome = analysis.Expand(Plan.AtLayer(2).Around(Centre.Stream(0), Centre.Gamma(1)).Order(2).Engine(engine));
            var gap = (outcome.Terms.Aggregate(outcome.Remainder, (acc, t) => acc + t.Value) - outcome.Target).abs().max().item<double>();
            Assert.True(gap < 1e-9, $"{engine}: gap {gap}");
            var gamma = (analysis.Stream(2) - analysis.Stream(1) - analysis.Gamma(2)).abs().max().item<double>();
            Assert.True(gamma < 1e-12, "h₂ − h₁ = γ₂(h₁)");
        }
        var only = Assert.Throws<Jet.Core.IndexRangeException>(() => model.LayerOf(1));
        Assert.Contains("LayerPart.Attention", only.Message);
    }

    [Fact]
    public void MissingCallsAreNamed()
    {
        var noEmbedding = Assert.Throws<InvalidOperationException>(() => new NetworkBuilder(10, 4).Build());
        Assert.Contains("TokenEmbedding", noEmbedding.Message);
        var noLayers = Assert.Throws<InvalidOperationException>(() => new NetworkBuilder(10, 4).TokenEmbedding("e", torch.zeros(10, 4)).Build());
        Assert.Contains("AddLayer", noLayers.Message);
        var noNorm = Assert.Throws<InvalidOperationException>(() =>
            new NetworkBuilder(10, 4).TokenEmbedding("e", torch.zeros(10, 4)).AddLayer("l", 1, Fns.Act(ActivationKind.Tanh)).Build());
        Assert.Contains("FinalNorm", noNorm.Message);
        var noHead = Assert.Throws<InvalidOperationException>(() =>
            new NetworkBuilder(10, 4).TokenEmbedding("e", torch.zeros(10, 4)).AddLayer("l", 1, Fns.Act(ActivationKind.Tanh)).FinalNorm(Fns.LayerNorm(null, null)).Build());
        Assert.Contains("Unembedding", noHead.Message);
        var missing = Assert.Throws<Jet.Core.InvalidPlanException>(() =>
            new NetworkBuilder(10, 4).TokenEmbedding("e", torch.zeros(10, 4)).AddLayer("l", 1, Fns.Linear("w")).FinalNorm(Fns.LayerNorm(null, null)).TiedUnembedding().Build());
        Assert.Contains("'w'", missing.Message);
        var shape = Assert.Throws<Jet.Core.ShapeMismatchException>(() =>
            new NetworkBuilder(10, 4).TokenEmbedding("e", torch.zeros(9, 4)).AddLayer("l", 1, Fns.Act(ActivationKind.Tanh)).FinalNorm(Fns.LayerNorm(null, null)).TiedUnembedding().Build());
        Assert.Contains("[10, 4]", shape.Message);
    }
}
