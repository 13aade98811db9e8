module Jet.Cli.Tests.Main

open Expecto

[<EntryPoint>]
let main argv = runTestsInAssemblyWithCLIArgs [ CLIArguments.Summary ] argv
