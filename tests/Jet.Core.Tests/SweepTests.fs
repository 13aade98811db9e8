/// The sweep kernel (`Sweeps`): top-k by blocks against a plain top-k (ties, −∞, padding), the log-sum-exp with and
/// without its max-shift, and streamed sweeps over a vocabulary wide enough for the block path, against brute force.
module Jet.Core.Tests.SweepTests

open System
open Expecto
open TorchSharp
open Jet.Core
open Jet.Core.Apps
open Jet.Core.Tests.TestKit

// A vocabulary of 4,500: wide enough for top-k by blocks (rows of ≥ 4,096), small enough for a brute-force table.
let private wide64 (bias: bool) =
    SyntheticNets.gpt2Like
        21
        { SyntheticNets.small with Vocab = 4500; Width = 8; Blocks = 1; UnembedBias = bias }
        torch.float64

// The full table of a path by the plain route: logits of every token, the diagonal −∞ when dropped.
let private table (net: Net) (readout: Readout) (drop: bool) =
    let logits = Readouts.logits net readout (torch.arange (int64 net.Vocab, dtype = torch.int64))
    if drop then
        logits.masked_fill (torch.eye (int64 net.Vocab, dtype = torch.ScalarType.Bool), Double.NegativeInfinity)
    else
        logits

let private options space drop batch =
    { SweepOptions.Default with Space = space; DropDiagonal = drop; BatchSize = batch }

let private same (a: Tensor) (b: Tensor) = a.shape = b.shape && a.eq(b).all().item<bool> ()

let private plainTopK (k: int) (rows: Tensor) =
    let struct (values, ids) = rows.topk (k, dim = 1)
    values, ids

let blocks =
    testList
        "top-k by blocks"
        [
            for g in [ 8; 16; 64 ] do
                for k in [ 1; 7; 40 ] do
                    test (sprintf "= a plain top-k on distinct values (block %d, k %d, padded rows)" g k) {
                        use _ = torch.NewDisposeScope()
                        torch.manual_seed 5L |> ignore
                        // 4,099 columns: not a multiple of any block, so the rows are padded with −∞.
                        let rows = torch.randn ([| 6L; 4099L |], dtype = torch.float64)
                        rows.[2L, 17L] <- torch.tensor Double.NegativeInfinity
                        let values, ids = Sweeps.topKRows (Some g) k rows
                        let expectedValues, expectedIds = plainTopK k rows
                        Expect.isTrue (same values expectedValues) "the same values, best first"
                        Expect.isTrue (same ids expectedIds) "the same ids"
                    }

            test "ties: the same values as a plain top-k, ids of equal values, each id once" {
                use _ = torch.NewDisposeScope()
                torch.manual_seed 6L |> ignore
                // Values 0..9 only: thousands of ties, and the k-th value ties across many blocks.
                let rows = torch.randint (10L, [| 5L; 4096L |], dtype = torch.float32)
                for k in [ 1; 30; 100 ] do
                    let values, ids = Sweeps.topKRows (Some 16) k rows
                    let expectedValues, _ = plainTopK k rows
                    Expect.isTrue (same values expectedValues) (sprintf "values, k = %d" k)
                    Expect.isTrue (same (rows.gather (1L, ids)) values) "each id holds its value"
                    for r in 0L .. 4L do
                        let distinct = ids.[r].unique () |> fun struct (u, _, _) -> u.shape.[0]
                        Expect.equal distinct (int64 k) "no id twice in a row"
            }

            test "the automatic choice agrees with a plain top-k, and bad k fails clearly" {
                use _ = torch.NewDisposeScope()
                torch.manual_seed 7L |> ignore
                let rows = torch.randn ([| 3L; 50257L |])
                let values, ids = Sweeps.topKRows None 100 rows
                let expectedValues, expectedIds = plainTopK 100 rows
                Expect.isTrue (same values expectedValues) "values"
                Expect.isTrue (same ids expectedIds) "ids"
                Expect.throwsWith<IndexRangeException>
                    [ "1..50257"; "got 0" ]
                    (fun () -> Sweeps.topKRows None 0 rows |> ignore)
                    "k = 0"
            }
        ]

