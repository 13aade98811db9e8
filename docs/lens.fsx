// Jet lenses in F# Interactive: read the model's output from every residual stream, at orders 0 and 1, and draw it.
// Run after `dotnet build -c Release` from the repository root:  dotnet fsi docs/lens.fsx [checkpoint-directory]
#r "../src/Jet.Core/bin/Release/net10.0/TorchSharp.dll"
#r "../src/Jet.Core/bin/Release/net10.0/Jet.Core.dll"

open System.IO
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps
open Jet.Core.Pictures

// The built-in toy by default; pass a Hugging Face checkpoint directory to read a real model.
let source = match fsi.CommandLineArgs with [| _; dir |] -> dir | _ -> "toy"
let model = Model.resolve source torch.float32 torch.CPU
let tokens = Model.encode model "Jets carve networks into paths."

for order in [ 0; 1 ] do
    use lens = IterativeLens.run model.Net tokens { LensOptions.Default with Order = order }
    printfn "Jet lens of order %d (%d streams): top-1 token per position, mean cosine, KL and top-1 agreement" order lens.Streams.Length
    for stream in lens.Streams do
        let top1 = LogitMetrics.top model.Tokenizer 1 stream.Logits.[0L] |> Array.map (fun best -> best.[0].Token) |> String.concat ""
        let mean (t: Tensor) = t.mean().to_type(torch.float64).item<float> ()
        printfn "  %-10s %-40s cos %.4f  KL %.4f  top-1 %3.0f%%" (Figures.streamLabel stream.Stream) top1 (mean stream.Agreement.Cosine) (mean stream.Agreement.Kl) (100.0 * mean stream.Agreement.Top1)
    // The identities the lens rests on: the last stream reads the model's own logits exactly.
    let last = List.last lens.Streams
    let gap = (last.Logits - lens.Logits).abs().max().item<float32> ()
    if gap > 1e-4f then failwithf "the lens at h_L differs from the logits by %g" gap
    let picture = Path.Combine(Path.GetTempPath(), sprintf "jetdsl-lens-order%d.png" order)
    Pictures.save picture (Figures.lens (Readings.lens model.Tokenizer lens 1) 0)
    printfn "  picture: %s" picture
(model :> System.IDisposable).Dispose() // the model owns its weights
