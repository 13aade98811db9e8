/// Checkpoint loading: a randomly initialised GPT-2-small-sized checkpoint (124M parameters, float32) written to a
/// temporary directory, loaded with Model.load. Targets: load time ≤ 2× the time to read the file's bytes once;
/// peak memory added by loading < 1.3× the weights' size.
module Jet.Bench.CheckpointBench

#nowarn "9" // a native buffer for the read baseline

open System
open System.Diagnostics
open System.IO
open System.Text
open System.Text.Json
open System.Runtime.InteropServices
open Microsoft.FSharp.NativeInterop
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Bench.Measure

/// GPT-2 small: the shapes of every tensor GPT2LMHeadModel saves (head tied to wte, so not saved).
let private shapes =
    let d, inner, vocab, positions = 768L, 3072L, 50257L, 1024L
    [
        "transformer.wte.weight", [| vocab; d |]
        "transformer.wpe.weight", [| positions; d |]
        for l in 0..11 do
            let p n = sprintf "transformer.h.%d.%s" l n
            p "ln_1.weight", [| d |]
            p "ln_1.bias", [| d |]
            p "attn.c_attn.weight", [| d; 3L * d |]
            p "attn.c_attn.bias", [| 3L * d |]
            p "attn.c_proj.weight", [| d; d |]
            p "attn.c_proj.bias", [| d |]
            p "ln_2.weight", [| d |]
            p "ln_2.bias", [| d |]
            p "mlp.c_fc.weight", [| d; inner |]
            p "mlp.c_fc.bias", [| inner |]
            p "mlp.c_proj.weight", [| inner; d |]
            p "mlp.c_proj.bias", [| d |]
        "transformer.ln_f.weight", [| d |]
        "transformer.ln_f.bias", [| d |]
    ]

/// Writes `path` as one safetensors file holding `shapes` as `dtype` ("F32" or "BF16"); returns its size in bytes.
/// The values repeat one 64 MiB block of N(0, 0.02²) samples: loading cost does not depend on them, and this keeps
/// writing a multi-gigabyte file as fast as the disk.
let writeSafetensors (path: string) (dtype: string) (shapes: (string * int64[]) list) =
    let elementBytes, torchType =
        match dtype with
        | "F32" -> 4L, torch.float32
        | "BF16" -> 2L, torch.bfloat16
        | other -> failwithf "the bench writes F32 or BF16, not %s" other
    let mutable offset = 0L
    let entries =
        shapes
        |> List.map (fun (name, shape) ->
            let bytes = elementBytes * Array.fold (*) 1L shape
            let e =
                sprintf
                    "%s:{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%d,%d]}"
                    (JsonSerializer.Serialize name)
                    dtype
                    (shape |> Array.map string |> String.concat ",")
                    offset
                    (offset + bytes)
            offset <- offset + bytes
            e)
    let header =
        Encoding.UTF8.GetBytes("{\"__metadata__\":{\"format\":\"pt\"}," + String.concat "," entries + "}")
    let header = Array.append header (Array.create ((8 - header.Length % 8) % 8) (byte ' '))
    let block =
        use g = new torch.Generator(1UL)
        use t =
            torch.randn ([| 64L * 1024L * 1024L / elementBytes |], dtype = torch.float32, generator = g) * 0.02
        use typed = t.to_type torchType
        typed.bytes.ToArray()
    use stream = File.Create path
    stream.Write(BitConverter.GetBytes(uint64 header.Length), 0, 8)
    stream.Write(header, 0, header.Length)
    let mutable left = offset
    let mutable at = 0
    while left > 0L do
        let count = int (min left (int64 (block.Length - at)))
        stream.Write(block, at, count)
        left <- left - int64 count
        at <- (at + count) % block.Length
    stream.Flush()
    stream.Length

/// Writes config.json and a float32 model.safetensors of random GPT-2-small weights; returns the file's size.
let private writeCheckpoint (dir: string) =
    let config =
        {|
            architectures = [ "GPT2LMHeadModel" ]
            model_type = "gpt2"
            vocab_size = 50257
            n_embd = 768
            n_head = 12
            n_layer = 12
            n_positions = 1024
            activation_function = "gelu_new"
            layer_norm_epsilon = 1e-5
        |}
    File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize config)
    writeSafetensors (Path.Combine(dir, "model.safetensors")) "F32" shapes

