using JetDsl;

namespace JetDsl.Tests;

/// <summary>The C# guide's examples of lenses, bigrams, mass and pictures: docs/csharp-guide.md quotes runs of these
/// lines verbatim (the documentation test checks it), and the assertions after each example check what it shows.</summary>
public sealed class GuideExamples : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("jetdsl-guide-").FullName;

    [Fact]
    public void IterativeLens()
    {
        using var model = JetModel.Toy(seed: 0, width: 32);
        using var lens = model.Lens().Streams(0, 1, 2).Order(1).Top(5).Run("Hello, jets!");
        foreach (var stream in lens.Streams)
            Console.WriteLine($"{stream.Path,-12} cos {stream.Mean.Cosine:F3}  KL {stream.Mean.Kl:F3}  top-1 {stream.Mean.Top1:P0}");
        var last = lens.Streams[0].Positions[^1];
        Console.WriteLine($"after '{last.Input}', h₀ alone predicts {string.Join(", ", last.Top.Select(t => $"{t.Token} ({t.Score:F2})"))}");
        lens.SaveTable(Path.Combine(folder, "lens.png"));
        lens.SaveMetricsPlot(Path.Combine(folder, "lens-metrics.svg"));

        Assert.Equal(new[] { "U·J¹LN(Enc)", "U·J¹LN(h₁)", "U·J¹LN(h₂)" }, lens.Streams.Select(s => s.Path));
        Assert.Equal(1.0, lens.Streams[^1].Mean.Top1);
        Assert.Equal(5, last.Top.Count);
        Assert.True(File.Exists(Path.Combine(folder, "lens.png")) && File.Exists(Path.Combine(folder, "lens-metrics.svg")));
    }

    [Fact]
    public void JointLens()
    {
        using var model = JetModel.Toy(seed: 0, width: 32);
        using var joint = model.JointLens().Streams(0, 1, 2).Order(1).Iterations(100).LearningRate(0.05).Fit("Hello, jets!");
        Console.WriteLine($"loss {joint.Losses[0]:G4} → {joint.Losses[^1]:G4}; cosine to the model {joint.Mean.Cosine:F3}");
        foreach (var centre in joint.Centres)
            Console.WriteLine($"{centre.Centre,-12} mean weight {centre.MeanWeight:P1}");
        joint.SaveTable(Path.Combine(folder, "joint-lens.png"));

        Assert.True(joint.Losses[^1] < joint.Losses[0]);
        Assert.Equal(3, joint.Centres.Count);
        Assert.Equal(1.0, joint.Centres.Sum(c => c.MeanWeight), 5);
    }

    [Fact]
    public void BigramsAndMass()
    {
        using var model = JetModel.Toy(seed: 0, width: 32);
        var progress = new Progress<long>(done => Console.Error.Write($"\r{done}/{model.Vocabulary} first tokens"));
        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(10));

        BigramTable best = model.Bigrams(ReadoutPath.Embedding.Mlp(1))
            .DropDiagonal()
            .GlobalTopK(20, progress, cancel.Token);
        foreach (var bigram in best.Rows.Take(5))
            Console.WriteLine($"{bigram.FromToken} → {bigram.ToToken}  {bigram.Score:P2}");
        best.SaveTable(Path.Combine(folder, "bigrams.png"));

        BigramTable perToken = model.Bigrams(ReadoutPath.Embedding).Space(ScoreSpace.Logit).RowTopK(3);

        string[] vowels = { "a", "e", "i", "o", "u" };
        double mass = model.Bigrams(ReadoutPath.Embedding).Mass(vowels);
        using var fineTune = JetModel.Toy(seed: 1, width: 32); // stands in for a fine-tune with the same tokenizer
        foreach (var m in model.Bigrams(ReadoutPath.Embedding).CompareMass(fineTune, vowels))
            Console.WriteLine($"{m.Model}: {m.Mass:P2} of the next-token probability falls on the {m.Tokens} vowels");

        Assert.Equal(20, best.Rows.Count);
        Assert.All(best.Rows, b => Assert.NotEqual(b.From, b.To));
        Assert.Equal(3 * model.Vocabulary, perToken.Rows.Count);
        Assert.InRange(mass, 0.0, 1.0);
    }

    /// <summary>Removes the pictures.</summary>
    public void Dispose() => Directory.Delete(folder, recursive: true);
}
