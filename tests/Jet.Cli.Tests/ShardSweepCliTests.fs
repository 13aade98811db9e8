/// `--shard I/N` on `jet skipgrams` and `jet trigrams`: shards run at once and merged print exactly what the unsharded
/// command prints, JSON and table; mismatched shards and `--rank` are refused with one line.
module Jet.Cli.Tests.ShardSweepCliTests

open Expecto
open Jet.Cli.Tests.CliRunner
open Jet.Cli.Tests.ShardCliTests

let private stories = lazy (Jet.Tests.Fixtures.path [ "stories260K" ])

/// For each N of `counts`, N shards of `args` run at once merge (`jet merge --json`) to the unsharded `--json` output;
/// with `table`, the merged table of the last N is the unsharded table too. (Each process loads TorchSharp, so the
/// cases share out N = 1 and the table check to keep CI short.)
let private mergesToWhole (counts: int list) (table: bool) (args: string list) =
    let whole = run (args @ [ "--json" ])
    succeeded "unsharded" whole
    let mutable last = ""
    for n in counts do
        let dir = shardsAtOnce args n
        let merged = run [ "merge"; dir; "--json" ]
        succeeded "merge" merged
        Expect.equal merged.Stdout whole.Stdout (sprintf "%d shards: the same JSON" n)
        last <- dir
    if table then
        let unsharded = run args
        succeeded "unsharded table" unsharded
        let merged = run [ "merge"; last ]
        succeeded "merge, table" merged
        Expect.equal merged.Stdout unsharded.Stdout "the same table"

[<Tests>]
let tests =
    testList
        "shards of skip-grams and trigrams (CLI)"
        [
            // stories260K has 512 tokens: 100 first tokens per batch make 6 batches, so 3 shards get 2 each.
            test "skipgrams row top-k of every head of a layer: 3 shards merge to the unsharded JSON and table" {
                mergesToWhole
                    [ 3 ]
                    true
                    [ "skipgrams"; "--model"; stories.Value; "--layer"; "3"; "--top"; "2"; "--batch-size"; "100" ]
            }

            test "skipgrams global top-k (logits, no diagonal): 1 and 3 shards merge to the unsharded JSON" {
                mergesToWhole
                    [ 1; 3 ]
                    false
                    [
                        "skipgrams"
                        "--model"
                        stories.Value
                        "--layer"
                        "1"
                        "--head"
                        "2"
                        "--global-top"
                        "15"
                        "--logit"
                        "--no-diagonal"
                        "--batch-size"
                        "100"
                    ]
            }

            // 21 first × 8 second tokens in blocks of 24 pairs: 3 first tokens per block, 7 blocks.
            test "trigrams row top-k over a first and a second set: 3 shards merge to the unsharded JSON and table" {
                mergesToWhole
                    [ 3 ]
                    true
                    [
                        "trigrams"
                        "--model"
                        stories.Value
                        "--path"
                        "emb>attn1>mlp1"
                        "--first"
                        "0..20"
                        "--second"
                        "5..12"
                        "--top"
                        "3"
                        "--batch-size"
                        "24"
                    ]
            }

            // 30 second tokens in blocks of 16 pairs: one first token per block, its row split in two.
            test "trigrams global top-k with rows longer than a block: 1 and 3 shards merge to the unsharded JSON" {
                mergesToWhole
                    [ 1; 3 ]
                    false
                    [
                        "trigrams"
                        "--model"
                        stories.Value
                        "--path"
                        "emb>attn2.h1"
                        "--first"
                        "10..16"
                        "--second"
                        "100..129"
                        "--global-top"
                        "12"
                        "--batch-size"
                        "16"
                    ]
            }

            test "trigram shards of other sets do not merge; skipgrams --rank refuses --shard in one line" {
                let args (second: string) =
                    [
                        "trigrams"
                        "--model"
                        stories.Value
                        "--path"
                        "emb>attn1"
                        "--first"
                        "0..9"
                        "--second"
                        second
                        "--top"
                        "2"
                        "--batch-size"
                        "8"
                    ]
                let dir = tempDir ()
                succeeded "shard 0/2" (run (args "5..8" @ [ "--shard"; "0/2"; "--shard-dir"; dir ]))
                succeeded "shard 1/2, another second set" (run (args "5..9" @ [ "--shard"; "1/2"; "--shard-dir"; dir ]))
                failedWith (run [ "merge"; dir ]) "second is"
                let tmp = tempDir ()
                failedWith
                    (run [ "skipgrams"; "--model"; stories.Value; "--rank"; "--shard"; "0/2"; "--shard-dir"; tmp ])
                    "--rank"
            }
        ]
