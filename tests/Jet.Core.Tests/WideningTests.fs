/// Half-precision weights kept as stored: just-in-time widening with a bounded set of reused buffers gives the results
/// of fully widened weights, and loading a bfloat16 checkpoint costs its bytes, not a float32 copy (the per-family
/// comparisons against float32 checkpoints are in CheckpointTests.referenceTestsFor).
module Jet.Core.Tests.WideningTests

open System.Collections.Generic
open System.IO
open Expecto
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Tests.TestKit
open Jet.Core.Tests.TestCheckpoints
open Jet.Core.Tests.FamilyCheckpoints

/// A copy of `net` whose store holds clones of its stored tensors and widens with slots for two consecutive layers
/// whatever its size (small networks otherwise keep every layer widened).
let private withTwoLayerSlots (net: Net) =
    let pairs = [ for kv in net.Parameters.Tensors -> kv.Key, kv.Value.clone().DetachFromDisposeScope() ]
    let shapes = dict [ for name, t in pairs -> name, t.shape ]
    let widening = Net.wideningWith 0L net.Spec (fun n -> shapes.[n]) net.DType
    Net.create net.Spec (ParameterStore.OfSeq(pairs, Some widening))

/// The widened bytes in float32 of the parameters `net` widens once and keeps (tied ones once).
let private pinnedBytes (net: Net) =
    net.Parameters.Widening.Value.Pinned
    |> Seq.choose (fun n ->
        match net.Parameters.Tensors.TryGetValue n with
        | true, t -> Some t
        | _ -> None)
    |> Seq.distinctBy (fun t -> t.Handle)
    |> Seq.sumBy (fun t -> 4L * t.numel ())

/// The widened bytes of each residual layer of `net` in float32.
let private layerBytes (net: Net) =
    net.Spec.Layers
    |> List.map (fun l ->
        Fn.parameterNames l.Gamma
        |> List.distinct
        |> List.sumBy (fun n -> 4L * net.Parameters.Tensors.[n].numel ()))

/// The lines of /proc/self/maps that map `path`.
let private mappingsOf (path: string) =
    File.ReadAllLines "/proc/self/maps"
    |> Array.filter (fun l -> l.EndsWith(" " + Path.GetFullPath path))

