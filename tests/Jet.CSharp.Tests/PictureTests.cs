using System.Buffers.Binary;
using System.Xml.Linq;
using JetDsl;

namespace JetDsl.Tests;

/// <summary>Pictures written through the facade are valid PNG and SVG files that show what the results hold.</summary>
public sealed class PictureTests : IDisposable
{
    private static readonly byte[] PngSignature = { 137, 80, 78, 71, 13, 10, 26, 10 };
    private static readonly XNamespace SvgNamespace = "http://www.w3.org/2000/svg";
    private readonly DirectoryInfo folder = Directory.CreateTempSubdirectory("jetdsl-csharp-pictures-");

    private string File(string name) => System.IO.Path.Combine(folder.FullName, name);

    /// <summary>Checks the PNG signature and a non-empty IHDR size; returns (width, height) in pixels.</summary>
    private static (int Width, int Height) CheckPng(string path)
    {
        var bytes = System.IO.File.ReadAllBytes(path);
        Assert.Equal(PngSignature, bytes[..8]);
        Assert.Equal("IHDR", System.Text.Encoding.ASCII.GetString(bytes, 12, 4));
        var size = (BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)), BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20)));
        Assert.True(size.Item1 > 100 && size.Item2 > 100, $"PNG of {size}");
        Assert.Equal("IEND", System.Text.Encoding.ASCII.GetString(bytes, bytes.Length - 8, 4));
        return size;
    }

    /// <summary>Parses the SVG and returns the texts it draws.</summary>
    private static IReadOnlyList<string> CheckSvg(string path)
    {
        var root = XDocument.Load(path).Root!;
        Assert.Equal(SvgNamespace + "svg", root.Name);
        Assert.True(double.Parse(root.Attribute("width")!.Value, System.Globalization.CultureInfo.InvariantCulture) > 50);
        return root.Descendants(SvgNamespace + "text").Select(t => t.Value).ToList();
    }

    [Fact]
    public void LensTableAndMetricPlotArePngAndSvg()
    {
        using var model = JetModel.Toy(seed: 0, width: 16);
        using var lens = model.Lens().Order(1).Run("jet lens!");
        lens.SaveTable(File("lens.png"));
        lens.SaveTable(File("lens.svg"));
        lens.SaveMetricsPlot(File("metrics.png"));
        lens.SaveMetricsPlot(File("metrics.svg"));

        CheckPng(File("lens.png"));
        CheckPng(File("metrics.png"));
        var texts = CheckSvg(File("lens.svg"));
        foreach (var column in new[] { "j", "e", "t", "␣", "l", "n", "s", "!" })
            Assert.Contains(column, texts);
        Assert.Contains("model", texts);
        Assert.Contains("h₀ (Enc)", texts);
        foreach (var p in lens.Predictions)
            Assert.Contains(p.Top[0].Token, texts);
        var plot = CheckSvg(File("metrics.svg"));
        Assert.Contains("KL divergence", plot);
        Assert.Contains("h₂", plot);
    }

    [Fact]
    public void JointLensTableIsPngAndSvg()
    {
        using var model = JetModel.Toy(seed: 0, width: 16);
        using var joint = model.JointLens().Iterations(20).Fit("jets");
        joint.SaveTable(File("joint.png"));
        joint.SaveTable(File("joint.svg"));
        CheckPng(File("joint.png"));
        var texts = CheckSvg(File("joint.svg"));
        Assert.Contains("joint lens", texts);
        Assert.Contains(texts, t => t.StartsWith("(h₂ − h₁)", StringComparison.Ordinal));
    }

    [Fact]
    public void BigramTableIsPngAndSvg()
    {
        using var model = JetModel.Toy(seed: 0, width: 16);
        var best = model.Bigrams(ReadoutPath.Embedding.Mlp(1)).DropDiagonal().GlobalTopK(12);
        best.SaveTable(File("bigrams.png"));
        best.SaveTable(File("bigrams.svg"), maxRows: 5);
        CheckPng(File("bigrams.png"));
        var texts = CheckSvg(File("bigrams.svg"));
        Assert.Contains("Jet bigrams: U·LN(γ₁(Emb)) (emb > block1)", texts);
        Assert.Contains(best.Rows[0].ToToken, texts);
        Assert.Contains("… 7 more rows not shown", texts);
    }

    [Fact]
    public void BadFileNamesAndRowsAreClearErrors()
    {
        using var model = JetModel.Toy(seed: 0, width: 16);
        using var lens = model.Lens().Run("ab");
        var extension = Assert.Throws<Jet.Core.InvalidPlanException>(() => lens.SaveTable(File("lens.jpg")));
        Assert.Contains(".png or .svg", extension.Message);
        Assert.False(System.IO.File.Exists(File("lens.jpg")));
        var row = Assert.Throws<Jet.Core.IndexRangeException>(() => lens.SaveMetricsPlot(File("plot.png"), row: 1));
        Assert.Contains("rows 0..0", row.Message);
    }

    /// <summary>Removes the pictures.</summary>
    public void Dispose() => folder.Delete(recursive: true);
}
