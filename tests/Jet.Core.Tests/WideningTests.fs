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

/// A copy of `net` whose store holds clones of its stored tensors and widens with a budget of `budget` bytes.
let private withBudget (budget: int64) (net: Net) =
    let pairs = [ for kv in net.Parameters.Tensors -> kv.Key, kv.Value.clone().DetachFromDisposeScope() ]
    let shapes = dict [ for name, t in pairs -> name, t.shape ]
    let widening =
        { Net.wideningFor net.Spec (fun n -> shapes.[n]) torch.float32 with BudgetBytes = budget }
    Net.create net.Spec (ParameterStore.OfSeq(pairs, Some widening))

/// The widened bytes of the largest residual layer of `net` in float32.
let private largestLayerBytes (net: Net) =
    net.Spec.Layers
    |> List.map (fun l ->
        Fn.parameterNames l.Gamma
        |> List.distinct
        |> List.sumBy (fun n -> 4L * net.Parameters.Tensors.[n].numel ()))
    |> List.max

[<Tests>]
let widening =
    testList
        "weights kept as stored, widened just in time"
        [
            test "a budget of two layers evicts and refills buffers in place, and results do not change" {
                let case = llama 31 "BF16"
                use model = CheckpointTests.load case.Dir torch.float32
                let budget = 2L * largestLayerBytes model.Net
                use tight = withBudget budget model.Net
                use float32 = Net.toDType torch.float32 model.Net
                // Twice: the second pass widens into the buffers the first one released.
                CheckpointTests.sameFloat32Results tight float32
                CheckpointTests.sameFloat32Results tight float32
                let pinned =
                    [ tight.Spec.Encoder.TokenEmbedding; tight.Spec.Unembedding.Weight ]
                    @ Fn.parameterNames tight.Spec.FinalNorm
                    |> List.sumBy (fun n -> 4L * tight.Parameters.Tensors.[n].numel ())
                Expect.isLessThanOrEqual
                    tight.Parameters.WidenedBytes
                    (pinned + budget)
                    "widened copies stay within the pinned tensors and the budget"
                Expect.isGreaterThan (largestLayerBytes model.Net * int64 model.Net.Depth) budget "the budget evicts"
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
        ]

/// Set in the child process that measures loading alone.
let private childVariable = "JETDSL_LOAD_MEMORY_CHILD"

/// Loads a 202 MB bfloat16 checkpoint and fails unless the process's anonymous memory grew by at most 1.1 × its bytes
/// at any time during the load.
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
    Memory.settledMb () |> ignore
    let baseline = Memory.anonymousMb ()
    // Anonymous memory, sampled every millisecond during the load: the loader copies through read-only views of the
    // file (up to 64 MB at a time), whose page-cache pages count in VmHWM but are not memory the weights take. A
    // float32 copy would be long-lived anonymous memory (twice the bytes), which sampling cannot miss.
    let peak = ref baseline
    use stop = new System.Threading.CancellationTokenSource()
    let sampler =
        System.Threading.Tasks.Task.Run(
            System.Action(fun () ->
                while not stop.IsCancellationRequested do
                    peak.Value <- max peak.Value (Memory.anonymousMb ())
                    System.Threading.Thread.Sleep 1)
        )
    let net, _ = Architectures.loadNet dir torch.float32 torch.CPU
    use net = net
    stop.Cancel()
    sampler.Wait()
    let growth = (max peak.Value (Memory.anonymousMb ()) - baseline) * 1024.0 * 1024.0
    Expect.equal net.StorageDType torch.bfloat16 "kept as stored"
    Expect.isLessThanOrEqual
        growth
        (1.1 * float bytes)
        (sprintf "peak grew by %.0f MB for %.0f MB of weights" (growth / 1e6) (float bytes / 1e6))
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
