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

/// Writes config.json and a float32 model.safetensors of random weights; returns the file's size in bytes.
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
    let mutable offset = 0L
    let entries =
        shapes
        |> List.map (fun (name, shape) ->
            let bytes = 4L * Array.fold (*) 1L shape
            let e =
                sprintf
                    "%s:{\"dtype\":\"F32\",\"shape\":[%s],\"data_offsets\":[%d,%d]}"
                    (JsonSerializer.Serialize name)
                    (shape |> Array.map string |> String.concat ",")
                    offset
                    (offset + bytes)
            offset <- offset + bytes
            e)
    let header =
        Encoding.UTF8.GetBytes("{\"__metadata__\":{\"format\":\"pt\"}," + String.concat "," entries + "}")
    let header = Array.append header (Array.create ((8 - header.Length % 8) % 8) (byte ' '))
    let path = Path.Combine(dir, "model.safetensors")
    use stream = File.Create path
    stream.Write(BitConverter.GetBytes(uint64 header.Length), 0, 8)
    stream.Write(header, 0, header.Length)
    use g = new torch.Generator(1UL)
    for _, shape in shapes do
        use scope = torch.NewDisposeScope()
        let t = torch.randn (shape, dtype = torch.float32, generator = g) * 0.02
        stream.Write(t.bytes)
    stream.Flush()
    stream.Length

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
        let readNativeMs =
            medianMs 1 5 (fun () ->
                let length = int64 fileBytes
                let memory = NativeMemory.Alloc(unativeint length)
                try
                    use handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read)
                    let mutable offset = 0L
                    while offset < length do
                        let count = int (min (16L * 1024L * 1024L) (length - offset))
                        let span =
                            Span<byte>(
                                NativePtr.toVoidPtr (NativePtr.add (NativePtr.ofVoidPtr<byte> memory) (int offset)),
                                count
                            )
                        let read = RandomAccess.Read(handle, span, offset)
                        offset <- if read = 0 then length else offset + int64 read
                finally
                    NativeMemory.Free memory)
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
                nonfinite_check_share_of_load = Math.Round(checkMs / loadMs, 3)
                target_nonfinite_check_share = 0.1
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
