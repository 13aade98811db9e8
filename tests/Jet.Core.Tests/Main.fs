module Jet.Core.Tests.Main

open Expecto

[<EntryPoint>]
let main argv =
    Jet.Core.Native.ensure ()
    TorchSharp.torch.set_num_threads (max 1 System.Environment.ProcessorCount)
    runTestsInAssemblyWithCLIArgs [ CLIArguments.Summary ] argv