let kernel =
    testList
        "sweep kernel"
        [
            for shifted in [ false; true ] do
                test (sprintf "log-sum-exp = torch's logsumexp of each row (float32, shifted %b)" shifted) {
                    use _ = torch.NewDisposeScope()
                    use net =
                        SyntheticNets.gpt2Like 22 { SyntheticNets.small with Vocab = 3000; Width = 8 } torch.float32
                    use workspace = Sweeps.workspace net 64
                    torch.manual_seed 8L |> ignore
                    // Rows of scale 500 push the row maxima past the unshifted range (exp would overflow float32).
                    let scale = if shifted then 500.0 else 1.0
                    let x = torch.randn ([| 40L; 8L |]) * scale
                    let first = torch.arange (40L, dtype = torch.int64)
                    let batch = Sweeps.batch workspace true x first
                    let rows = Sweeps.logitRows batch
                    Expect.tensorClose
                        { Absolute = 1e-4 * scale; Relative = 1e-5 }
                        (Sweeps.logSumExp batch)
                        (rows.logsumexp (1L, false))
                        "lse"
                    Expect.isTrue (rows.diagonal().isneginf().all().item<bool> ()) "the diagonal is −∞"
                    let probabilities = torch.empty ([| 40L; 3000L |])
                    Sweeps.writeRows true probabilities batch
                    Expect.tensorClose { Absolute = 1e-6; Relative = 1e-4 } probabilities (rows.softmax 1L) "softmax"
                    Expect.throwsWith<InvalidPlanException>
                        [ "logit rows first" ]
                        (fun () -> Sweeps.logitRows batch |> ignore)
                        "logits after probabilities"
                }

            test "logit rows are a copy: the next batch does not change them, also for one first token" {
                use _ = torch.NewDisposeScope()
                use net = wide64 true
                use workspace = Sweeps.workspace net 8
                let x = torch.randn ([| 1L; 8L |], dtype = torch.float64)
                let first = torch.tensor ([| 3L |], dtype = torch.int64)
                let rows = Sweeps.logitRows (Sweeps.batch workspace false x first)
                let kept = rows.clone ()
                Sweeps.batch workspace false (x * 2.0) first |> ignore
                Expect.isTrue (same rows kept) "unchanged"
                Expect.tensorClose Accuracy.Float64 rows (Decoder.logits net x) "U·x + b"
            }

            for space, drop in [ ScoreSpace.Probability, false; ScoreSpace.Probability, true; ScoreSpace.Logit, true ] do
                test (
                    sprintf "a wide vocabulary's row top-k = top-k of the full table (%A, drop diagonal %b)" space drop
                ) {
                    use _ = torch.NewDisposeScope()
                    use net = wide64 true
                    let readout = Readouts.mlpPath net 1
                    // 700 does not divide 4,500: the last batch is short.
                    use best = Bigrams.rowTopK net readout 9 (options space drop 700)
                    let logits = table net readout drop
                    let ranked =
                        match space with
                        | ScoreSpace.Probability -> logits.softmax 1L
                        | ScoreSpace.Logit -> logits
                    let values, ids = plainTopK 9 ranked
                    Expect.tensorClose Accuracy.Float64 best.Scores values "scores"
                    Expect.isTrue (same best.Ids ids) "ids"
                }

            for space in [ ScoreSpace.Probability; ScoreSpace.Logit ] do
                test (
                    sprintf
                        "a wide vocabulary's global top-k = brute-force sort, few and many candidate rows (%A)"
                        space
                ) {
                    use _ = torch.NewDisposeScope()
                    use net = wide64 false
                    let logits = table net Readouts.embedding true
                    let ranked =
                        match space with
                        | ScoreSpace.Probability -> logits.log_softmax 1L
                        | ScoreSpace.Logit -> logits
                    let v = int64 net.Vocab
                    // k = 3 leaves few rows above the threshold per batch; k = 2,000 keeps most rows candidates.
                    for k in [ 3; 2000 ] do
                        let best = Bigrams.globalTopK net Readouts.embedding k (options space true 512)
                        let struct (expected, at) = ranked.flatten().topk k
                        let expectedScores =
                            match space with
                            | ScoreSpace.Probability -> expected.exp ()
                            | ScoreSpace.Logit -> expected
                        Expect.equal
                            (best |> Array.map (fun q -> int64 q.From * v + int64 q.To))
                            (at.data<int64>().ToArray())
                            (sprintf "pairs, best first (k = %d)" k)
                        Expect.tensorClose
                            Accuracy.Float64
                            (torch.tensor (best |> Array.map (fun q -> q.Score), dtype = torch.float64))
                            expectedScores
                            "scores"
                }

            test "a wide vocabulary's mass and full table = brute force (bias, diagonal dropped)" {
                use _ = torch.NewDisposeScope()
                use net = wide64 true
                let readout = Readouts.mlpPath net 1
                let probabilities = (table net readout true).softmax 1L
                let set = [| 0; 5; 4499; 5 |]
                let expected =
                    probabilities
                        .index_select(1L, torch.tensor ([| 0L; 5L; 4499L |], dtype = torch.int64))
                        .sum()
                        .item<float> ()
                    / float net.Vocab
                Expect.floatClose
                    Accuracy.high
                    (Bigrams.mass net readout set (options ScoreSpace.Probability true 1000))
                    expected
                    "mass"
                use full =
                    Bigrams.full net readout { options ScoreSpace.Probability true 1000 with MaxFullBytes = 1L <<< 30 }
                Expect.tensorClose Accuracy.Float64 full probabilities "full table"
            }
        ]

[<Tests>]
let tests = testList "sweeps" [ blocks; kernel ]
