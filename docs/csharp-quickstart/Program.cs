using JetDsl;

// The paper's toy network: vocabulary 100, width 32, two residual MLP blocks.
using var model = JetModel.Toy(seed: 0, width: 32);

// Centres {h₀, γ₁(h₀)}: expand block 2 at order 1, then the decoder around its four terms.
var block2 = Plan.AtLayer(model.LayerOf(block: 2)).Around(Centre.Stream(0), Centre.Gamma(1)).Order(1).Build();
var decoder = Plan.AtDecoder().Around(Centre.TermsOf(block2)).Order(1).Build();

using var analysis = model.Analyse("Hello, jets!");
var carving = analysis.Carve(decoder);

foreach (var path in carving.Paths)
    Console.WriteLine($"{path.Name,-24} ‖path‖ = {path.Value.norm().item<float>(),8:F3}");
Console.WriteLine($"‖remainder‖ = {carving.Remainder.norm().item<float>():F3}");
Console.WriteLine($"max|Σ paths + remainder − logits| = {carving.ReconstructionError:E1}");
return carving.Paths.Count == 4 && carving.ReconstructionError < 1e-4 ? 0 : 1;