/// The tensors of a TinyLlama-1.1B-shaped Llama (hidden 2,048, intermediate 5,632, 32 heads over 4 KV heads,
/// vocabulary 32,000, untied head) with `layers` blocks.
let tinyLlamaShapes (layers: int) =
    let d, inner, kv, vocab = 2048L, 5632L, 256L, 32000L
    [
        "model.embed_tokens.weight", [| vocab; d |]
        for l in 0 .. layers - 1 do
            let p n = sprintf "model.layers.%d.%s" l n
            p "input_layernorm.weight", [| d |]
            p "self_attn.q_proj.weight", [| d; d |]
            p "self_attn.k_proj.weight", [| kv; d |]
            p "self_attn.v_proj.weight", [| kv; d |]
            p "self_attn.o_proj.weight", [| d; d |]
            p "post_attention_layernorm.weight", [| d |]
            p "mlp.gate_proj.weight", [| inner; d |]
            p "mlp.up_proj.weight", [| inner; d |]
            p "mlp.down_proj.weight", [| d; inner |]
        "model.norm.weight", [| d |]
        "lm_head.weight", [| vocab; d |]
    ]

/// Writes config.json and model.safetensors of a random TinyLlama-shaped checkpoint with `layers` blocks stored as
/// `dtype` ("F32" or "BF16"); returns the file's size in bytes.
let writeTinyLlama (dir: string) (layers: int) (dtype: string) =
    let config =
        {|
            architectures = [ "LlamaForCausalLM" ]
            model_type = "llama"
            vocab_size = 32000
            hidden_size = 2048
            intermediate_size = 5632
            num_hidden_layers = layers
            num_attention_heads = 32
            num_key_value_heads = 4
            max_position_embeddings = 2048
            rms_norm_eps = 1e-5
            rope_theta = 10000.0
            hidden_act = "silu"
            tie_word_embeddings = false
            torch_dtype = (if dtype = "BF16" then "bfloat16" else "float32")
        |}
    File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize config)
    writeSafetensors (Path.Combine(dir, "model.safetensors")) dtype (tinyLlamaShapes layers)

/// Reads a file into fresh native memory (what a loader's tensors must also fill), from the page cache.
let private readNative (path: string) =
    let length = FileInfo(path).Length
    let memory = NativeMemory.Alloc(unativeint length)
    try
        use handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read)
        let mutable offset = 0L
        while offset < length do
            let count = int (min (16L * 1024L * 1024L) (length - offset))
            // Native-int arithmetic: files pass 2 GB.
            let span =
                Span<byte>(
                    NativePtr.toVoidPtr (
                        NativePtr.ofNativeInt<byte> (
                            NativePtr.toNativeInt (NativePtr.ofVoidPtr<byte> memory) + nativeint offset
                        )
                    ),
                    count
                )
            let read = RandomAccess.Read(handle, span, offset)
            offset <- if read = 0 then length else offset + int64 read
    finally
        NativeMemory.Free memory

let private settle () =
    GC.Collect()
    GC.WaitForPendingFinalizers()
    GC.Collect()

let private release (model: Model) =
    model.Dispose()
    settle ()

