using JetDsl;
using TorchSharp;
using static TorchSharp.torch;

namespace JetDsl.Tests;

/// <summary>Path search through the facade: an exact search lists every path, whose contributions add up with the
/// remainder to what paths carry; a user function of the logits as a Func; settings reach the search.</summary>
public class PathSearchTests
{
    private static JetModel Toy() => JetModel.Toy(seed: 3, width: 12, dtype: ScalarType.Float64);

    [Fact]
    public void AnExactSearchListsEveryPathAndTheBookkeepingCloses()
    {
        using var model = Toy();
        var report = PathSearch.TokenLogit(model, "hello", 7, new PathSearchSettings { Top = 4, Beam = 8 });
        Assert.True(report.Exact);
        Assert.Equal(4, report.Paths.Count);
        Assert.Equal(4.0, report.TotalPaths);
        var sum = report.Paths.Sum(p => p.Contribution);
        Assert.Equal(report.Carried, sum + report.Remainder, 9);
        Assert.Equal(report.Target, report.Carried + report.Constant, 9);
        Assert.Contains(report.Paths, p => p.Layers.Count == 0 && p.Notation == "U·LN(Enc)");
        Assert.Equal(1.0 - report.Remainder / report.Carried, report.Paths[^1].CumulativeShare, 9);
    }

    [Fact]
    public void AUserFunctionOfTheLogitsIsATarget()
    {
        using var model = Toy();
        var settings = new PathSearchSettings { Position = 2, Top = 4 };
        var token = PathSearch.TokenLogit(model, "hello", 7, settings);
        var twice = PathSearch.Custom(model, "hello", "2·logit 7", logits => logits[7] * 2.0, settings);
        Assert.Equal(2, twice.Position);
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(token.Paths[i].Notation, twice.Paths[i].Notation);
            Assert.Equal(2.0 * token.Paths[i].Contribution, twice.Paths[i].Contribution, 9);
        }
        var difference = PathSearch.LogitDifference(model, "hello", 7, 7, settings);
        Assert.All(difference.Paths, p => Assert.Equal(0.0, p.Contribution));
    }

    [Fact]
    public void BadSettingsThrowJetErrorsAndThePictureIsWritten()
    {
        using var model = Toy();
        Assert.Throws<Jet.Core.IndexRangeException>(() => PathSearch.TopLogProbability(model, "hi", new PathSearchSettings { Top = 0 }));
        Assert.Throws<Jet.Core.InvalidPlanException>(() => PathSearch.TopLogProbability(model, "hi", new PathSearchSettings { Layers = PathLayerKinds.Attention }));
        var report = PathSearch.TopLogProbability(model, "hi", new PathSearchSettings { MaxLength = 1 });
        Assert.Equal(3.0, report.TotalPaths);
        var file = Path.Combine(Path.GetTempPath(), $"jetdsl-paths-{Guid.NewGuid():N}.svg");
        try
        {
            report.SavePicture(file, "toy");
            Assert.Contains("<svg", File.ReadAllText(file));
        }
        finally
        {
            File.Delete(file);
        }
    }
}
