using JetDsl;
using TorchSharp;
using static TorchSharp.torch;

namespace JetDsl.Tests;

/// <summary>The joint jet lens through the facade: Adam lowers the logit-space loss, the weights are a softmax over
/// centres, the combined logits are the sum of the weighted centre logits, and the loss is the mean squared logit error.</summary>
public class JointLensTests
{
    public static TheoryData<string> Models => new() { "toy", "lm-buddy-fake-gpt2" };

    private static JetModel Open(string name) =>
        name == "toy" ? JetModel.Toy(seed: 3, width: 12, dtype: ScalarType.Float64) : JetModel.Load(Fixtures.Path(name), ScalarType.Float64);

    [Theory]
    [MemberData(nameof(Models))]
    public void AdamLowersTheLossAndTheWeightsAreASoftmaxOverCentres(string name)
    {
        using var model = Open(name);
        using var joint = model.JointLens().Order(1).Iterations(60).LearningRate(0.05).Top(3).Fit("jets in C#!");
        var seq = (int)joint.Tokens.shape[1];

        Assert.Equal(61, joint.Losses.Count);
        Assert.True(joint.Losses[^1] < 0.9 * joint.Losses[0], $"loss {joint.Losses[0]} → {joint.Losses[^1]}");
        Assert.Equal(Enumerable.Range(0, model.Depth + 1), joint.Streams);
        Assert.Equal(new[] { "Enc" }.Concat(Enumerable.Range(1, model.Depth).Select(l => $"(h{Sub(l)} − {(l == 1 ? "Enc" : "h" + Sub(l - 1))})")), joint.Centres.Select(c => c.Centre));
        Assert.Equal("U·J¹LN((h₁ − Enc))", joint.Centres[1].Path);
        Assert.Equal(new long[] { model.Depth + 1, 1, seq }, joint.Weights.shape);
        Reference.Close(joint.Weights.sum(dim: 0), torch.ones(new long[] { 1, seq }, dtype: ScalarType.Float64), 1e-12, "weights sum to 1 over centres");
        for (var p = 0; p < seq; p++)
            Assert.Equal(1.0, joint.Centres.Sum(c => c.Positions[p].Weight), 12);

        var sum = joint.Centres.Select(c => c.Logits).Aggregate((a, b) => a + b);
        var bias = model.Network.Spec.Unembedding.Bias;
        Reference.Close(joint.Combined, bias is null ? sum : sum + model.Network.Parameters[bias.Value], 1e-10, "combined = Σ weighted centre logits (+ bias)");
        Assert.Equal(seq, joint.Positions.Count);
        Assert.Equal(joint.Positions.Average(p => p.Agreement.Cosine), joint.Mean.Cosine, 12);
        Assert.All(joint.Positions, p => Assert.Equal((int)joint.Combined[0, p.Position].argmax().item<long>(), p.Top[0].Id));
        Assert.All(joint.Centres, c => Assert.All(c.Positions, p => Assert.Equal((int)c.Logits[0, p.Position].argmax().item<long>(), p.Top[0].Id)));
    }

    [Fact]
    public void TheLossWithUniformWeightsIsTheMeanSquaredLogitError()
    {
        using var model = Open("toy");
        using var analysis = model.Analyse("abc");
        using var joint = model.JointLens().Streams(0, 1, model.Depth).Iterations(0).Fit("abc");
        Tensor H(int l) => analysis.Stream(l);
        // Order 0, weights 1/3: the lens is (U·LN(h₀) + U·LN(h₁ − h₀) + U·LN(h_L − h₁)) / 3 without the bias.
        var combined = (Reference.Decoder(model, H(0)) + Reference.Decoder(model, H(1) - H(0)) + Reference.Decoder(model, H(2) - H(1))) / 3;
        var error = Reference.Decoder(model, H(2)) - combined;
        Assert.Equal(error.square().mean().item<double>(), joint.Losses[0], 10);
        Assert.Single(joint.Losses);
        Assert.All(joint.Centres, c => Assert.Equal(1.0 / 3, c.MeanWeight, 12));
    }

    [Fact]
    public void FittingReportsEveryStepAndCanBeCancelled()
    {
        using var model = JetModel.Toy(seed: 2, width: 8);
        var steps = new List<long>();
        using (var joint = model.JointLens().Iterations(7).Fit("abc", new SynchronousProgress(steps.Add)))
            Assert.Equal(Enumerable.Range(1, 7).Select(i => (long)i), steps);
        using var cancellation = new CancellationTokenSource();
        var afterThree = new SynchronousProgress(step => { if (step == 3) cancellation.Cancel(); });
        Assert.ThrowsAny<OperationCanceledException>(() => model.JointLens().Iterations(50).Fit("abc", afterThree, cancellation.Token));
    }

    /// <summary>Reports on the calling thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SynchronousProgress(Action<long> report) : IProgress<long>
    {
        public void Report(long value) => report(value);
    }

    [Fact]
    public void BadInputGivesTheCoresClearErrors()
    {
        using var model = JetModel.Toy();
        Assert.Contains("strictly increasing", Assert.Throws<Jet.Core.InvalidPlanException>(() => model.JointLens().Streams(2, 1).Fit("ab")).Message);
        Assert.Contains("iterations", Assert.Throws<Jet.Core.InvalidPlanException>(() => model.JointLens().Iterations(-1).Fit("ab")).Message);
        Assert.Contains("learning rate", Assert.Throws<Jet.Core.InvalidPlanException>(() => model.JointLens().LearningRate(0).Fit("ab")).Message);
        Assert.Contains("h_0..h_2", Assert.Throws<Jet.Core.IndexRangeException>(() => model.JointLens().Streams(0, 5).Fit("ab")).Message);
    }

    private static string Sub(int n) => new(n.ToString().Select(c => "₀₁₂₃₄₅₆₇₈₉"[c - '0']).ToArray());
}
