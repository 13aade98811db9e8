// The package test's C# app (tests/packages/run.sh): only the Jet.CSharp and TorchSharp-cpu packages, no sources.
using JetDsl;

// The quickstart carving: four paths that, with the remainder, add up to the logits.
using (var toy = JetModel.Toy(seed: 0, width: 32))
{
    var block2 = Plan.AtLayer(toy.LayerOf(block: 2)).Around(Centre.Stream(0), Centre.Gamma(1)).Order(1).Build();
    var decoder = Plan.AtDecoder().Around(Centre.TermsOf(block2)).Order(1).Build();
    using var analysis = toy.Analyse("Hello, jets!");
    var carving = analysis.Carve(decoder);
    Console.WriteLine($"carving: {carving.Paths.Count} paths, reconstruction error {carving.ReconstructionError:E1}");
    if (carving.Paths.Count != 4 || !(carving.ReconstructionError < 1e-4)) return 1;
}

// The logit lens on a real checkpoint (5 layers): h_0 and the stream after each attention and MLP, 2·5 + 1 = 11;
// at h_L the lens is the model itself.
using var model = JetModel.Load(args[0]);
using var lens = model.Lens().Top(5).Run("Once upon a time");
var last = lens.Streams[^1].Mean;
Console.WriteLine($"lens: {lens.Streams.Count} streams, at h_L cosine {last.Cosine:F4} top-1 {last.Top1:P0}");
return lens.Streams.Count == 11 && last.Cosine > 0.9999 && last.Top1 == 1.0 ? 0 : 2;
