/// Research-size models on one machine: a random Llama-shaped bfloat16 checkpoint (TinyLlama-1.1B by default,
/// Llama-2-7B opt-in, three shards with an index) written once, then load time against reading the files once, peak
/// RSS against the weight bytes, a forward pass on 32 tokens (what `jet run` computes), the order-1 jet lens over every
/// stream (`jet lens --order 1`), an E→U global top-100 bigram sweep against the float32 matmul peak measured in the
/// same run, and bfloat16 against float32 matmuls on this CPU. The weights stay bfloat16; every layer computes in
/// float32, widened just in time. Models are written under $JETDSL_BENCH_MODELS (default: the temp folder) and kept.
module Jet.Bench.LargeModelSuite

open System
open System.Diagnostics
open System.IO
open System.Text.Json
open TorchSharp
open Jet.Core
open Jet.Core.Apps
open Jet.Core.Models
open Jet.Bench.Measure
open Jet.Tests.RandomLlama

/// Where a named model is written (and found again by later runs).
let private directoryOf (name: string) =
    let root =
        match Environment.GetEnvironmentVariable "JETDSL_BENCH_MODELS" with
        | null
        | "" -> Path.Combine(Path.GetTempPath(), "jetdsl-bench-models")
        | dir -> dir
    Path.Combine(root, name)

/// Writes the checkpoint unless a complete one of the same shape is there, with the Llama-2 tokenizer (vocabulary
/// 32,000, as TinyLlama's) from the shared fixtures. Returns the directory and the seconds spent writing.
let private prepare (name: string) (shape: LlamaShape) (shards: int) =
    let dir = directoryOf name
    let marker = Path.Combine(dir, ".complete")
    let expected = JsonSerializer.Serialize {| shape = shape; shards = shards |}
    let clock = Stopwatch.StartNew()
    if not (File.Exists marker && File.ReadAllText marker = expected) then
        if Directory.Exists dir then
            Directory.Delete(dir, true)
        write dir shape shards 1
        let fixtures = Path.Combine(Jet.Tests.Fixtures.directory.Value, "llama2-tokenizer-json")
        File.Copy(Path.Combine(fixtures, "llama_tokenizer.json"), Path.Combine(dir, "tokenizer.json"))
        File.Copy(Path.Combine(fixtures, "llama_tokenizer_config.json"), Path.Combine(dir, "tokenizer_config.json"))
        File.WriteAllText(marker, expected)
    dir, clock.Elapsed.TotalSeconds

/// Seconds to read every weight file once, start to end, into a reused buffer.
let private readOnce (dir: string) =
    let buffer = Array.zeroCreate<byte> (16 <<< 20)
    let clock = Stopwatch.StartNew()
    for file in Directory.GetFiles(dir, "*.safetensors") do
        use stream =
            new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan)
        while stream.Read(buffer, 0, buffer.Length) > 0 do
            ()
    clock.Elapsed.TotalSeconds

/// GFLOP/s of x [m, k] · W [n, k]ᵀ for a random x, median of `repeats` runs after one warm-up.
let private productGflops (m: int64) (w: Tensor) (repeats: int) =
    use scope = torch.NewDisposeScope()
    let n, k = w.shape.[0], w.shape.[1]
    let x = torch.randn([| m; k |]).to_type w.dtype
    let ms = medianMs 1 repeats (fun () -> (use _ = torch.nn.functional.linear (x, w) in ()))
    2.0 * float m * float k * float n / (ms / 1000.0) / 1e9, ms

/// GFLOP/s of x [m, k] · W [n, k]ᵀ in `dtype` for random x and W.
let private matmulGflops (dtype: torch.ScalarType) (m: int64) (k: int64) (n: int64) (repeats: int) =
    use w = torch.randn([| n; k |]).to_type dtype
    productGflops m w repeats

