// Jet bigrams in F# Interactive: next-token tables read from the weights along a path, swept over the whole
// vocabulary in batches, and the n-gram mass of a token set.
// Run after `dotnet build -c Release` from the repository root:  dotnet fsi docs/bigrams.fsx [checkpoint-directory]
#r "../src/Jet.Core/bin/Release/net10.0/TorchSharp.dll"
#r "../src/Jet.Core/bin/Release/net10.0/Jet.Core.dll"

open System
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps

let source = match fsi.CommandLineArgs with [| _; dir |] -> dir | _ -> "toy"
let model = Model.resolve source torch.float32 torch.CPU
let progress = Progress<int64>(fun done' -> eprintf "\r  %d / %d first tokens" done' model.Net.Vocab)
let options = { SweepOptions.Default with DropDiagonal = true; BatchSize = 64 }

// Paths in the grammar `jet bigrams --path` reads: the embedding alone, the MLP of block 1 (the toy's blocks are
// MLPs), and every layer in turn (the last layer's name, as `Readouts.stepsOf` lists it, ends the path).
let last = (List.last (Readouts.stepsOf model.Net)).Name
let paths = [ "embed"; "mlp:1"; sprintf "emb>mlp1>%s" last ] |> List.map (Readouts.parse model.Net)

for path in paths do
    let best = Bigrams.globalTopK model.Net path 8 { options with Progress = Some(progress :> IProgress<int64>) }
    eprintfn ""
    printfn "The 8 most likely bigrams along %s (diagonal dropped):" (Readouts.describe model.Net path)
    for row in Bigrams.decode model.Tokenizer best do
        printfn "  %-8s → %-8s P = %.4f" row.FromToken row.ToToken row.Score

    // Row top-k agrees with the full table wherever both are computed (the toy's table fits in memory).
    use rows = Bigrams.rowTopK model.Net path 3 options
    if model.Net.Vocab <= 5000 then
        use table = Bigrams.full model.Net path options
        let struct (_, fromTable) = table.topk(3, dim = -1)
        if not (fromTable.equal(rows.Ids).all().item<bool> ()) then failwithf "row top-3 of %O disagrees with the full table" path

// N-gram mass: how much next-token probability each path puts on a set of tokens (here: the vowels).
// Tokens are written as the tables print them, one per entry.
let vowels = Vocabulary.tokenSet model.Tokenizer model.Net.Vocab "the vowels" [ "a"; "e"; "i"; "o"; "u" ]
for path in paths do
    printfn "mass of the vowels under %O: %.4f (uniform would be %.4f)" path (Bigrams.mass model.Net path vowels options) (float vowels.Length / float model.Net.Vocab)
(model :> System.IDisposable).Dispose() // the model owns its weights
