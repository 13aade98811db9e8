/// Skip-grams of every head of one GPT-2-small-shaped layer (V = 50,257) and trigrams of 256 × 50,257 pairs through
/// one attention layer, on a randomly initialised network: pairs per second, GFLOP/s against the matmul peak
/// measured in the same run, peak memory, and the saving of the shared trigram rows over a fresh two-token forward per
/// pair. `JET_BENCH_HEAD_BATCHES=N` (default 6) times the first N batches of each sweep; the full sweeps' costs are
/// extrapolated from them.
module Jet.Bench.HeadNGramSuite

open System
open System.Diagnostics
open System.Threading
open TorchSharp
open Jet.Core
open Jet.Core.Apps
open Jet.Core.Tests
open Jet.Bench.Measure

let private vocab, width, heads = 50257, 768, 12

/// Seconds of each of the first `limit` batches of a sweep (stopped by cancellation after them).
let private timedBatches (run: SweepOptions -> unit) (batch: int) (limit: int) =
    let times = Collections.Generic.List<float>()
    use stop = new CancellationTokenSource()
    let clock = Stopwatch.StartNew()
    let progress =
        { new IProgress<int64> with
            member _.Report _ =
                times.Add clock.Elapsed.TotalSeconds
                if times.Count >= limit then
                    stop.Cancel()
                clock.Restart()
        }
    try
        run { SweepOptions.Default with BatchSize = batch; Progress = Some progress; Cancellation = stop.Token }
    with :? OperationCanceledException ->
        ()
    times.ToArray()

let private median (xs: float[]) =
    let sorted = Array.sort xs
    sorted.[sorted.Length / 2]

let run () =
    Native.ensure ()
    use _ = torch.no_grad ()
    let limit =
        match Int32.TryParse(Environment.GetEnvironmentVariable "JET_BENCH_HEAD_BATCHES") with
        | true, n when n >= 2 -> n
        | _ -> 6
    use net =
        SyntheticNets.gpt2Like
            2024
            {
                Vocab = vocab
                Width = width
                Heads = heads
                Blocks = 1
                MaxPositions = 1024
                Tied = true
                UnembedBias = false
            }
            torch.float32
    let d, v = float width, float vocab
    let peak () = BigramSweepSuite.matmulGflops 512L (int64 width) (int64 vocab) 3
    let batch = 512
    let u = net.Parameters.[net.Spec.Unembedding.Weight]
    let x = torch.randn ([| int64 batch; int64 width |])
    // The bare product U·xᵀ of one batch, timed right after each batch (the machine is shared: paired ratios are
    // robust to its load changing), `times` over for the skip-grams' heads.
    let reference (times: int) () =
        for _ in 1..times do
            (use _ = u.matmul (x.t ()) in ())
    let productFlops = 2.0 * float batch * d * v
    // Skip-grams: per first token, every head's U product (2·d·V each), the fused QKV projection (6·d²) and each
    // head's W_O slice (2·d·d/heads per head).
    let peakSkip = peak ()
    BigramSweepSuite.trim ()
    let before = currentMb ()
    resetPeak ()
    let skipRun (o: SweepOptions) = SkipGrams.globalTopK net 1 [||] 100 o |> ignore
    let skip, skipReference = BigramSweepSuite.pairedSweep skipRun (reference heads) batch (Some limit)
    let skipPeakMb = peakMb ()
    let skipFlops = float batch * (float heads * 2.0 * d * v + 6.0 * d * d + 2.0 * d * d)
    let skipSeconds = median skip
    let skipRatios =
        Array.init skip.Length (fun i -> (skipFlops / skip.[i]) / (float heads * productFlops / skipReference.[i]))
    emit
        {|
            suite = "head-ngrams"
            record = "skipgrams"
            sweep = "all 12 heads of layer 1, global top-100 per head, probability"
            batch = batch
            batches_timed = skip.Length
            median_batch_s = skipSeconds
            head_rows_per_s = float (heads * batch) / skipSeconds
            gflops = skipFlops / skipSeconds / 1e9
            peak_matmul_gflops = peakSkip
            fraction_of_peak = skipFlops / skipSeconds / 1e9 / peakSkip
            fraction_of_paired_peak_median = median skipRatios
            full_sweep_s_estimate = skipSeconds * v / float batch
            rss_before_mb = before
            peak_rss_mb = skipPeakMb
        |}
    // Trigrams through emb>attn1: per pair the U product, and the attention layer on two positions (≈ 2 × 8·d²; the
    // first position is recomputed per pair), its norms negligible. One first token per batch of 512 second tokens,
    // so each batch is one progress report; the per-pair cost is the same as over all 50,257 second tokens.
    let path = Readouts.parse net "emb>attn1"
    let first = [| 0 .. limit - 1 |]
    let second = [| 0 .. batch - 1 |]
    let peakTri = peak ()
    BigramSweepSuite.trim ()
    let before = currentMb ()
    resetPeak ()
    let triRun (o: SweepOptions) = Trigrams.globalTopK net path first second 100 o |> ignore
    let tri, triReference = BigramSweepSuite.pairedSweep triRun (reference 1) batch None
    let triPeakMb = peakMb ()
    let pairFlops = 2.0 * d * v + 16.0 * d * d
    let sharedPerPair = median tri / float batch
    let triRatios =
        Array.init tri.Length (fun i -> (pairFlops * float batch / tri.[i]) / (productFlops / triReference.[i]))
    // A fresh two-token forward of the path per pair (no sharing), then the same kernel.
    use workspace = Sweeps.workspace net batch
    let ids = torch.arange (int64 batch, dtype = torch.int64)
    let zeros = torch.zeros ([| int64 batch |], dtype = torch.int64)
    let fresh =
        medianMs 1 3 (fun () ->
            use _ = torch.NewDisposeScope()
            let x = Trigrams.directRows net path zeros ids
            Sweeps.rowTopK false 1 (Sweeps.batch workspace false x ids) |> ignore)
        / 1000.0
        / float batch
    let rowsOnly =
        medianMs 1 3 (fun () ->
            use _ = torch.NewDisposeScope()
            Trigrams.directRows net path zeros ids |> ignore)
        / 1000.0
        / float batch
    emit
        {|
            suite = "head-ngrams"
            record = "trigrams"
            sweep = "emb>attn1, global top-100, probability"
            pairs_timed = tri.Length * batch
            fraction_of_paired_peak_median = median triRatios
            pairs_per_s = 1.0 / sharedPerPair
            gflops = pairFlops / sharedPerPair / 1e9
            peak_matmul_gflops = peakTri
            fraction_of_peak = pairFlops / sharedPerPair / 1e9 / peakTri
            fresh_forward_pairs_per_s = 1.0 / fresh
            fresh_rows_only_s_per_pair = rowsOnly
            saving_vs_fresh = 1.0 - sharedPerPair / fresh
            sweep_256_x_50257_s_estimate = sharedPerPair * 256.0 * v
            full_vocab_squared_hours_estimate = sharedPerPair * v * v / 3600.0
            rss_before_mb = before
            peak_rss_mb = triPeakMb
            first_set = first.Length
        |}
