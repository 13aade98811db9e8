using JetDsl;
using TorchSharp;
using static TorchSharp.torch;

namespace JetDsl.Tests;

/// <summary>The quickstart through the facade only, with the same invariants as the F# tests.</summary>
public class QuickstartTests
{
    private static Tensor Prompt(int seed, int vocab, int length)
    {
        using var generator = new Generator((ulong)seed);
        return torch.randint(vocab, new long[] { 1, length }, dtype: ScalarType.Int64, generator: generator);
    }

    [Theory]
    [InlineData(JetEngine.Taylor)]
    [InlineData(JetEngine.Jvp)]
    public void ToyCarvingHasFourPathsThatReconstructTheLogits(JetEngine engine)
    {
        using var model = JetModel.Toy(seed: 0, width: 32);
        var block2 = Plan.AtLayer(model.LayerOf(2)).Around(Centre.Stream(0), Centre.Gamma(1)).Order(1).Engine(engine).Build();
        var decoder = Plan.AtDecoder().Around(Centre.TermsOf(block2)).Order(1).Engine(engine).Build();

        using var analysis = model.Analyse(Prompt(0, model.Vocabulary, 8));
        var subStreams = analysis.Expand(block2);
        var carving = analysis.Carve(decoder);

        Assert.Equal(4, subStreams.Terms.Count);
        Assert.Equal(4, carving.Paths.Count);
        Assert.Equal(new[] { "U·J¹LN(J¹γ₂(Enc))", "U·J¹LN(J¹γ₂(γ₁(Enc)))", "U·J¹LN(J¹id(Enc))", "U·J¹LN(J¹id(γ₁(Enc)))" },
            carving.Paths.Select(p => p.Name));
        var sum = carving.Paths.Aggregate(carving.Remainder, (acc, p) => acc + p.Value);
        var gap = (sum - carving.Logits).abs().max().item<float>();
        Assert.True(gap <= 1e-4, $"Σ paths + remainder differs from the logits by {gap}");
        Assert.True(carving.ReconstructionError <= 1e-4);
        Assert.Equal(new long[] { 1, 8, 100 }, carving.Logits.shape);
    }

    [Fact]
    public void LayerExpansionsAreExactAndOrderZeroAroundTheStreamHasNoRemainder()
    {
        using var model = JetModel.Toy(seed: 4, width: 16, dtype: ScalarType.Float64);
        using var analysis = model.Analyse("jets!");
        var outcome = analysis.Expand(Plan.AtLayer(2).Around(Centre.Stream(1)).Order(0));
        Assert.Equal(new[] { "γ₂(h₁)", "h₁" }, outcome.Terms.Select(t => t.Name));
        Assert.True(outcome.Remainder.abs().max().item<double>() < 1e-12);
        var gap = (outcome.Terms[0].Value + outcome.Terms[1].Value + outcome.Remainder - outcome.Target).abs().max().item<double>();
        Assert.True(gap < 1e-12);
    }

    [Fact]
    public void PlansCompareByValueAndPrintTheirStructure()
    {
        var a = Plan.AtLayer(2).Around(Centre.Stream(0), Centre.Gamma(1)).Build();
        var b = Plan.AtLayer(2).Around(Centre.Stream(0), Centre.Gamma(1)).Build();
        Assert.Equal(a, b);
        Assert.NotEqual(a, Plan.AtLayer(2).Around(Centre.Stream(0), Centre.Gamma(1)).Order(2).Build());
        Assert.Equal("expand layer 2 around {Enc, γ₁(Enc)} at order 1, uniform weights, Taylor", a.ToString());
        Assert.Equal("γ₁(Enc)", Centre.Gamma(1).ToString());
    }

    [Fact]
    public void SoftmaxWeightsReceiveGradients()
    {
        using var model = JetModel.Toy(seed: 1, width: 8, dtype: ScalarType.Float64);
        var logits = torch.tensor(new[] { 0.2, -0.4 }, dtype: ScalarType.Float64).requires_grad_(true);
        var plan = Plan.AtDecoder().Around(Centre.Stream(0), Centre.Stream(1)).Weights(logits.softmax(0)).Build();
        using var analysis = model.Analyse("abc");
        var outcome = analysis.Expand(plan);
        var loss = outcome.Terms.Aggregate(-outcome.Target, (acc, t) => acc + t.Value).square().sum();
        var grad = torch.autograd.grad(new[] { loss }, new[] { logits })[0];
        Assert.True(grad.abs().sum().item<double>() > 1e-8);
    }

    [Fact]
    public void BadPlansAreClearErrors()
    {
        using var model = JetModel.Toy();
        using var analysis = model.Analyse("hello");
        var layer = Assert.Throws<Jet.Core.IndexRangeException>(() => analysis.Expand(Plan.AtLayer(9).Around(Centre.Encoder)));
        Assert.Contains("1..2", layer.Message);
        // The builder makes plans through the core's validating constructor, so it fails where the mistake is made,
        // with the core's messages.
        Assert.Contains("no centres", Assert.Throws<Jet.Core.InvalidPlanException>(() => Plan.AtLayer(1).Around()).Message);
        Assert.Contains("Centre 1 (0-based) of the plan is null", Assert.Throws<Jet.Core.MissingArgumentException>(() => Plan.AtLayer(1).Around(Centre.Encoder, null!)).Message);
        var order = Assert.Throws<Jet.Core.InvalidOrderException>(() => Plan.AtLayer(1).Around(Centre.Encoder).Order(-1));
        Assert.Contains("The expansion order must be an integer in 0..64; got -1.", order.Message);
        Assert.Contains("3 weights were given for 2 centres", Assert.Throws<Jet.Core.InvalidPlanException>(() => Plan.AtLayer(1).Around(Centre.Encoder, Centre.Embedding).Weights(1, 2, 3)).Message);
        Assert.Contains("finite", Assert.Throws<Jet.Core.InvalidPlanException>(() => Plan.AtLayer(1).Around(Centre.Encoder).Weights(double.NaN)).Message);
        Assert.Contains("first dimension must be 2", Assert.Throws<Jet.Core.InvalidPlanException>(() => Plan.AtLayer(1).Around(Centre.Encoder, Centre.Embedding).Weights(torch.ones(3))).Message);
        var token = Assert.Throws<Jet.Core.IndexRangeException>(() => model.Analyse(torch.tensor(new long[] { 5, 250 })));
        Assert.Contains("0..99", token.Message);
    }
}
