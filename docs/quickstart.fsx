// The quickstart in F# Interactive: carve the paper's toy network into four input→output paths.
// Run after `dotnet build -c Release` from the repository root:  dotnet fsi docs/quickstart.fsx
#r "../src/Jet.Core/bin/Release/net10.0/TorchSharp.dll"
#r "../src/Jet.Core/bin/Release/net10.0/Jet.Core.dll"

open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps

// The toy: vocabulary 100, width 32, two residual MLP blocks, LayerNorm, untied unembedding.
let model = Model.toy 0 32 torch.float32
printfn "%O" model.Net

// Centres {h₀, γ₁(h₀)}; expand block 2 at order 1 (4 sub-streams), then the decoder around those terms (4 paths).
let block2 = Expansion.atLayer 2 [ Centre.Stream 0; Centre.Gamma 1 ] |> Expansion.withOrder 1
let decoder = Expansion.atDecoder [ Centre.Terms block2 ] |> Expansion.withOrder 1
printfn "%A" decoder

let tokens = Model.encode model "Hello, jets!"
let session = Expand.session model.Net tokens
let carving = session.Unembed(session.Expand decoder)

for path in carving.Paths do
    printfn "%-26s ‖path‖ = %8.3f" (string path.Path) (path.Value.norm().item<float32>())

let reconstructed = carving.Paths |> List.fold (fun acc p -> acc + p.Value) carving.Remainder
let error = (reconstructed - carving.Logits).abs().max().item<float32>()
printfn "‖remainder‖ = %.3f, max|Σ paths + remainder − logits| = %.2g" (carving.Remainder.norm().item<float32>()) error
if carving.Paths.Length <> 4 || error > 1e-4f then failwith "the carving does not reconstruct the logits"
(session :> System.IDisposable).Dispose()
(model :> System.IDisposable).Dispose() // the model owns its weights
