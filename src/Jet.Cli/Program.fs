/// The `jet` command: every subcommand wraps calls into Jet.Core and can print JSON with --json.
module Jet.Cli.Program

open System
open Argu
open Jet.Cli.Commands

type Command =
    | [<CliPrefix(CliPrefix.None)>] Quickstart of ParseResults<Quickstart.Args>
    | [<CliPrefix(CliPrefix.None)>] Series of ParseResults<Series.Args>
    | [<CliPrefix(CliPrefix.None)>] Info of ParseResults<Info.Args>
    | [<CliPrefix(CliPrefix.None)>] Tokenize of ParseResults<Tokenize.Args>
    | [<CliPrefix(CliPrefix.None)>] Run of ParseResults<Run.Args>

    interface IArgParserTemplate with
        member c.Usage =
            match c with
            | Quickstart _ -> "the main job: carve the built-in toy network into four input→output paths (paper Sec. 4.2)."
            | Series _ -> "the jet of a built-in scalar function, order by order, against the exact value."
            | Info _ -> "a model's family, sizes, parameter count and dtype (--model toy|DIR)."
            | Tokenize _ -> "the token ids and pieces of a text under a model's tokenizer."
            | Run _ -> "one forward pass over a prompt: the top-K next tokens and logits at every position."

[<EntryPoint>]
let main argv =
    let parser = ArgumentParser.Create<Command>(programName = "jet", errorHandler = ProcessExiter())
    let results = parser.ParseCommandLine(argv)
    match results.GetSubCommand() with
    | Quickstart args -> Quickstart.run args
    | Series args -> Series.run args
    | Info args -> Info.run args
    | Tokenize args -> Tokenize.run args
    | Run args -> Run.run args
