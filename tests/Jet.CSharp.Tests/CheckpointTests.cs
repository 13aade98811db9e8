using JetDsl;
using TorchSharp;
using static TorchSharp.torch;

namespace JetDsl.Tests;

/// <summary>A real save_pretrained checkpoint through the facade only.</summary>
public class CheckpointTests
{
    [Fact]
    public void TheFakeGpt2FixtureLoadsTokenizesAndExpandsExactly()
    {
        using var model = JetModel.Load(Fixtures.Path("lm-buddy-fake-gpt2"), ScalarType.Float64);
        Assert.Equal("gpt2", model.Family);
        Assert.Equal(50257, model.Vocabulary);
        Assert.Equal(2, model.Depth);
        Assert.Equal(2, model.LayerOf(1, LayerPart.Mlp));
        Assert.Equal(new long[] { 15496, 995 }, model.Encode("Hello world")[0].data<long>().ToArray());

        using var analysis = model.Analyse("Hello world, jets");
        var plan = Plan.AtDecoder().Around(Centre.TermsOf(Plan.AtLayer(2).Around(Centre.Stream(1), Centre.Gamma(1)).Order(2))).Order(1).Build();
        var carving = analysis.Carve(plan);
        Assert.Equal(4, carving.Paths.Count);
        Assert.True(carving.ReconstructionError < 1e-9, $"reconstruction error {carving.ReconstructionError}");
        var gamma = (analysis.Stream(2) - analysis.Stream(1) - analysis.Gamma(2)).abs().max().item<double>();
        Assert.True(gamma < 1e-12, "h₂ − h₁ = γ₂(h₁)");
    }

    [Fact]
    public void Stories260KContinuesTheStoryGreedily()
    {
        using var model = JetModel.Load(Fixtures.Path("stories260K"));
        var (ids, text) = model.Generate("Once upon a time", 12);
        Assert.Equal(12, ids.Length);
        // The published greedy story from <s> (its SOURCE.md); the prompt is its first four tokens.
        Assert.StartsWith("Once upon a time" + text, "Once upon a time, there was a little girl named Lily. She loved to play");
        using var start = torch.tensor(new long[] { 1 });
        using var prompt = model.Encode("Once upon a time");
        using var row = prompt[0];
        Assert.Equal(row.data<long>().Skip(1).Select(i => (int)i).ToArray(), model.Generate(start, 4));
        Assert.Throws<Jet.Core.IndexRangeException>(() => model.Generate(start, 512));
    }

    [Fact]
    public void MappedAndCopiedWeightsGiveTheSameStreams()
    {
        var dir = Fixtures.Path("stories260K");
        using var mapped = JetModel.Load(dir);
        using var copied = JetModel.Load(dir, memoryMap: false);
        using var tokens = torch.tensor(new long[] { 1, 403, 407, 261 });
        using var a = mapped.Analyse(tokens);
        using var b = copied.Analyse(tokens);
        for (var l = 0; l <= mapped.Depth; l++)
        {
            Assert.Equal(0.0, (a.Stream(l) - b.Stream(l)).abs().max().item<float>());
        }
    }

    [Fact]
    public void StorageAndComputeDTypesAreSeparateChoices()
    {
        var dir = Fixtures.Path("lm-buddy-tiny-gpt2-toyvocab");
        using var asStored = JetModel.Load(dir);
        Assert.Equal(ScalarType.Float32, asStored.StorageDType);
        Assert.Equal(ScalarType.Float32, asStored.ComputeDType);
        // Kept in bfloat16, computed in float64: widening bfloat16 is exact, so the stored values come out unchanged.
        using var narrow = JetModel.Load(dir, ScalarType.Float64, storageDType: ScalarType.BFloat16);
        Assert.Equal(ScalarType.BFloat16, narrow.StorageDType);
        Assert.Equal(ScalarType.Float64, narrow.ComputeDType);
        using var tokens = torch.tensor(new long[] { 1, 2, 3 });
        using var analysis = narrow.Analyse(tokens);
        Assert.Equal(ScalarType.Float64, analysis.Stream(narrow.Depth).dtype);
    }

    [Fact]
    public void NonFiniteWeightsAreRefusedUnlessAllowed()
    {
        // A copy of the tiny fixture whose first stored float is NaN.
        var dir = Directory.CreateTempSubdirectory("jetdsl-cs-nan-").FullName;
        try
        {
            var source = Fixtures.Path("lm-buddy-tiny-gpt2-toyvocab");
            foreach (var file in Directory.GetFiles(source))
            {
                File.Copy(file, System.IO.Path.Combine(dir, System.IO.Path.GetFileName(file)));
            }
            var weights = System.IO.Path.Combine(dir, "model.safetensors");
            var bytes = File.ReadAllBytes(weights);
            var start = 8 + (int)BitConverter.ToUInt64(bytes, 0);
            BitConverter.GetBytes(float.NaN).CopyTo(bytes, start);
            File.WriteAllBytes(weights, bytes);

            var error = Assert.Throws<Jet.Core.NonFiniteException>(() => JetModel.Load(dir));
            Assert.Contains("NaN", error.Message);
            Assert.Contains("1 of", error.Message);
            using var model = JetModel.Load(dir, allowNonFinite: true);
            Assert.Equal(21, model.Vocabulary);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void AMissingDirectoryIsAClearError()
    {
        var error = Assert.Throws<Jet.Core.CheckpointException>(() => JetModel.Load("/nonexistent/model"));
        Assert.Contains("/nonexistent/model", error.Message);
    }
}
