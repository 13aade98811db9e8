/// Model against model: compared tables against brute force over both full tables, tokenizer checks, and the
/// n-gram mass of word lists (words of several tokens, mass inside the top k) on the toy and on stories260K.
module Jet.Core.Tests.ComparisonTests

open System
open System.IO
open Expecto
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps
open Jet.Core.Tests.TestKit

let private toy (seed: int) (source: string) = { Model.toy seed 8 torch.float64 with Source = source }

/// Both models' full tables in the space of the change, with the diagonal dropped on request.
let private tables (a: Model) (b: Model) (readout: Readout) (space: ChangeSpace) (drop: bool) =
    let full (m: Model) =
        let p =
            Bigrams.full m.Net readout { SweepOptions.Default with DropDiagonal = drop; Space = ScoreSpace.Probability }
        match space with
        | ChangeSpace.Probability -> p
        | ChangeSpace.LogProbability -> p.log ()
    full a, full b

let private closeArrays (got: float[]) (expected: float[]) (message: string) =
    Expect.equal got.Length expected.Length message
    Array.iter2 (fun g e -> Expect.floatClose Accuracy.high g e message) got expected

let private options drop = { SweepOptions.Default with DropDiagonal = drop; BatchSize = 23 }

let compare =
    testList
        "model against model"
        [
            for space in [ ChangeSpace.Probability; ChangeSpace.LogProbability ] do
                for drop in [ false; true ] do
                    test (
                        sprintf "risers, fallers and top-k overlap equal brute force (%A, drop diagonal %b)" space drop
                    ) {
                        use a = toy 1 "a"
                        use b = toy 2 "b"
                        let readout = Readouts.parse a.Net "emb>block2"
                        let k = 7
                        let result = BigramComparison.compare a b readout space k true (options drop)
                        let before, after = tables a b readout space drop
                        let v = a.Net.Vocab
                        let change = after - before
                        let change =
                            if drop then
                                change.masked_fill (torch.eye (int64 v, dtype = torch.ScalarType.Bool), nan)
                            else
                                change
                        let flat = change.flatten().data<float>().ToArray()
                        let ranked = [| 0 .. v * v - 1 |] |> Array.filter (fun i -> not (Double.IsNaN flat.[i]))
                        let best sign = ranked |> Array.sortByDescending (fun i -> sign * flat.[i]) |> Array.truncate k
                        let check (name: string) (got: PairChange[]) (sign: float) =
                            closeArrays
                                (got |> Array.map (fun c -> c.Change))
                                (best sign |> Array.map (fun i -> flat.[i]))
                                (name + ": the k largest changes, in order")
                            for c in got do
                                Expect.floatClose Accuracy.high c.Change flat.[c.From * v + c.To] "the pair's change"
                                Expect.floatClose Accuracy.high (c.After - c.Before) c.Change "after − before"
                        check "rises" result.Rises 1.0
                        check "falls" result.Falls -1.0
                        // Per row: each first token's k largest rises and falls.
                        Expect.equal result.RowRises.Length (v * k) "k per first token"
                        for z in [ 0; 17; v - 1 ] do
                            let row = change.[int64 z].data<float>().ToArray()
                            let columns = [| 0 .. v - 1 |] |> Array.filter (fun c -> not (Double.IsNaN row.[c]))
                            for got, sign in [ result.RowRises, 1.0; result.RowFalls, -1.0 ] do
                                let mine = got |> Array.filter (fun c -> c.From = z) |> Array.map (fun c -> c.Change)
                                let expected =
                                    columns
                                    |> Array.sortByDescending (fun c -> sign * row.[c])
                                    |> Array.truncate k
                                    |> Array.map (fun c -> row.[c])
                                closeArrays mine expected (sprintf "row %d" z)
                        // The two global top-k lists, by probability, and their overlap.
                        let topOf (m: Model) =
                            Bigrams.globalTopK m.Net readout k { options drop with Space = ScoreSpace.Probability }
                        let pairs (ps: ScoredPair[]) = ps |> Array.map (fun p -> p.From, p.To)
                        Expect.equal (pairs result.TopBefore) (pairs (topOf a)) "first model's top k"
                        Expect.equal (pairs result.TopAfter) (pairs (topOf b)) "second model's top k"
                        Expect.equal
                            result.Overlap
                            (Set.intersect (set (pairs result.TopBefore)) (set (pairs result.TopAfter))).Count
                            "overlap"
                    }

            test "a model against itself: nothing changes and the top-k lists coincide" {
                use a = toy 3 "a"
                let result =
                    BigramComparison.compare a a Readouts.embedding ChangeSpace.Probability 5 false (options false)
                for c in Array.append result.Rises result.Falls do
                    Expect.equal c.Change 0.0 "no change"
                Expect.equal result.Overlap 5 "same top 5"
                Expect.isEmpty result.RowRises "per row only when asked"
            }

            test "different tokenizers and bad k are refused before any sweep" {
                use a = toy 1 "a"
                use stories = Model.load (Jet.Tests.Fixtures.path [ "stories260K" ]) torch.float64 torch.CPU
                Expect.throwsWith<TokenizerMismatchException>
                    [ "different vocabularies"; "512"; "100" ]
                    (fun () ->
                        BigramComparison.compare
                            a
                            stories
                            Readouts.embedding
                            ChangeSpace.Probability
                            3
                            false
                            (options false)
                        |> ignore)
                    "vocabularies"
                let renamed =
                    { a with
                        Source = "renamed"
                        Tokenizer =
                            { new ITokenizer with
                                member _.VocabSize = 100
                                member _.Encode _ = [||]
                                member _.Decode _ = ""
                                member _.Piece id = sprintf "w%d" id
                            }
                    }
                Expect.throwsWith<TokenizerMismatchException>
                    [ "token 0"; "tokenizers differ" ]
                    (fun () ->
                        BigramComparison.compare
                            a
                            renamed
                            Readouts.embedding
                            ChangeSpace.Probability
                            3
                            false
                            (options false)
                        |> ignore)
                    "pieces"
                Expect.throwsWith<IndexRangeException>
                    [ "1..99"; "got 100" ]
                    (fun () ->
                        BigramComparison.compare
                            a
                            a
                            Readouts.embedding
                            ChangeSpace.Probability
                            100
                            false
                            (options true)
                        |> ignore)
                    "k"
            }
        ]