/// Prints one JSON record: file size, read and load times, peak memory and both target ratios.
let run () =
    let dir = Path.Combine(Path.GetTempPath(), "jetdsl-bench-gpt2-" + Guid.NewGuid().ToString("N"))
    Directory.CreateDirectory dir |> ignore
    try
        let fileBytes = writeCheckpoint dir
        let path = Path.Combine(dir, "model.safetensors")
        let fileMb = float fileBytes / 1048576.0
        // Peak memory first, while the process has not yet held (and kept in its allocator) a loaded model.
        settle ()
        let baselineMb = currentMb ()
        resetPeak ()
        let watch = Stopwatch.StartNew()
        let model = Model.load dir torch.float32 torch.CPU
        // The first load also pays for JIT compilation and for fresh pages from the kernel on every tensor;
        // later loads reuse pages the allocator kept.
        let firstLoadMs = watch.Elapsed.TotalMilliseconds
        let peak = peakMb ()
        let parameters = model.Net.Parameters.ScalarCount
        let weightsMb = float (parameters * 4L) / 1048576.0
        release model
        // Reading the bytes once into fresh memory (what loading must also fill), and streaming them through one
        // reused buffer (no fresh memory at all), both from the page cache after a warm-up read.
        let readFreshMs = medianMs 1 5 (fun () -> File.ReadAllBytes path |> ignore)
        // The same into fresh native memory (no managed-array zeroing), as a loader's tensors are.
        let readNativeMs = medianMs 1 5 (fun () -> readNative path)
        let buffer = Array.zeroCreate<byte> (16 * 1024 * 1024)
        let readStreamMs =
            medianMs 1 5 (fun () ->
                use s =
                    new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan)
                while s.Read(buffer, 0, buffer.Length) > 0 do
                    ())
        settle ()
        let loadMs = medianMs 1 5 (fun () -> release (Model.load dir torch.float32 torch.CPU))
        // The load checks every tensor for NaN and ±Inf as it reads it; the same check over the loaded weights,
        // timed on its own, is what the load spends on it.
        // Timed on the tensors as stored (Conv1D weights are parameters as transposed views; the load checks them
        // before transposing), each once.
        let checkMs =
            use model = Model.load dir torch.float32 torch.CPU
            let stored =
                model.Net.Parameters.Tensors.Values
                |> Seq.map (fun t -> if t.is_contiguous () then t else t.t ())
                |> Seq.distinctBy (fun t -> t.Handle)
                |> List.ofSeq
            medianMs 1 5 (fun () ->
                for t in stored do
                    NonFinite.tryFind "w" t |> ignore)
        emit
            {|
                suite = "checkpoint-load"
                model = "gpt2-small random, float32"
                threads = Environment.ProcessorCount
                parameters = parameters
                file_mb = Math.Round(fileMb, 1)
                weights_mb = Math.Round(weightsMb, 1)
                read_fresh_ms = Math.Round(readFreshMs, 1)
                read_native_ms = Math.Round(readNativeMs, 1)
                read_stream_ms = Math.Round(readStreamMs, 1)
                first_load_ms = Math.Round(firstLoadMs, 1)
                load_ms = Math.Round(loadMs, 1)
                load_over_read_fresh = Math.Round(loadMs / readFreshMs, 2)
                load_over_read_native = Math.Round(loadMs / readNativeMs, 2)
                load_over_read_stream = Math.Round(loadMs / readStreamMs, 2)
                nonfinite_check_ms = Math.Round(checkMs, 1)
                // With mapped weights the check is most of what a load does (it reads every page once), so its
                // share of the load says little; against reading the file once it says what the check costs.
                nonfinite_check_share_of_load = Math.Round(checkMs / loadMs, 3)
                nonfinite_check_over_read_fresh = Math.Round(checkMs / readFreshMs, 3)
                target_nonfinite_check_over_read_fresh = 0.1
                baseline_rss_mb = Math.Round(baselineMb, 1)
                peak_rss_mb = Math.Round(peak, 1)
                peak_added_over_weights = Math.Round((peak - baselineMb) / weightsMb, 3)
                target_load_over_read = 2.0
                target_peak_over_weights = 1.3
            |}
    finally
        Directory.Delete(dir, true)

/// Loads and disposes the same checkpoint 50 times in one process: resident memory before and after the loop (flat
/// when Dispose frees every load's weights) and the tensors left to the finalizers (0).
let runLoadDispose () =
    let dir = Path.Combine(Path.GetTempPath(), "jetdsl-bench-gpt2-" + Guid.NewGuid().ToString("N"))
    Directory.CreateDirectory dir |> ignore
    try
        writeCheckpoint dir |> ignore
        let loads = 50
        let weightsMb =
            use model = Model.load dir torch.float32 torch.CPU
            float (model.Net.Parameters.ScalarCount * 4L) / 1048576.0
        settleNative ()
        let before, liveBefore = currentMb (), Tensors.liveCount ()
        let watch = Stopwatch.StartNew()
        for _ in 1..loads do
            use model = Model.load dir torch.float32 torch.CPU
            ()
        let seconds = watch.Elapsed.TotalSeconds
        // Read before any collection: a tensor left to the finalizers would still count.
        let liveAfter = Tensors.liveCount ()
        settleNative ()
        let after = currentMb ()
        emit
            {|
                suite = "load-dispose"
                model = "gpt2-small random, float32"
                loads = loads
                weights_mb = Math.Round(weightsMb, 1)
                seconds = Math.Round(seconds, 1)
                rss_before_mb = Math.Round(before, 1)
                rss_after_mb = Math.Round(after, 1)
                growth_mb = Math.Round(after - before, 1)
                tensors_left_to_finalizers = liveAfter - liveBefore
            |}
    finally
        Directory.Delete(dir, true)