[<Tests>]
let widening =
    testList
        "weights kept as stored, widened just in time"
        [
            test "slots for two layers evict and refill buffers in place, and results do not change" {
                let case = llama 31 "BF16"
                use model = CheckpointTests.load case.Dir torch.float32
                use tight = withTwoLayerSlots model.Net
                use float32 = Net.toDType torch.float32 model.Net
                // Twice: the second pass widens into the buffers the first one filled.
                CheckpointTests.sameFloat32Results tight float32
                let held = tight.Parameters.WidenedBytes
                CheckpointTests.sameFloat32Results tight float32
                Expect.equal tight.Parameters.WidenedBytes held "the second pass allocates no new buffers"
                let pinned = pinnedBytes tight
                let layers = layerBytes model.Net
                let twoLayers = layers |> List.pairwise |> List.map (fun (a, b) -> a + b) |> List.max
                Expect.isLessThanOrEqual held (pinned + twoLayers) "widened copies: the pinned tensors and two layers"
                Expect.isGreaterThan (List.sum layers) twoLayers "the slots evict"
            }

            test "nested JVPs through more layers than the slots hold keep their weights" {
                // The autograd graph of a chain of every γ saves each layer's widened weights until the derivatives
                // are taken, so a miss while gradients are recorded takes a fresh buffer instead of refilling one.
                let case = llama 38 "BF16"
                use model = CheckpointTests.load case.Dir torch.float64
                use tight = withTwoLayerSlots model.Net
                use float64 = Net.toDType torch.float64 model.Net
                let chain (net: Net) = Fn.Chain [ for l in net.Spec.Layers -> l.Gamma ]
                let d = int64 model.Net.Spec.Width
                use centre = torch.randn ([| 1L; 3L; d |], dtype = torch.float64)
                use direction = torch.randn ([| 1L; 3L; d |], dtype = torch.float64)
                let a = Engines.coefficients Engine.Jvp tight.Parameters (chain tight) 2 centre direction
                let b = Engines.coefficients Engine.Jvp float64.Parameters (chain float64) 2 centre direction
                for j, (x, y) in List.indexed (List.zip a b) do
                    Expect.tensorClose (Accuracy.Of(1e-10, 1e-10)) x y (sprintf "c%d" j)
            }

            test "a small network keeps every layer widened after one pass" {
                let case = llama 35 "BF16"
                use model = CheckpointTests.load case.Dir torch.float32
                use float32 = Net.toDType torch.float32 model.Net
                CheckpointTests.sameFloat32Results model.Net float32
                Expect.equal
                    model.Net.Parameters.WidenedBytes
                    (pinnedBytes model.Net + List.sum (layerBytes model.Net))
                    "the pinned tensors and every layer widened; the token embedding only by rows"
            }

            test "a float32 network computing in float32 hands its weights out as stored" {
                let case = llama 32 "F32"
                use model = CheckpointTests.load case.Dir torch.float32
                let name = model.Net.Spec.Unembedding.Weight
                Expect.isTrue
                    (model.Net.Parameters.[name].Handle = model.Net.Parameters.Tensors.[name].Handle)
                    "no copy"
                Expect.equal model.Net.Parameters.WidenedBytes 0L "nothing widened"
            }

            test "LoadOptions.StorageDType converts at load; a narrower compute dtype converts too" {
                let case = llama 33 "BF16"
                use asked =
                    Model.loadWith
                        { LoadOptions.Default with StorageDType = Some torch.float32 }
                        case.Dir
                        torch.float32
                        torch.CPU
                Expect.equal asked.Net.StorageDType torch.float32 "converted as asked"
                use narrower = CheckpointTests.load case.Dir torch.float16
                Expect.equal narrower.Net.StorageDType torch.float16 "bfloat16 does not widen to float16 exactly"
                Expect.equal narrower.Net.DType torch.float16 "computed in float16"
            }

            test "info reports the compute and storage dtypes and the weight bytes" {
                let case = llama 34 "BF16"
                use model = CheckpointTests.load case.Dir torch.float32
                let s = Model.summary model
                Expect.equal (s.DType, s.StorageDType) ("float32", "bfloat16") "dtypes"
                let expected = case.Weights |> Map.toSeq |> Seq.sumBy (fun (_, t) -> 2L * t.numel ())
                Expect.equal s.WeightBytes expected "two bytes per stored value"
            }

            test "weights kept as stored are views of the mapped file, unmapped on Dispose; MemoryMap = false copies" {
                let case = llama 36 "BF16"
                let file = Path.Combine(case.Dir, "model.safetensors")
                use copied =
                    Model.loadWith { LoadOptions.Default with MemoryMap = false } case.Dir torch.float32 torch.CPU
                Expect.isEmpty (mappingsOf file) "copied: the file is not mapped"
                let mapped = CheckpointTests.load case.Dir torch.float32
                Expect.isNonEmpty (mappingsOf file) "mapped while the model lives"
                CheckpointTests.sameFloat32Results mapped.Net copied.Net
                mapped.Dispose()
                Expect.isEmpty (mappingsOf file) "unmapped once the model is disposed"
            }

            test "tensors whose bytes are not aligned to their element size are copied, with the same values" {
                // A header whose length is not a multiple of 8 (as the format asks) puts every tensor at an odd
                // offset, where a bfloat16 view of the mapping cannot start.
                let case = llama 37 "BF16"
                use expected = CheckpointTests.load case.Dir torch.float32
                // A copy in another folder: the loaded model maps the original, which must not be overwritten.
                let dir = tempDir ()
                for f in Directory.GetFiles case.Dir do
                    File.Copy(f, Path.Combine(dir, Path.GetFileName f))
                let file = Path.Combine(dir, "model.safetensors")
                let bytes = File.ReadAllBytes file
                let headerLength = int (System.BitConverter.ToUInt64(bytes, 0))
                let header = System.Text.Encoding.UTF8.GetString(bytes, 8, headerLength).TrimEnd() + " "
                let headerBytes = System.Text.Encoding.UTF8.GetBytes header
                let shifted =
                    if headerBytes.Length % 2 = 1 then
                        headerBytes
                    else
                        Array.append headerBytes [| 32uy |]
                using (File.Create file) (fun stream ->
                    stream.Write(System.BitConverter.GetBytes(uint64 shifted.Length), 0, 8)
                    stream.Write(shifted, 0, shifted.Length)
                    stream.Write(bytes, 8 + headerLength, bytes.Length - 8 - headerLength))
                use misaligned = CheckpointTests.load dir torch.float32
                CheckpointTests.sameFloat32Results misaligned.Net expected.Net
            }
        ]

