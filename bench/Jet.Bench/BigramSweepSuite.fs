/// Vocabulary sweeps of every path kind (embedding, one MLP, one attention layer, a three-layer chain; global top-100
/// by probability, plus row top-k and mass on the embedding) on a randomly initialised GPT-2-small-shaped network,
/// against this machine's TorchSharp matmul peak measured in the same run. `JET_BENCH_SWEEP_BATCHES=N` times only the
/// first N batches of each sweep (the per-batch figures are medians either way; wall times then cover N batches).
module Jet.Bench.BigramSweepSuite

open System
open System.Diagnostics
open System.Runtime.InteropServices
open System.Threading
open TorchSharp
open Jet.Core
open Jet.Core.Apps
open Jet.Core.Tests
open Jet.Bench.Measure

let private vocab, width = 50257, 768

// glibc keeps freed heap pages; returning them first makes "resident before" mean live data only.
[<DllImport("libc", EntryPoint = "malloc_trim")>]
extern int private mallocTrim(unativeint pad)

let trim () =
    GC.Collect()
    GC.WaitForPendingFinalizers()
    try
        mallocTrim 0un |> ignore
    with _ ->
        ()

/// GFLOP/s of the product of x [m, k] and W [n, k] in the faster of the layouts x·Wᵀ and W·xᵀ (the sweep's
/// own matmul shape), median over runs.
let matmulGflops (m: int64) (k: int64) (n: int64) (repeats: int) =
    use scope = torch.NewDisposeScope()
    let x = torch.randn ([| m; k |])
    let w = torch.randn ([| n; k |])
    let rowMajor = medianMs 1 repeats (fun () -> (use _ = torch.nn.functional.linear (x, w) in ()))
    let columnMajor = medianMs 1 repeats (fun () -> (use _ = w.matmul (x.t ()) in ()))
    2.0 * float m * float k * float n / (min rowMajor columnMajor / 1000.0) / 1e9

/// Sweeps once, or only its first `limit` batches. After every batch (in the progress callback) it times one bare
/// matmul of that batch's unembedding shape, so each batch is paired with a peak measured at the same moment: on a
/// shared machine the load changes from minute to minute, and paired ratios are robust to it. Returns per-batch
/// seconds and per-reference seconds (the reference time is not counted in the batches).
let pairedSweep (run: SweepOptions -> unit) (reference: unit -> unit) (batch: int) (limit: int option) =
    let batches, references = Collections.Generic.List<float>(), Collections.Generic.List<float>()
    use stop = new CancellationTokenSource()
    let clock = Stopwatch.StartNew()
    let progress =
        { new IProgress<int64> with
            member _.Report _ =
                batches.Add clock.Elapsed.TotalSeconds
                clock.Restart()
                reference ()
                references.Add clock.Elapsed.TotalSeconds
                if limit |> Option.exists (fun n -> batches.Count >= n) then
                    stop.Cancel()
                clock.Restart()
        }
    try
        run { SweepOptions.Default with BatchSize = batch; Progress = Some progress; Cancellation = stop.Token }
    with :? OperationCanceledException ->
        ()
    batches.ToArray(), references.ToArray()

/// The sweep as it was before the `Sweeps` kernel, kept to measure the difference in the same run: per batch U·xᵀ
/// into a fresh buffer, a transposing copy, a log-softmax, then the same row filter and merge for the global top-k.
let private globalTopKBefore (net: Net) (path: Readout) (k: int) (options: SweepOptions) =
    use scope = torch.NewDisposeScope()
    let v = int64 net.Vocab
    let best = ref (torch.empty ([| 0L |], dtype = net.DType), torch.empty ([| 0L |], dtype = torch.int64))
    Vocabulary.sweep net.Vocab options.BatchSize options.Progress options.Cancellation (fun start count ->
        let first = torch.arange (start, start + count, dtype = torch.int64)
        let ranked = (Decoder.rows net (Readouts.normedRows net path first)).log_softmax 1L
        let bestScores, bestFlat = best.Value
        let rows =
            if bestScores.shape.[0] < int64 k then
                None
            else
                let struct (rowMax, _) = ranked.max 1L
                Some(rowMax.gt(bestScores.[int64 (k - 1)]).nonzero().squeeze 1L)
        match rows with
        | Some r when r.shape.[0] = 0L -> ()
        | _ ->
            let candidates, firsts =
                match rows with
                | Some r -> ranked.index_select (0L, r), first.index_select (0L, r)
                | None -> ranked, first
            let struct (values, indices) = candidates.topk (k, dim = 1)
            let allScores = torch.cat ([| bestScores; values.flatten () |], 0L)
            let allFlat = torch.cat ([| bestFlat; (firsts.unsqueeze 1L * v + indices).flatten () |], 0L)
            let struct (mergedScores, mergedAt) = allScores.topk (int (min (int64 k) allScores.shape.[0]))
            best.Value <-
                mergedScores.MoveToOuterDisposeScope(), allFlat.index_select(0L, mergedAt).MoveToOuterDisposeScope())

let private median (xs: float[]) =
    let sorted = Array.sort xs
    sorted.[sorted.Length / 2]