/// Loading time against checkpoint size: TinyLlama-shaped float32 checkpoints of several layer counts (0.9 to
/// 2.5 GB by default; JETDSL_BENCH_LAYERS="2,11,22" chooses others), each written, loaded and deleted in turn. One
/// record per size (load time memory-mapped, as by default, and copied, as with LoadOptions.MemoryMap = false; the
/// time to read the file into fresh memory; milliseconds per GB), then a summary:
/// the largest checkpoint's milliseconds per GB over the smallest's (target ≤ 1.5: loading is linear in the bytes)
/// and the worst load-over-read ratio (target ≤ 2).
let runScaling () =
    let layerCounts =
        match Environment.GetEnvironmentVariable "JETDSL_BENCH_LAYERS" with
        | null
        | "" -> [ 2; 6; 11 ]
        | text -> text.Split(',') |> Array.map (fun s -> int (s.Trim())) |> List.ofArray
    let rows =
        [
            for layers in layerCounts do
                let dir = Path.Combine(Path.GetTempPath(), "jetdsl-bench-llama-" + Guid.NewGuid().ToString("N"))
                Directory.CreateDirectory dir |> ignore
                try
                    let fileBytes = writeTinyLlama dir layers "F32"
                    let path = Path.Combine(dir, "model.safetensors")
                    let gb = float fileBytes / 1e9
                    settleNative ()
                    let readMs = medianMs 1 3 (fun () -> readNative path)
                    // Wall time suffers from other processes on a shared machine; the kernel time spent in this
                    // process (page faults, copies from the page cache) does not.
                    let self = Process.GetCurrentProcess()
                    let kernelBefore = self.PrivilegedProcessorTime.TotalMilliseconds
                    let loads = 4
                    // Mapped (the default): the load's non-finite scan reads every byte once, through the mapping.
                    let loadMs = medianMs 1 (loads - 1) (fun () -> release (Model.load dir torch.float32 torch.CPU))
                    self.Refresh()
                    let kernelMs = (self.PrivilegedProcessorTime.TotalMilliseconds - kernelBefore) / float loads
                    let copied = { LoadOptions.Default with MemoryMap = false }
                    let copiedMs =
                        medianMs 1 (loads - 1) (fun () -> release (Model.loadWith copied dir torch.float32 torch.CPU))
                    let row =
                        {|
                            suite = "checkpoint-load-scaling"
                            model = sprintf "tinyllama-shaped random, %d layers, float32" layers
                            layers = layers
                            file_mb = Math.Round(float fileBytes / 1048576.0, 1)
                            read_native_ms = Math.Round(readMs, 1)
                            load_ms = Math.Round(loadMs, 1)
                            load_ms_per_gb = Math.Round(loadMs / gb, 1)
                            load_over_read_native = Math.Round(loadMs / readMs, 2)
                            load_kernel_ms = Math.Round(kernelMs, 1)
                            load_kernel_ms_per_gb = Math.Round(kernelMs / gb, 1)
                            copied_load_ms = Math.Round(copiedMs, 1)
                            copied_load_ms_per_gb = Math.Round(copiedMs / gb, 1)
                            copied_load_over_read_native = Math.Round(copiedMs / readMs, 2)
                        |}
                    emit row
                    yield row
                finally
                    Directory.Delete(dir, true)
        ]
    let smallest = rows |> List.minBy (fun r -> r.file_mb)
    let largest = rows |> List.maxBy (fun r -> r.file_mb)
    emit
        {|
            suite = "checkpoint-load-scaling"
            summary = true
            smallest_mb = smallest.file_mb
            largest_mb = largest.file_mb
            per_gb_largest_over_smallest = Math.Round(largest.load_ms_per_gb / smallest.load_ms_per_gb, 2)
            kernel_per_gb_largest_over_smallest =
                Math.Round(largest.load_kernel_ms_per_gb / smallest.load_kernel_ms_per_gb, 2)
            worst_load_over_read_native = rows |> List.map (fun r -> r.load_over_read_native) |> List.max
            copied_per_gb_largest_over_smallest =
                Math.Round(largest.copied_load_ms_per_gb / smallest.copied_load_ms_per_gb, 2)
            worst_copied_load_over_read_native = rows |> List.map (fun r -> r.copied_load_over_read_native) |> List.max
            target_per_gb_ratio = 1.5
            target_load_over_read = 2.0
        |}