/// bfloat16 against float32 products of one layer's shape on this CPU: speed, and the error of each against float64.
let private halfMatmul (suite: string) (d: int64) (inner: int64) =
    use scope = torch.NewDisposeScope()
    let m = 32L
    let x = torch.randn ([| m; d |], dtype = torch.float64)
    let w = torch.randn ([| inner; d |], dtype = torch.float64) * 0.02
    let exact = torch.nn.functional.linear (x, w)
    let error (dtype: torch.ScalarType) =
        let y = torch.nn.functional.linear (x.to_type dtype, w.to_type dtype)
        ((y.to_type torch.float64 - exact).abs().max () / exact.abs().max ()).item<float> ()
    let g32, ms32 = matmulGflops torch.float32 m d inner 5
    let g16, ms16 = matmulGflops torch.bfloat16 m d inner 3
    emit
        {|
            suite = suite
            record = "bf16-vs-f32-matmul"
            m = m
            k = d
            n = inner
            float32_ms = ms32
            bfloat16_ms = ms16
            bfloat16_slowdown = ms16 / ms32
            float32_gflops = g32
            bfloat16_gflops = g16
            float32_max_rel_error = error torch.float32
            bfloat16_max_rel_error = error torch.bfloat16
        |}

/// Every measurement on one model.
let private measure (suite: string) (name: string) (shape: LlamaShape) (shards: int) =
    let dir, writeS = prepare name shape shards
    let bytes = weightBytes shape
    let readS = readOnce dir
    // The tokenizer alone, timed apart: Model.load reads it too, but it is not weight loading.
    let tokenizerS =
        let clock = Stopwatch.StartNew()
        Model.tokenizer dir |> ignore
        clock.Elapsed.TotalSeconds
    settleNative ()
    let baseline = currentMb ()
    resetPeak ()
    let clock = Stopwatch.StartNew()
    use model = Model.load dir torch.float32 torch.CPU
    let loadS = clock.Elapsed.TotalSeconds
    let loadPeak = peakMb ()
    emit
        {|
            suite = suite
            record = "load"
            weights_gb = float bytes / 1e9
            files = Directory.GetFiles(dir, "*.safetensors").Length
            write_s = writeS
            read_once_s = readS
            load_s = loadS
            load_over_read = loadS / readS
            tokenizer_s = tokenizerS
            weights_load_over_read = (loadS - tokenizerS) / readS
            memory_mapped = true
            storage = string model.Net.StorageDType
            compute = string model.Net.DType
            baseline_rss_mb = baseline
            load_peak_rss_mb = loadPeak
            load_peak_growth_over_weights = (loadPeak - baseline) * 1048576.0 / float bytes
        |}
    // 32 tokens of an ordinary prompt, cut to exactly 32.
    let prompt = String.replicate 8 "The quick brown fox jumps over the lazy dog while the cat sleeps. "
    use all = Model.encode model prompt
    use tokens = all.narrow (1L, 0L, 32L)
    // $JET_BENCH_REPEATS timed passes after one warm-up (default 3).
    let repeats =
        match Int32.TryParse(Environment.GetEnvironmentVariable "JET_BENCH_REPEATS") with
        | true, n when n > 0 -> n
        | _ -> 3
    let forward () =
        use trace = Trace.run model.Net tokens
        use _ = Trace.logits trace
        ()
    // The first pass reads every mapped page it needs and fills the widening buffers; later passes reuse them.
    let firstForwardMs =
        let clock = Stopwatch.StartNew()
        forward ()
        clock.Elapsed.TotalMilliseconds
    let forwardMs = medianMs 0 repeats forward
    let peakAfterForwardMb = peakMb ()
    let lensMs =
        medianMs 0 1 (fun () ->
            use result = IterativeLens.run model.Net tokens { LensOptions.Default with Order = 1 }
            ())
    let peakAfterLensMb = peakMb ()
    emit
        {|
            suite = suite
            record = "run-and-lens"
            tokens = 32
            first_forward_ms = firstForwardMs
            forward_ms = forwardMs
            lens_order1_all_streams_ms = lensMs
            lens_over_forward = lensMs / forwardMs
            widened_mb = float model.Net.Parameters.WidenedBytes / 1e6
        |}
    // The float32 peak in the sweep's own product shape (a batch of rows against the unembedding), then the sweep.
    let d, v = int64 shape.Hidden, int64 shape.Vocab
    let batch = SweepOptions.Default.BatchSize
    // Against the model's own widened unembedding: a second [V, d] float32 matrix would add 0.5 GB to the peak RSS.
    let unembedding = model.Net.Parameters.[model.Net.Spec.Unembedding.Weight]
    let peakBeforeSweepMb = peakMb ()
    let peak, _ = productGflops (int64 batch) unembedding 3
    // $JET_BENCH_SWEEP_BATCHES=N stops after N batches (the rate is per batch; a whole sweep is V / batch of them).
    let limit =
        match Int32.TryParse(Environment.GetEnvironmentVariable "JET_BENCH_SWEEP_BATCHES") with
        | true, n when n > 0 -> Some n
        | _ -> None
    let sweepClock = Stopwatch.StartNew()
    let batches =
        limitedSweep
            (fun options -> Bigrams.globalTopK model.Net Readouts.embedding 100 options |> ignore)
            SweepOptions.Default
            limit
    let sweepS = sweepClock.Elapsed.TotalSeconds
    let rows = min v (int64 batches * int64 batch)
    let sweepGflops = 2.0 * float rows * float v * float d / sweepS / 1e9
    let peakAfter, _ = productGflops (int64 batch) unembedding 3
    let peakAfterSweepMb = peakMb ()
    emit
        {|
            suite = suite
            record = "sweep-e-u-top100"
            vocab = v
            rows_swept = rows
            sweep_s = sweepS
            sweep_gflops = sweepGflops
            float32_matmul_gflops_before = peak
            float32_matmul_gflops_after = peakAfter
            share_of_peak = sweepGflops / max peak peakAfter
        |}
    // The peak of the process so far (VmHWM), after each step: the mapped weights' pages count once read.
    emit
        {|
            suite = suite
            record = "memory"
            weights_mb = float bytes / 1048576.0
            baseline_rss_mb = baseline
            peak_after_load_mb = loadPeak
            peak_after_forward_mb = peakAfterForwardMb
            peak_after_lens_mb = peakAfterLensMb
            peak_after_sweep_mb = max peakBeforeSweepMb peakAfterSweepMb
            peak_rss_mb = peakMb ()
            peak_growth_mb = peakMb () - baseline
            target_mb = float bytes / 1048576.0 + 3072.0
            within_target = peakMb () <= float bytes / 1048576.0 + 3072.0
        |}
    // After the memory record: its float64 reference product is the bench's own memory, not the library's.
    halfMatmul suite d (int64 shape.Intermediate)

    // Last (it loads a second copy): the same pass on weights converted to float32 at load (twice the memory, no
    // widening), where memory allows.
    if 2L * bytes > Memory.available () / 2L then
        emit
            {|
                suite = suite
                record = "widening-overhead"
                skipped =
                    sprintf
                        "a float32 copy (%.1f GB) does not fit in half the memory available"
                        (2.0 * float bytes / 1e9)
            |}
    else
        let float32StorageMs =
            settleNative ()
            use converted =
                Model.loadWith
                    { LoadOptions.Default with StorageDType = Some torch.float32 }
                    dir
                    torch.float32
                    torch.CPU
            medianMs 1 repeats (fun () ->
                use trace = Trace.run converted.Net tokens
                use _ = Trace.logits trace
                ())
        emit
            {|
                suite = suite
                record = "widening-overhead"
                forward_ms = forwardMs
                forward_float32_storage_ms = float32StorageMs
                widening_overhead = forwardMs / float32StorageMs
            |}

/// The TinyLlama-1.1B-shaped suite (one 2.2 GB file).
let runTiny () = measure "large-tinyllama" "tinyllama-1.1b-bf16" tinyLlama 1

/// The Llama-2-7B-shaped suite (three shards with an index, 13.5 GB): opt-in, it needs 14 GB of disk and about
/// 17 GB of memory.
let run7b () = measure "large-llama2-7b" "llama2-7b-bf16" llama2_7b 3
