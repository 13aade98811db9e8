using JetDsl;
using TorchSharp;
using static TorchSharp.torch;

namespace JetDsl.Tests;

/// <summary>A <see cref="JetModel"/> owns its weights: disposing it frees them without help from the finalizers, and a
/// disposed model fails with an <see cref="ObjectDisposedException"/> that says what to do.</summary>
[Collection("live tensor count")]
public class OwnershipTests
{
    private static void AssertDisposed(Action use, string what)
    {
        var error = Assert.Throws<ObjectDisposedException>(use);
        Assert.True(error.Message.Contains("weights were disposed")
            && error.Message.Contains("load or build the model again"), $"{what}: {error.Message}");
    }

    /// <summary>Runs <paramref name="body"/> once to warm up, then <paramref name="repeats"/> times, each run freeing
    /// every tensor it made (counted before any garbage collection: a tensor left to the finalizers shows).</summary>
    private static void FreesEverything(int repeats, Action body, string what)
    {
        body();
        Reference.LiveTensors();
        for (var run = 1; run <= repeats; run++)
        {
            var before = Jet.Core.Tensors.LiveCount();
            body();
            var after = Jet.Core.Tensors.LiveCount();
            Assert.True(after <= before,
                $"{what}: run {run} left {after - before} tensors to the finalizers ({before} → {after})");
        }
    }

    [Fact]
    public void LoadingAndDisposingFiftyTimesFreesEveryTensor()
    {
        FreesEverything(50, () =>
        {
            using var model = JetModel.Load(Fixtures.Path("lm-buddy-tiny-gpt2-toyvocab"));
            Assert.Equal(21, model.Vocabulary);
        }, "JetModel.Load");
        FreesEverything(50, () =>
        {
            using var model = JetModel.Toy();
            Assert.Equal(100, model.Vocabulary);
        }, "JetModel.Toy");
    }

    [Fact]
    public void ADisposedModelFailsClearlyForAnalysesLensesAndSweeps()
    {
        var model = JetModel.Toy(seed: 1, width: 8, dtype: ScalarType.Float64);
        using var analysis = model.Analyse("jets");
        var plan = Plan.AtLayer(2).Around(Centre.Stream(0), Centre.Gamma(1)).Order(1).Build();
        analysis.Expand(plan);
        model.Dispose();
        model.Dispose();
        AssertDisposed(() => model.Analyse("jets"), "Analyse");
        var second = Plan.AtLayer(2).Around(Centre.Stream(0), Centre.Gamma(1)).Order(2).Build();
        AssertDisposed(() => analysis.Expand(second), "an analysis made before");
        AssertDisposed(() => model.Lens().Run("jets"), "Lens");
        AssertDisposed(() => model.JointLens().Iterations(2).Fit("jets"), "JointLens");
        AssertDisposed(() => model.Bigrams(ReadoutPath.Embedding).RowTopK(3), "Bigrams");
        Assert.Equal(2, model.Depth);
    }

    [Fact]
    public void AModelFromANetworkOwnsTheNetwork()
    {
        var embedding = torch.randn(10, 4);
        var net = new NetworkBuilder(10, 4)
            .TokenEmbedding("e", embedding)
            .AddLayer("l", 1, Fns.Act(ActivationKind.Tanh))
            .FinalNorm(Fns.LayerNorm(null, null))
            .TiedUnembedding()
            .Build();
        var model = JetModel.FromNetwork(net);
        model.Dispose();
        Assert.True(embedding.IsInvalid, "the builder's tensor was freed with the model");
        AssertDisposed(() => _ = net.Parameters.Count, "the wrapped network");
    }
}
