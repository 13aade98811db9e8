/// `jet merge`: the shards of a sweep reduced to what one unsharded run prints.
module Jet.Cli.Commands.Merge

open Argu
open Jet.Core
open Jet.Core.Apps
open Jet.Cli
open Jet.Cli.Console

type Args =
    | [<MainCommand; Mandatory>] Dir of dir: string
    | Allow_Nonfinite
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Dir _ -> "the folder the shards wrote to (--shard-dir)."
            | Allow_Nonfinite -> allowNonFiniteUsage
            | Json -> "print one JSON object instead of a table, as the sweep's --json does."

/// The printer of each kind of sharded sweep: a sweep that shards adds its `render` here.
let private printers: Map<string, bool -> bool -> Models.ITokenizer -> ShardResult -> int> =
    Map
        [
            "bigrams", (fun json allow tokenizer -> BigramsCommand.render json allow tokenizer ignore)
            "mass", MassCommand.render
            "skipgrams", (fun json allow tokenizer -> SkipgramsCommand.render json allow tokenizer ignore)
            "trigrams", (fun json allow tokenizer -> TrigramsCommand.render json allow tokenizer ignore)
        ]

let private execute (args: ParseResults<Args>) =
    let merged = Shards.merge (args.GetResult Dir)
    match printers.TryFind merged.Manifest.Kind with
    | None ->
        raise (
            ShardException(
                sprintf
                    "The shards hold a %s sweep, which this jet cannot print; it merges %s."
                    merged.Manifest.Kind
                    (printers |> Map.keys |> String.concat ", ")
            )
        )
    | Some print ->
        let tokenizer = ModelArgs.tokenizer merged.Manifest.Model
        print (args.Contains Json) (args.Contains Allow_Nonfinite) tokenizer merged

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
