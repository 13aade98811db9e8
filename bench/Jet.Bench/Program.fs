/// Benchmark entry point: `dotnet run -c Release --project bench/Jet.Bench -- [suite…]` runs the named suites
/// (all of them but the opt-in ones when none is named) and prints one JSON object per line.
module Jet.Bench.Program

open System
open TorchSharp

/// Each suite: a name and a function that prints its records.
let suites: (string * (unit -> unit)) list =
    [
        "checkpoint-load", CheckpointBench.run
        "load-dispose", CheckpointBench.runLoadDispose
        "checkpoint-load-scaling", CheckpointBench.runScaling
        yield! JetEngines.suites
        "bigram-sweep", BigramSweepSuite.run
        "head-ngrams", HeadNGramSuite.run
        "tokenize-1mb", TokenizerBench.run
        "path-search", PathSearchBench.run
        "path-overlap", PathSearchBench.runOverlap
        "large-tinyllama", LargeModelSuite.runTiny
        "large-llama2-7b", LargeModelSuite.run7b
    ]

/// Suites that run only when named: the Llama-2-7B-shaped one writes 13.5 GB and needs about 17 GB of memory.
let optIn = [ "large-llama2-7b" ]

[<EntryPoint>]
let main argv =
    Jet.Core.Native.ensure ()
    torch.set_num_threads Environment.ProcessorCount
    let chosen =
        if argv.Length = 0 then
            suites |> List.filter (fun (n, _) -> not (List.contains n optIn))
        else
            suites |> List.filter (fun (n, _) -> Array.contains n argv)
    if argv.Length > 0 && chosen.Length <> argv.Length then
        eprintfn "error: unknown suite in %A; suites are: %s" argv (suites |> List.map fst |> String.concat ", ")
        2
    else
        for _, run in chosen do
            run ()
        0
