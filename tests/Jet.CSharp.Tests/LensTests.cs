using JetDsl;
using TorchSharp;
using static TorchSharp.torch;

namespace JetDsl.Tests;

/// <summary>The iterative jet lens through the facade: order 0 is the logit lens written by hand from the streams and
/// parameters, the lens at h_L is the model's logits, and the per-position readings are those of the logits.</summary>
public class LensTests
{
    private static Tensor Tokens(params long[] ids) => torch.tensor(ids, dtype: ScalarType.Int64).unsqueeze(0);

    public static TheoryData<string> Models => new() { "toy", "lm-buddy-fake-gpt2" };

    private static JetModel Open(string name) =>
        name == "toy" ? JetModel.Toy(seed: 3, width: 12, dtype: ScalarType.Float64) : JetModel.Load(Fixtures.Path(name), ScalarType.Float64);

    private static Tensor Prompt(JetModel model) => model.Family == "toy" ? Tokens(3, 17, 4, 9, 1) : model.Encode("Hello world, jets");

    [Theory]
    [MemberData(nameof(Models))]
    public void OrderZeroIsTheLogitLensAtEveryStream(string name)
    {
        using var model = Open(name);
        var tokens = Prompt(model);
        using var analysis = model.Analyse(tokens);
        using var lens = model.Lens().Run(tokens);

        Assert.Equal(0, lens.Order);
        Assert.Equal(Enumerable.Range(0, model.Depth + 1), lens.Streams.Select(s => s.Stream));
        foreach (var stream in lens.Streams)
            Reference.Close(stream.Logits, Reference.Decoder(model, analysis.Stream(stream.Stream)), 1e-10, $"{name}: U·LN_f(h_{stream.Stream})");
        Assert.Equal("U·LN(Enc)", lens.Streams[0].Path);
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void TheLensAtTheLastStreamIsTheModelsLogitsAtEveryOrder(string name)
    {
        using var model = Open(name);
        var tokens = Prompt(model);
        using var analysis = model.Analyse(tokens);
        foreach (var order in new[] { 0, 1, 2 })
        {
            using var lens = model.Lens().Streams(model.Depth).Order(order).Run(tokens);
            var stream = Assert.Single(lens.Streams);
            Reference.Close(stream.Logits, analysis.Logits(), 1e-10, $"{name}, order {order}: lens at h_L");
            Reference.Close(lens.Logits, analysis.Logits(), 1e-10, $"{name}: the reading's model logits");
            Assert.All(stream.Positions, p =>
            {
                Assert.True(Math.Abs(p.Agreement.Cosine - 1) < 1e-12, $"cosine {p.Agreement.Cosine}");
                Assert.True(p.Agreement.Kl < 1e-12, $"KL {p.Agreement.Kl}");
                Assert.Equal(1.0, p.Agreement.Top1);
                Assert.Equal(1.0, p.Agreement.TopKOverlap);
            });
            Assert.Equal(1.0, stream.Mean.Top1);
        }
    }

    [Fact]
    public void PositionsListTheBestTokensWithTheirLogitsAndTheMetricsPerPosition()
    {
        using var model = Open("toy");
        var tokens = torch.cat(new[] { Tokens(3, 17, 4, 9), Tokens(8, 2, 30, 5) }, 0);
        using var lens = model.Lens().Streams(2, 0).Order(1).Top(4).Run(tokens);

        Assert.Equal(new[] { 2, 0 }, lens.Streams.Select(s => s.Stream));
        Assert.Equal("U·J¹LN(h₂)", lens.Streams[0].Path);
        var ids = tokens.data<long>().ToArray();
        foreach (var stream in lens.Streams)
        {
            Assert.Equal(8, stream.Positions.Count);
            for (var i = 0; i < 8; i++)
            {
                var p = stream.Positions[i];
                Assert.Equal((i / 4, i % 4), (p.Row, p.Position));
                Assert.Equal((int)ids[i], p.InputId);
                Assert.Equal(model.Piece(p.InputId), p.Input);
                Assert.Equal(4, p.Top.Count);
                var logits = stream.Logits[p.Row, p.Position];
                Assert.Equal((int)logits.argmax().item<long>(), p.Top[0].Id);
                foreach (var t in p.Top)
                {
                    Assert.Equal(logits[t.Id].item<double>(), t.Score);
                    Assert.Equal(model.Piece(t.Id), t.Token);
                }
                Assert.True(p.Top.Zip(p.Top.Skip(1)).All(pair => pair.First.Score >= pair.Second.Score), "best first");
                var truth = lens.Logits[p.Row, p.Position];
                var cosine = (logits.dot(truth) / (logits.norm() * truth.norm())).item<double>();
                Assert.True(Math.Abs(p.Agreement.Cosine - cosine) < 1e-12, "cosine per position");
                Assert.Equal(logits.argmax().item<long>() == truth.argmax().item<long>() ? 1.0 : 0.0, p.Agreement.Top1);
            }
            Assert.Equal(stream.Positions.Average(p => p.Agreement.Kl), stream.Mean.Kl, 12);
        }
        Assert.Equal(8, lens.Predictions.Count);
        Assert.All(lens.Predictions, p => Assert.Equal((int)lens.Logits[p.Row, p.Position].argmax().item<long>(), p.Top[0].Id));
    }

    [Fact]
    public void BadInputGivesTheCoresClearErrors()
    {
        using var model = JetModel.Toy();
        var range = Assert.Throws<Jet.Core.IndexRangeException>(() => model.Lens().Streams(0, 3).Run("ab"));
        Assert.Contains("h_0..h_2", range.Message);
        var repeated = Assert.Throws<Jet.Core.InvalidPlanException>(() => model.Lens().Streams(1, 1).Run("ab"));
        Assert.Contains("repeat", repeated.Message);
        var order = Assert.Throws<Jet.Core.InvalidOrderException>(() => model.Lens().Order(-1).Run("ab"));
        Assert.Contains("The lens order must be an integer in 0..64", order.Message);
        var top = Assert.Throws<Jet.Core.IndexRangeException>(() => model.Lens().Top(101).Run("ab"));
        Assert.Contains("1 ≤ k ≤ 100", top.Message);
        var token = Assert.Throws<Jet.Core.IndexRangeException>(() => model.Lens().Run(Tokens(1, 100)));
        Assert.Contains("0..99", token.Message);
    }

    [Fact]
    public void DisposedReadingsKeepTheirNumbersButRefusePictures()
    {
        using var model = JetModel.Toy();
        var lens = model.Lens().Run("abc");
        lens.Dispose();
        lens.Dispose();
        Assert.Equal(3, lens.Streams[0].Positions.Count);
        Assert.Throws<ObjectDisposedException>(() => lens.SaveTable(System.IO.Path.Combine(System.IO.Path.GetTempPath(), "never.png")));
    }
}

/// <summary>Memory: lens readings and sweeps free every tensor they make.</summary>
[Collection("live tensor count")]
public class LensMemoryTests
{
    [Fact]
    public void RepeatedLensesFreeTheirTensors()
    {
        using var model = JetModel.Toy(seed: 1, width: 8);
        void Lens()
        {
            using var reading = model.Lens().Order(1).Run("jets");
        }
        void Joint()
        {
            using var reading = model.JointLens().Iterations(3).Fit("jets");
        }
        Lens();
        Joint();
        var before = Reference.LiveTensors();
        for (var i = 0; i < 5; i++) Lens();
        // Read before collecting: every temporary must have been disposed, not merely left to the finalizers.
        var uncollected = Jet.Core.Tensors.LiveCount();
        Assert.True(uncollected <= before + 2, $"the lens leaves tensors to the finalizers: {before} → {uncollected}");
        Assert.True(Reference.LiveTensors() <= before + 2, $"the lens leaks: {before} → {Reference.LiveTensors()}");
        before = Reference.LiveTensors();
        for (var i = 0; i < 5; i++) Joint();
        // TorchSharp's Parameter leaves one count per fit without holding memory (see the core's lens memory test).
        uncollected = Jet.Core.Tensors.LiveCount();
        Assert.True(uncollected <= before + 5 + 2, $"the joint lens leaves tensors to the finalizers: {before} → {uncollected}");
        Assert.True(Reference.LiveTensors() <= before + 5 + 2, $"the joint lens leaks: {before} → {Reference.LiveTensors()}");
    }

    [Fact]
    public void RepeatedSweepsFreeTheirTensors()
    {
        using var model = JetModel.Toy(seed: 1, width: 8);
        var sweep = model.Bigrams(ReadoutPath.Embedding.Mlp(1)).BatchSize(30);
        void Sweeps()
        {
            sweep.RowTopK(3);
            sweep.GlobalTopK(5);
            sweep.Mass(new[] { 1, 2 });
            sweep.FullTable().Dispose();
        }
        Sweeps();
        var before = Reference.LiveTensors();
        for (var i = 0; i < 3; i++) Sweeps();
        var uncollected = Jet.Core.Tensors.LiveCount();
        Assert.True(uncollected <= before + 2, $"sweeps leave tensors to the finalizers: {before} → {uncollected}");
    }
}