/// Set in the child process that measures loading alone.
let private childVariable = "JETDSL_LOAD_MEMORY_CHILD"

/// Loads a 202 MB bfloat16 checkpoint memory-mapped (the default) and copied, and fails unless the process's memory
/// grew by at most 1.1 × its bytes at any time during either load: resident memory in all (the mapped file's pages
/// count once the load's non-finite scan has read them) and anonymous memory (heap and tensor storage).
let private measureLoad () =
    // 4 layers, hidden 1024, vocabulary 32,000: 202 MB of bfloat16, enough that allocator noise (a few MB) is small
    // against the 10% allowance, while a float32 copy would add 100%.
    let shape =
        { Jet.Tests.RandomLlama.tinyLlama with
            Layers = 4
            Hidden = 1024
            Intermediate = 2048
            Heads = 8
            KvHeads = 2
        }
    let dir = tempDir ()
    Jet.Tests.RandomLlama.write dir shape 2 7
    let bytes = Jet.Tests.RandomLlama.weightBytes shape
    for memoryMap in [ true; false ] do
        Memory.settledMb () |> ignore
        let baseline = Memory.currentMb (), Memory.anonymousMb ()
        // Sampled every millisecond during the load: a float32 copy would be long-lived memory (twice the bytes),
        // which sampling cannot miss.
        let peak = ref baseline
        use stop = new System.Threading.CancellationTokenSource()
        let sample () =
            let all, anonymous = peak.Value
            peak.Value <- max all (Memory.currentMb ()), max anonymous (Memory.anonymousMb ())
        let sampler =
            System.Threading.Tasks.Task.Run(
                System.Action(fun () ->
                    while not stop.IsCancellationRequested do
                        sample ()
                        System.Threading.Thread.Sleep 1)
            )
        let options = { LoadOptions.Default with MemoryMap = memoryMap }
        let net, _ = Architectures.loadNetWith options dir torch.float32 torch.CPU
        use net = net
        stop.Cancel()
        sampler.Wait()
        sample ()
        Expect.equal net.StorageDType torch.bfloat16 "kept as stored"
        let mode = if memoryMap then "mapped" else "copied"
        for what, grown in
            [
                "resident memory", fst peak.Value - fst baseline
                "anonymous memory", snd peak.Value - snd baseline
            ] do
            Expect.isLessThanOrEqual
                (grown * 1048576.0)
                (1.1 * float bytes)
                (sprintf
                    "%s: %s grew by %.0f MB for %.0f MB of weights"
                    mode
                    what
                    (grown * 1.048576)
                    (float bytes / 1e6))
    Directory.Delete(dir, true)

[<Tests>]
let loadMemory =
    testList
        "loading half precision"
        [
            test "loading a bfloat16 checkpoint raises peak memory by at most 1.1 × its weight bytes" {
                if System.Environment.GetEnvironmentVariable childVariable = "1" then
                    measureLoad ()
                else
                    // Other tests allocate in parallel in this process, so the peak is measured in a child process
                    // of this test assembly that runs this test alone.
                    let info =
                        System.Diagnostics.ProcessStartInfo(
                            System.Environment.ProcessPath,
                            RedirectStandardOutput = true,
                            RedirectStandardError = true,
                            UseShellExecute = false
                        )
                    for a in
                        [
                            typeof<Jet.Tests.RandomLlama.LlamaShape>.Assembly.Location
                            "--filter-test-list"
                            "loading half precision"
                            "--summary"
                            "--no-spinner"
                            "--colours"
                            "0"
                        ] do
                        info.ArgumentList.Add a
                    info.Environment.[childVariable] <- "1"
                    use child = System.Diagnostics.Process.Start info
                    let output = child.StandardOutput.ReadToEndAsync()
                    let errors = child.StandardError.ReadToEndAsync()
                    child.WaitForExit()
                    let text = output.Result + errors.Result
                    Expect.equal child.ExitCode 0 (sprintf "the measuring child process failed:\n%s" text)
                    Expect.stringContains text "1 passed" "the child ran the measurement"
            }
        ]
