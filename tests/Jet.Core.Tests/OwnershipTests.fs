/// Who owns a network's weights: loading and disposing leaves native memory flat, a tensor tied under two names is
/// freed once, a disposed network fails with a clear ObjectDisposedException, a failed load frees what it read, and
/// moving to another dtype or device makes a new owner.
module Jet.Core.Tests.OwnershipTests

open System
open System.IO
open Expecto
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps
open Jet.Core.Tests.TestKit
open Jet.Core.Tests.FamilyCheckpoints

/// Runs `body` once to warm up, then `repeats` times, failing unless each run frees every tensor it made by itself:
/// the live count is read without a garbage collection, so a tensor left to the finalizers shows.
let private freesEverything (repeats: int) (body: unit -> unit) (message: string) =
    body ()
    liveTensorsSettled () |> ignore
    for run in 1..repeats do
        let before = Tensors.liveCount ()
        body ()
        let after = Tensors.liveCount ()
        if after > before then
            let left = after - before
            failtestf
                "%s: run %d left %d tensors to the finalizers (%d live before, %d after)"
                message
                run
                left
                before
                after

/// What a disposed network's parameters say.
let private disposedMessage = [ "weights were disposed"; "load or build the model again" ]

let private failsDisposed (what: string) (f: unit -> unit) =
    Expect.throwsWith<ObjectDisposedException> disposedMessage f what

let private prompt (net: Net) = Carving.randomPrompt 0 net.Vocab 5

let private logitsOf (net: Net) =
    use trace = Trace.run net (prompt net)
    (Trace.logits trace).clone ()

let memory =
    testSequenced
    <| testList
        "ownership: native memory"
        [
            test "loading and disposing a checkpoint 50 times leaves native memory flat" {
                // A tied GPT-2 of vocabulary 16384 and width 512 (57 MB of weights, several times the few MB by which
                // resident memory drifts between two readings): 50 leaked loads would hold 50 × its weights.
                let case = gpt2 41 "F32" { gpt2Defaults with Vocab = 16384; Width = 512 }
                let weightsMb =
                    use model = Model.load case.Dir torch.float32 torch.CPU
                    Expect.isTrue model.Net.Spec.Unembedding.Tied "the head is tied to the embedding"
                    float (model.Net.Parameters.ScalarCount * 4L) / 1048576.0
                let once () =
                    use model = Model.load case.Dir torch.float32 torch.CPU
                    Expect.equal model.Net.Vocab 16384 "vocabulary"
                // Warm-up: the first loads also grow the allocator's arenas and the thread pool the copies run on.
                for _ in 1..5 do
                    once ()
                let liveBefore = liveTensorsSettled ()
                let before = Memory.settledMb ()
                freesEverything 50 once "loading and disposing a checkpoint"
                let after = Memory.settledMb ()
                printfn
                    "ownership: 50 loads and disposals of a %.1f MB checkpoint: resident memory %.1f MB before, \
                 %.1f MB after (%+.1f MB)"
                    weightsMb
                    before
                    after
                    (after - before)
                Expect.isLessThanOrEqual (liveTensorsSettled ()) liveBefore "no tensor outlives its model"
                // A leak of even 2% of the weights per load would add a whole model's worth over 50 loads.
                let growth =
                    sprintf "resident memory grew by %.1f MB over 50 loads of %.1f MB" (after - before) weightsMb
                Expect.isLessThan (after - before) weightsMb growth
            }

            test "the toy, opened on the CPU or moved to another device, frees everything it made" {
                freesEverything 50 (fun () -> (Model.toy 0 32 torch.float32).Dispose()) "Model.toy"
                freesEverything
                    20
                    (fun () -> (Model.resolve "toy" torch.float64 torch.CPU).Dispose())
                    "resolve on the CPU"
                // The meta device holds shapes without data, so the move runs without a GPU; the CPU toy is freed.
                let onMeta () =
                    use model = Model.resolve "toy" torch.float32 (torch.Device "meta")
                    Expect.equal model.Net.Device.``type`` DeviceType.META "moved to the meta device"
                freesEverything 20 onMeta "Model.resolve toy on another device"
            }

            test "a load that fails after reading the weights frees them" {
                let case = gpt2 42 "F32" gpt2Defaults
                // The tokenizer is read after the weights, so a broken one fails the load mid-way.
                File.WriteAllText(Path.Combine(case.Dir, "tokenizer.json"), "{ not json")
                let failedLoad () =
                    let load () = Model.load case.Dir torch.float32 torch.CPU |> ignore
                    Expect.throwsWith<CheckpointException> [ "tokenizer.json" ] load "broken tokenizer"
                freesEverything 5 failedLoad "a failed load"
            }

            test "a tensor tied under two names is freed once; Dispose twice frees nothing more" {
                let shared = randn 1 [ 4L; 3L ]
                let bias = randn 2 [ 3L ]
                let before = liveTensorsSettled ()
                let store = ParameterStore.OfSeq [ "embed", shared; "unembed", shared; "bias", bias ]
                Expect.equal store.ScalarCount 15L "the tied tensor counts once"
                store.Dispose()
                Expect.equal (liveTensorsSettled ()) (before - 2L) "two distinct tensors freed"
                Expect.isTrue (shared.IsInvalid && bias.IsInvalid) "both freed"
                store.Dispose()
                (store :> IDisposable).Dispose()
                Expect.equal (liveTensorsSettled ()) (before - 2L) "later calls free nothing"
                Expect.isTrue store.IsDisposed "disposed"
            }

            test "a store skips a tensor its caller freed already" {
                let t = randn 3 [ 2L ]
                let store = ParameterStore.OfSeq [ "a", t; "b", randn 4 [ 2L ] ]
                t.Dispose()
                store.Dispose()
                Expect.isTrue store.IsDisposed "disposed without touching the freed tensor"
            }

            test "toDType and toDevice free their intermediates" {
                use net = Toy.create 0 8 torch.float64
                freesEverything 10 (fun () -> (Net.toDType torch.float32 net).Dispose()) "toDType float64 → float32"
                freesEverything 10 (fun () -> (Net.toDType torch.float64 net).Dispose()) "toDType to its own dtype"
                freesEverything 10 (fun () -> (Net.toDevice torch.CPU net).Dispose()) "toDevice to its own device"
            }
        ]

