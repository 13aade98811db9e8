// The package test's F# script (tests/packages/run.sh fills in the feed folder, version and model directory):
// Jet.Core from the local package folder, the CPU backend from the default source.
#i "nuget: @FEED@"
#r "nuget: Jet.Core, @VERSION@"
#r "nuget: TorchSharp-cpu, 0.107.0"

open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps

// Before anything touches TorchSharp's `torch` (its static constructor loads the native library once, for good):
// on Debian 12 / Ubuntu 22.04 this loads JetDsl's patched copy of libLibTorchSharp.so.
Native.ensure ()

// The quickstart carving: four paths that, with the remainder, add up to the logits.
let toy = Model.toy 0 32 torch.float32
let block2 = Expansion.atLayer 2 [ Centre.Stream 0; Centre.Gamma 1 ] |> Expansion.withOrder 1
let decoder = Expansion.atDecoder [ Centre.Terms block2 ] |> Expansion.withOrder 1
let session = Expand.session toy.Net (Model.encode toy "Hello, jets!")
let carving = session.Unembed(session.Expand decoder)
let reconstructed = carving.Paths |> List.fold (fun acc p -> acc + p.Value) carving.Remainder
let error = (reconstructed - carving.Logits).abs().max().item<float32> ()
printfn "carving: %d paths, reconstruction error %.1e" carving.Paths.Length error
if carving.Paths.Length <> 4 || error > 1e-4f then
    failwith "the carving does not reconstruct the logits"

// The logit lens on a real checkpoint (5 layers, 2·5 + 1 = 11 streams): at h_L it reads the model's own logits.
let model = Model.load "@MODEL@" torch.float32 torch.CPU
let lens = IterativeLens.run model.Net (Model.encode model "Once upon a time") LensOptions.Default
let gap = ((List.last lens.Streams).Logits - lens.Logits).abs().max().item<float32> ()
printfn "lens: %d streams, max gap at h_L %.1e" lens.Streams.Length gap
if lens.Streams.Length <> 11 || gap > 1e-4f then
    failwith "the lens at h_L is not the model"
