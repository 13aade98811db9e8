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
    | [<CliPrefix(CliPrefix.None)>] Lens of ParseResults<LensCommand.Args>
    | [<CliPrefix(CliPrefix.None)>] Joint_Lens of ParseResults<JointLensCommand.Args>
    | [<CliPrefix(CliPrefix.None)>] Bigrams of ParseResults<BigramsCommand.Args>
    | [<CliPrefix(CliPrefix.None)>] Mass of ParseResults<MassCommand.Args>
    | [<CliPrefix(CliPrefix.None)>] Merge of ParseResults<Merge.Args>
    | [<CliPrefix(CliPrefix.None)>] Skipgrams of ParseResults<SkipgramsCommand.Args>
    | [<CliPrefix(CliPrefix.None)>] Trigrams of ParseResults<TrigramsCommand.Args>
    | [<CliPrefix(CliPrefix.None)>] Paths of ParseResults<PathsCommand.Args>

    interface IArgParserTemplate with
        member c.Usage =
            match c with
            | Quickstart _ ->
                "the main job: carve the built-in toy network into four input→output paths (paper Sec. 4.2)."
            | Series _ -> "the jet of a built-in scalar function, order by order, against the exact value."
            | Info _ -> "a model's family, sizes, parameter count and dtype (--model toy|DIR)."
            | Tokenize _ -> "the token ids and pieces of a text under a model's tokenizer."
            | Run _ -> "one forward pass over a prompt: the top-K next tokens and logits at every position."
            | Lens _ -> "the iterative jet lens of a prompt: the output read from each stream h_l."
            | Joint_Lens _ -> "the joint jet lens of a prompt: stream contributions with fitted weights."
            | Bigrams _ -> "jet bigrams of a path over the whole vocabulary."
            | Mass _ -> "the n-gram mass of a token set under a bigram path, for one or two models."
            | Merge _ -> "the shard files of a sweep run with --shard I/N, merged into what one unsharded run prints."
            | Skipgrams _ -> "jet skip-grams of attention heads (U·LN(OVₗ,ₕ(Emb))), or heads ranked by copying."
            | Trigrams _ -> "jet trigrams of a path with attention over pairs of tokens."
            | Paths _ -> "path search: the few input→output paths that carry a prediction, with their contributions."

[<EntryPoint>]
let main argv =
    let parser = ArgumentParser.Create<Command>(programName = "jet", errorHandler = ProcessExiter())
    let results = parser.ParseCommandLine(Jet.Cli.Console.splitAssignments argv)
    match results.GetSubCommand() with
    | Quickstart args -> Quickstart.run args
    | Series args -> Series.run args
    | Info args -> Info.run args
    | Tokenize args -> Tokenize.run args
    | Run args -> Run.run args
    | Lens args -> LensCommand.run args
    | Joint_Lens args -> JointLensCommand.run args
    | Bigrams args -> BigramsCommand.run args
    | Mass args -> MassCommand.run args
    | Merge args -> Merge.run args
    | Skipgrams args -> SkipgramsCommand.run args
    | Trigrams args -> TrigramsCommand.run args
    | Paths args -> PathsCommand.run args
