/// Full-vocabulary jet bigram sweeps (embedding → decoder and embedding → MLP₁ → decoder, global top-100) on a
/// randomly initialised GPT-2-small-shaped network, against this machine's TorchSharp matmul peak.
module Jet.Bench.BigramSweepSuite

open System
open System.Diagnostics
open System.Runtime.InteropServices
open TorchSharp
open Jet.Core
open Jet.Core.Apps
open Jet.Core.Tests
open Jet.Bench.Measure

let private vocab, width = 50257, 768

// glibc keeps freed heap pages; returning them first makes "resident before" mean live data only.
[<DllImport("libc", EntryPoint = "malloc_trim")>]
extern int private mallocTrim(unativeint pad)

let private trim () =
    GC.Collect()
    GC.WaitForPendingFinalizers()
    try
        mallocTrim 0un |> ignore
    with _ ->
        ()

/// GFLOP/s of the product of x [m, k] and W [n, k] in the faster of the layouts x·Wᵀ and W·xᵀ (the sweep's
/// own matmul shape), median over runs.
let private matmulGflops (m: int64) (k: int64) (n: int64) (repeats: int) =
    use scope = torch.NewDisposeScope()
    let x = torch.randn ([| m; k |])
    let w = torch.randn ([| n; k |])
    let rowMajor = medianMs 1 repeats (fun () -> (use _ = torch.nn.functional.linear (x, w) in ()))
    let columnMajor = medianMs 1 repeats (fun () -> (use _ = w.matmul (x.t ()) in ()))
    2.0 * float m * float k * float n / (min rowMajor columnMajor / 1000.0) / 1e9

/// Sweeps once. After every batch (in the progress callback) it times one bare matmul of that batch's unembedding
/// shape, so each batch is paired with a peak measured at the same moment: on a shared machine the load changes
/// from minute to minute, and paired ratios are robust to it. Returns per-batch seconds and per-reference seconds
/// (the reference time is not counted in the batches).
let private pairedSweep (run: SweepOptions -> unit) (reference: unit -> unit) (batch: int) =
    let batches, references = Collections.Generic.List<float>(), Collections.Generic.List<float>()
    let clock = Stopwatch.StartNew()
    let progress =
        { new IProgress<int64> with
            member _.Report _ =
                batches.Add clock.Elapsed.TotalSeconds
                clock.Restart()
                reference ()
                references.Add clock.Elapsed.TotalSeconds
                clock.Restart()
        }
    run { SweepOptions.Default with BatchSize = batch; Progress = Some progress }
    batches.ToArray(), references.ToArray()

let private median (xs: float[]) =
    let sorted = Array.sort xs
    sorted.[sorted.Length / 2]

let run () =
    Native.ensure ()
    use _ = torch.no_grad ()
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
        |}
    // The peak: the best GFLOP/s of the sweep's own matmul shape and of a large square product. The machine is
    // shared, so the peak is measured again right before every sweep; each sweep is compared with that peak and
    // with the best peak seen in the run.
    let measurePeak () =
        let shapes = [ 512L, int64 width, int64 vocab; 2048L, int64 width, int64 vocab; 2048L, 2048L, 2048L ]
        [
            for m, k, n in shapes ->
                let g = matmulGflops m k n 5
                emit {| suite = "bigram-sweep"; record = "matmul"; m = m; k = k; n = n; gflops = g |}
                g
        ]
        |> List.max
    let peak = ref 0.0
    let d = float width
    let v = float vocab
    // Multiply-adds of a whole sweep: the unembedding V·d·V, plus the MLP's two d×4d products per token.
    let flopsOf (path: Readout) =
        let unembed = 2.0 * v * d * v
        match path with
        | Readout.Path(_, []) -> unembed
        | _ -> unembed + 2.0 * v * (2.0 * d * 4.0 * d)
    let sweep (path: Readout) (batch: int) =
        let peakNow = measurePeak ()
        peak.Value <- max peak.Value peakNow
        // Memory first, from a sweep of its own: the paired run below adds its reference products to the peak.
        trim ()
        let before = currentMb ()
        resetPeak ()
        Bigrams.globalTopK net path 100 { SweepOptions.Default with BatchSize = batch } |> ignore
        let peakMb = peakMb ()
        use scope = torch.NewDisposeScope()
        let x = torch.randn ([| int64 batch; int64 width |])
        let u = net.Parameters.[net.Spec.Unembedding.Weight]
        // The same product in the faster of the two layouts (U·xᵀ, the one the sweep uses).
        let reference () = (use _ = u.matmul (x.t ()) in ())
        let perBatch, perReference =
            pairedSweep (fun o -> Bigrams.globalTopK net path 100 o |> ignore) reference batch
        // Full batches only: the last one is short.
        let full = perBatch.Length - 1
        let batchFlops = (flopsOf path) * float batch / v
        let referenceFlops = 2.0 * float batch * d * v
        let ratios =
            Array.init full (fun i -> (batchFlops / perBatch.[i]) / (referenceFlops / perReference.[i]))
        let wall = Array.sum perBatch
        let medianGflops = batchFlops / median perBatch.[.. full - 1] / 1e9
        emit
            {|
                suite = "bigram-sweep"
                record = "sweep"
                path = string path
                top = 100
                batch = batch
                wall_s = wall
                median_batch_s = median perBatch.[.. full - 1]
                gflops_overall = flopsOf path / wall / 1e9
                gflops_median_batch = medianGflops
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
    let batches = [ 512; 2048 ]
    let best = batches |> List.maxBy (fun b -> sweep Readouts.embedding b)
    sweep (Readouts.mlpPath net 1) best |> ignore