let mass =
    testList
        "word-list mass"
        [
            test "a word of several tokens is scored by its first token and listed" {
                let words = TokenMass.words CharTokenizer.Instance 100 "list" [ "a"; ""; "sorry"; "␣" ]
                Expect.equal (words |> Array.map (fun w -> w.Line)) [| 1; 3; 4 |] "empty lines skipped"
                Expect.equal words.[1].Tokens.Length 5 "five characters"
                Expect.equal words.[1].Scored ((CharTokenizer.Instance :> ITokenizer).Encode "s").[0] "scored by 's'"
                Expect.equal words.[0].Tokens.Length 1 "a token is itself"
                Expect.throwsWith<MissingArgumentException>
                    [ "no words" ]
                    (fun () -> TokenMass.words CharTokenizer.Instance 100 "list" [ "" ] |> ignore)
                    "empty"
            }

            test "the mass inside each row's top k is the brute-force sum over top-k entries in the set" {
                use net = Toy.create 5 12 torch.float64
                let set = [| 3; 10; 40; 41; 77 |]
                let readout = Readouts.mlpPath net 1
                for drop in [ false; true ] do
                    let o = options drop
                    use table = Bigrams.full net readout { o with Space = ScoreSpace.Probability }
                    for k in [ 1; 5; 30 ] do
                        let struct (values, ids) = table.topk (k, dim = 1)
                        let inSet = ids.cpu().data<int64>().ToArray() |> Array.map (fun i -> Array.contains (int i) set)
                        let values = values.data<float>().ToArray()
                        let expected =
                            Array.fold2 (fun s v keep -> if keep then s + v else s) 0.0 values inSet / float net.Vocab
                        Expect.floatClose
                            Accuracy.high
                            (TokenMass.inTopK net readout set k o)
                            expected
                            (sprintf "k %d" k)
                    let all = TokenMass.inTopK net readout set (if drop then 99 else 100) o
                    Expect.floatClose Accuracy.high all (Bigrams.mass net readout set o) "k = V is the whole mass"
            }

            test "the example refusal list on stories260K: every word read, split words scored by their first token" {
                let lines =
                    File.ReadAllLines(Jet.Tests.Fixtures.repositoryFile [ "docs"; "examples"; "refusal-words.txt" ])
                use stories = Model.load (Jet.Tests.Fixtures.path [ "stories260K" ]) torch.float64 torch.CPU
                let results =
                    TokenMass.ofModels
                        (Readouts.parse stories.Net "emb>mlp5")
                        "refusal-words.txt"
                        lines
                        (Some 10)
                        (options false)
                        [ stories ]
                let r = results.[0]
                let words = TokenMass.words stories.Tokenizer stories.Net.Vocab "list" lines
                Expect.equal words.Length lines.Length "one entry per word"
                for w in words do
                    Expect.equal ((stories.Tokenizer.Decode w.Tokens).Trim()) w.Word "the tokens spell the word"
                let set = words |> Array.map (fun w -> w.Scored) |> Array.distinct
                Expect.equal r.Tokens set.Length "distinct first tokens"
                Expect.floatClose
                    Accuracy.high
                    r.Mass
                    (Bigrams.mass stories.Net (Readouts.parse stories.Net "emb>mlp5") set (options false))
                    "the mass of the first tokens"
                Expect.equal
                    (r.SplitWords |> Array.map (fun w -> w.Word))
                    (words |> Array.filter (fun w -> w.Tokens.Length > 1) |> Array.map (fun w -> w.Word))
                    "split words listed"
                Expect.isTrue (r.TopKMass.Value <= r.Mass + 1e-12) "top-k mass within the mass"
            }
        ]

[<Tests>]
let tests = testList "comparison" [ compare; mass ]