let run () =
    Native.ensure ()
    use _ = torch.no_grad ()
    let limit =
        match Int32.TryParse(Environment.GetEnvironmentVariable "JET_BENCH_SWEEP_BATCHES") with
        | true, n when n >= 2 -> Some n
        | _ -> None
    let built = Stopwatch.StartNew()
    use net =
        SyntheticNets.gpt2Like
            2024
            {
                Vocab = vocab
                Width = width
                Heads = 12
                Blocks = 12
                MaxPositions = 1024
                Tied = true
                UnembedBias = false
            }
            torch.float32
    let weightsMb = float (net.Parameters.ScalarCount * 4L) / 1048576.0
    emit
        {|
            suite = "bigram-sweep"
            record = "model"
            vocab = vocab
            width = width
            blocks = 12
            parameters = net.Parameters.ScalarCount
            weights_mb = weightsMb
            build_s = built.Elapsed.TotalSeconds
            threads = torch.get_num_threads ()
            batches_per_sweep = limit |> Option.defaultValue 0
        |}
    // The peak: the best GFLOP/s of the sweep's own matmul shape and of a large square product. The machine is
    // shared, so the peak is measured again before every sweep; each sweep is compared with that peak, with the
    // best peak seen in the run, and batch by batch with the same product timed right after it.
    let measurePeak () =
        let shapes = [ 512L, int64 width, int64 vocab; 2048L, 2048L, 2048L ]
        [
            for m, k, n in shapes ->
                let g = matmulGflops m k n 3
                emit {| suite = "bigram-sweep"; record = "matmul"; m = m; k = k; n = n; gflops = g |}
                g
        ]
        |> List.max
    let peak = ref 0.0
    let d = float width
    let v = float vocab
    // FLOPs per first token: the unembedding 2·d·V, and each layer on a one-token input: an MLP's two d×4d
    // products 16·d², attention's QKV and output projections 8·d² (its one-token scores are negligible).
    let flopsPerToken (path: Readout) =
        let layers =
            match path with
            | Readout.Path(_, steps) ->
                steps
                |> List.sumBy (fun step ->
                    match step with
                    | PathStep.Layer l ->
                        match net.Spec.Layers.[l - 1].Kind with
                        | LayerKind.Attention -> 8.0 * d * d
                        | _ -> 16.0 * d * d
                    | PathStep.MlpBranch _ -> 16.0 * d * d
                    // Per row: the fused q, k, v projection of one head's layer and W_O,h (GPT-2 shape).
                    | PathStep.Head _ -> 8.0 * d * d)
            | Readout.Expansion _ -> 0.0
        2.0 * d * v + layers
    let sweep (name: string) (path: Readout) (kind: string) (sweepRun: SweepOptions -> unit) (batch: int) =
        let peakNow = measurePeak ()
        peak.Value <- max peak.Value peakNow
        // Memory first, from a sweep of its own: the paired run below adds its reference products to the peak.
        trim ()
        let before = currentMb ()
        resetPeak ()
        limitedSweep sweepRun { SweepOptions.Default with BatchSize = batch } limit |> ignore
        let peakMb = peakMb ()
        use scope = torch.NewDisposeScope()
        let x = torch.randn ([| int64 batch; int64 width |])
        let u = net.Parameters.[net.Spec.Unembedding.Weight]
        // The bare product U·xᵀ of the batch (the faster layout), as the old sweep computed it.
        let reference () = (use _ = u.matmul (x.t ()) in ())
        let perBatch, perReference = pairedSweep sweepRun reference batch limit
        // Full batches only: the last one of a whole sweep is short.
        let full =
            if limit.IsSome then
                perBatch.Length
            else
                perBatch.Length - 1
        let batchFlops = flopsPerToken path * float batch
        let referenceFlops = 2.0 * float batch * d * v
        let ratios =
            Array.init full (fun i -> (batchFlops / perBatch.[i]) / (referenceFlops / perReference.[i]))
        let wall = Array.sum perBatch
        let medianGflops = batchFlops / median perBatch.[.. full - 1] / 1e9
        emit
            {|
                suite = "bigram-sweep"
                record = "sweep"
                path = name
                notation = Print.readout path
                sweep = kind
                batch = batch
                batches = perBatch.Length
                wall_s = wall
                median_batch_s = median perBatch.[.. full - 1]
                gflops_overall = flopsPerToken path * float (min vocab (perBatch.Length * batch)) / wall / 1e9
                gflops_median_batch = medianGflops
                fraction_of_run_peak = medianGflops / peak.Value
                paired_matmul_gflops_median = referenceFlops / median perReference.[.. full - 1] / 1e9
                fraction_of_paired_peak_median = median ratios
                fraction_of_paired_peak_p25 = (Array.sort ratios).[ratios.Length / 4]
                peak_matmul_gflops_before = peakNow
                best_peak_matmul_gflops = peak.Value
                rss_before_mb = before
                peak_rss_mb = peakMb
                growth_mb = peakMb - before
                weights_mb = weightsMb
                batch_buffer_mb = float batch * v * 4.0 / 1048576.0
            |}
        median ratios
    let globalTop (path: Readout) (o: SweepOptions) = Bigrams.globalTopK net path 100 o |> ignore
    let paths =
        [
            "embed", Readouts.embedding
            "mlp1", Readouts.parse net "emb>mlp1"
            "attn1", Readouts.parse net "emb>attn1"
            "attn1>mlp1>mlp2", Readouts.parse net "emb>attn1>mlp1>mlp2"
        ]
    let batches =
        match Environment.GetEnvironmentVariable "JET_BENCH_SWEEP_BATCH" with
        | null
        | "" -> [ 512 ]
        | text -> text.Split(',') |> Array.map int |> List.ofArray
    for b in batches do
        sweep
            "embed"
            Readouts.embedding
            "global top-100, probability, before the Sweeps kernel"
            (globalTopKBefore net Readouts.embedding 100)
            b
        |> ignore
        for name, path in paths do
            sweep name path "global top-100, probability" (globalTop path) b |> ignore
        let embed = Readouts.embedding
        sweep "embed" embed "row top-10, probability" (fun o -> (use _ = Bigrams.rowTopK net embed 10 o in ())) b
        |> ignore
        sweep "embed" embed "mass of 100 tokens" (fun o -> Bigrams.mass net embed [| 0..99 |] o |> ignore) b
        |> ignore