let disposedUse =
    testList
        "ownership: a disposed network fails clearly"
        [
            test "every access to a disposed store raises ObjectDisposedException" {
                let store = ParameterStore.OfSeq [ "w", randn 5 [ 2L ] ]
                store.Dispose()
                failsDisposed "Item" (fun () -> store.["w"] |> ignore)
                failsDisposed "TryFind" (fun () -> store.TryFind "w" |> ignore)
                failsDisposed "Tensors" (fun () -> store.Tensors |> ignore)
                failsDisposed "ScalarCount" (fun () -> store.ScalarCount |> ignore)
                failsDisposed "Names" (fun () -> store.Names |> ignore)
                failsDisposed "Count" (fun () -> store.Count |> ignore)
            }

            test "a disposed model fails for a forward pass, a lens, an expansion, a sweep and its summary" {
                let model = Model.toy 0 8 torch.float64
                let z = prompt model.Net
                use session = Expand.session model.Net z
                let plan = Expansion.atLayer 2 [ Centre.Stream 0; Centre.Gamma 1 ] |> Expansion.withOrder 1
                session.Expand plan |> ignore
                model.Dispose()
                failsDisposed "forward pass" (fun () -> Trace.run model.Net z |> ignore)
                failsDisposed "iterative lens" (fun () -> IterativeLens.run model.Net z LensOptions.Default |> ignore)
                failsDisposed "new expansion session" (fun () -> Expand.session model.Net z |> ignore)
                // The session keeps what it computed (plans are memoised); a new plan needs the weights.
                session.Expand plan |> ignore
                failsDisposed "an earlier session" (fun () -> session.Expand(Expansion.withOrder 2 plan) |> ignore)
                let sweep () = Bigrams.full model.Net Readouts.embedding SweepOptions.Default |> ignore
                failsDisposed "bigram sweep" sweep
                failsDisposed "summary" (fun () -> Model.summary model |> ignore)
                failsDisposed "dtype" (fun () -> model.Net.DType |> ignore)
                model.Dispose()
                Expect.stringContains (string model.Net) "toy: vocab 100, width 8" "the structure stays readable"
            }

            test "a disposed checkpoint model fails the same way" {
                let model = Model.load (gpt2 43 "F32" gpt2Defaults).Dir torch.float32 torch.CPU
                (model :> IDisposable).Dispose()
                failsDisposed "forward pass" (fun () -> Trace.run model.Net (torch.tensor [| 1L; 2L |]) |> ignore)
            }
        ]

let conversions =
    testList
        "ownership: conversions make a new owner"
        [
            for name, convert, accuracy in
                [
                    "toDType to its own dtype", Net.toDType torch.float64, Accuracy.Float64
                    "toDType float64 → float32", Net.toDType torch.float32, Accuracy.Float32
                    "toDevice to its own device", Net.toDevice torch.CPU, Accuracy.Float64
                ] do
                test (sprintf "%s: the original survives disposing the copy, and the copy the original" name) {
                    let original = Toy.create 0 8 torch.float64
                    use expected = logitsOf original
                    let copy: Net = convert original
                    Expect.isFalse (obj.ReferenceEquals(copy.Parameters, original.Parameters)) "a store of its own"
                    Expect.equal copy.Spec original.Spec "the same structure"
                    // No shared memory: writing into the copy leaves the original as it was.
                    copy.Parameters.["embed.weight"].add_ (scalar 1.0) |> ignore
                    Expect.tensorClose Accuracy.Float64 (logitsOf original) expected "after a write to the copy"
                    copy.Dispose()
                    Expect.tensorClose
                        Accuracy.Float64
                        (logitsOf original)
                        expected
                        "the original after disposing the copy"
                    use second = convert original
                    original.Dispose()
                    failsDisposed "the original" (fun () -> logitsOf original |> ignore)
                    Expect.tensorClose accuracy (logitsOf second) expected "the copy after disposing the original"
                }
        ]

[<Tests>]
let tests = testList "ownership" [ memory; disposedUse; conversions ]
