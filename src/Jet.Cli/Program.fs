/// The `jet` command: every subcommand wraps calls into Jet.Core and can print JSON with --json.
module Jet.Cli.Program

open System
open Argu
open Jet.Cli.Commands

type Command =
    | [<CliPrefix(CliPrefix.None)>] Quickstart of ParseResults<Quickstart.Args>
    | [<CliPrefix(CliPrefix.None)>] Series of ParseResults<Series.Args>

    interface IArgParserTemplate with
        member c.Usage =
            match c with
            | Quickstart _ -> "the main job: carve the built-in toy network into four input→output paths (paper Sec. 4.2)."
            | Series _ -> "the jet of a built-in scalar function, order by order, against the exact value."

[<EntryPoint>]
let main argv =
    let parser = ArgumentParser.Create<Command>(programName = "jet", errorHandler = ProcessExiter())
    let results = parser.ParseCommandLine(argv)
    match results.GetSubCommand() with
    | Quickstart args -> Quickstart.run args
    | Series args -> Series.run args
