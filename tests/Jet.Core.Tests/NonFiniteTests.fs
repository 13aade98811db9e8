/// Nothing silent: non-finite values are found where they first appear (tensors, readings, weights at load), configs
/// and checkpoints that disagree are refused, requests that cannot fit are refused at once, and control characters
/// are printed visibly.
module Jet.Core.Tests.NonFiniteTests

open System
open System.IO
open System.Diagnostics
open Expecto
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps
open Jet.Core.Tests.TestKit
open Jet.Core.Tests.TestCheckpoints
open Jet.Core.Tests.FamilyCheckpoints

/// A tiny GPT-2 checkpoint (2 blocks) whose tensor `name` gets `edit` applied before it is saved again.
let private gpt2With (seed: int) (dtype: string) (name: string) (edit: Tensor -> Tensor) =
    let case = gpt2 seed dtype gpt2Defaults
    let tensors = [ for n, t in case.Weights |> Map.toList -> n, (if n = name then edit t else t) ]
    writeSafetensors (Path.Combine(case.Dir, "model.safetensors")) dtype tensors
    case.Dir

/// The config.json of a directory with `key` set to the raw JSON `value`.
let private setConfig (dir: string) (key: string) (value: string) =
    let path = Path.Combine(dir, "config.json")
    let node = Text.Json.Nodes.JsonNode.Parse(File.ReadAllText path)
    node.[key] <- Text.Json.Nodes.JsonNode.Parse value
    File.WriteAllText(path, node.ToJsonString())

let private load (dir: string) = (Model.load dir torch.float32 torch.CPU).Dispose()

let detection =
    testList
        "finding non-finite values"
        [
            test "the first non-finite value of a tensor, its index, kind and count" {
                use t = torch.zeros (3L, 4L, dtype = torch.float64)
                t.[1L, 2L] <- torch.tensor Double.NaN
                t.[2L, 0L] <- torch.tensor Double.PositiveInfinity
                let r = (NonFinite.tryFind "t" t).Value
                Expect.equal r.Index [| 1L; 2L |] "row-major first"
                Expect.equal r.Kind "NaN" "kind"
                Expect.equal (r.Count, r.Total) (2L, 12L) "count of total"
                Expect.stringContains (r.Describe()) "NaN in t at [1, 2] (2 of 12" "described"
            }
            test "finite, integer and empty tensors report nothing" {
                use a = torch.randn (5L, 5L)
                use b = torch.tensor [| 1L; 2L |]
                use c = torch.empty (0L, dtype = torch.float32)
                for t in [ a; b; c ] do
                    Expect.isNone (NonFinite.tryFind "t" t) (Tensors.describe t)
            }
            test "−Inf in bfloat16 and float16 is found" {
                for dtype in [ torch.bfloat16; torch.float16 ] do
                    use t = torch.ones (7L, dtype = torch.float32)
                    t.[6L] <- torch.tensor Double.NegativeInfinity
                    use typed = t.to_type dtype
                    let r = (NonFinite.tryFind "t" typed).Value
                    Expect.equal (r.Index, r.Kind) ([| 6L |], "-Inf") (string dtype)
            }
            test "plain values: the first non-finite one" {
                let r = (NonFinite.tryFindValues "xs" [ 1.0; 2.0; Double.PositiveInfinity; nan ]).Value
                Expect.equal (r.Index, r.Kind, r.Count) ([| 2L |], "+Inf", 2L) "index 2"
                Expect.isNone (NonFinite.tryFindValues "xs" [ 1.0; -3.0 ]) "finite"
            }
            test "a NaN weight makes the lens report the first stream that reads it" {
                use model = Model.toy 3 8 torch.float64
                // ln_f is only on the decoder path: every stream's lens logits are NaN, the model's logits too.
                model.Net.Parameters.["block2.fc2.bias"].[0L] <- torch.tensor Double.NaN
                use tokens = Model.encode model "hello"
                use result = IterativeLens.run model.Net tokens { Streams = []; Order = 0; TopK = 3 }
                let reading = Readings.lens model.Tokenizer result 3
                let r = (NonFiniteChecks.lens result reading).Value
                // h_2 = h_1 + γ_2 is where the NaN enters; the model's logits read h_2 and come first.
                Expect.stringContains r.Where "the model's logits" "the model's logits first"
                let weights = (NonFiniteChecks.weights model.Net).Value
                Expect.stringContains weights.Where "block2.fc2.bias" "the weight is named"
            }
        ]

let loading =
    testList
        "non-finite weights and disagreeing checkpoints at load"
        [
            test "NaN in one embedding row: refused, naming the tensor and the count" {
                let dir =
                    gpt2With 31 "F32" "transformer.wte.weight" (fun t ->
                        t.index_fill (0L, torch.tensor [| 5L |], scalar nan))
                Expect.throwsWith<NonFiniteException>
                    [ "transformer.wte.weight"; "NaN"; "[5, 0]"; "16 of 640"; "--allow-nonfinite" ]
                    (fun () -> load dir)
                    "a NaN row"
                use model =
                    Model.loadWith { LoadOptions.Default with AllowNonFinite = true } dir torch.float32 torch.CPU
                let r = (NonFiniteChecks.weights model.Net).Value
                Expect.equal (r.Where, r.Index) ("weight 'wte.weight'", [| 5L; 0L |]) "allowed, and still found"
            }
            test "an Inf norm weight and a whole NaN projection are refused" {
                let inf = gpt2With 32 "F32" "transformer.h.1.ln_2.weight" (fun t -> t.fill_ (scalar infinity))
                Expect.throwsWith<NonFiniteException>
                    [ "h.1.ln_2.weight"; "+Inf"; "16 of 16" ]
                    (fun () -> load inf)
                    "Inf"
                let q = gpt2With 33 "F32" "transformer.h.0.attn.c_attn.weight" (fun t -> t.fill_ (scalar nan))
                Expect.throwsWith<NonFiniteException>
                    [ "h.0.attn.c_attn.weight"; "768 of 768" ]
                    (fun () -> load q)
                    "NaN"
            }
            test "a value that overflows the requested dtype counts as non-finite" {
                let dir =
                    gpt2With 34 "F32" "transformer.ln_f.bias" (fun t ->
                        t.index_fill (0L, torch.tensor [| 3L |], scalar 1e6))
                load dir
                Expect.throwsWith<NonFiniteException>
                    [ "ln_f.bias"; "+Inf"; "Float16" ]
                    (fun () -> (Model.load dir torch.float16 torch.CPU).Dispose())
                    "1e6 is +Inf in float16"
            }
            test "fewer layers in config.json than in the checkpoint: refused, naming the extra blocks" {
                let dir = (gpt2 35 "F32" { gpt2Defaults with Layers = 3 }).Dir
                setConfig dir "n_layer" "1"
                Expect.throwsWith<CheckpointException>
                    [ "transformer.h.1."; "blocks 1..2"; "describes 1 blocks" ]
                    (fun () -> load dir)
                    "n_layer 1 over 3 blocks"
            }
            test "a tensor the network does not use is named; known buffers are not" {
                let case = gpt2 36 "F32" gpt2Defaults
                let tensors = case.Weights |> Map.toList
                writeSafetensors
                    (Path.Combine(case.Dir, "model.safetensors"))
                    "F32"
                    (tensors @ [ "transformer.extra.weight", torch.ones (2L, dtype = torch.float64) ])
                Expect.throwsWith<CheckpointException>
                    [ "1 tensor(s)"; "'transformer.extra.weight'" ]
                    (fun () -> load case.Dir)
                    "extra"
                // The family checkpoint carries attn.bias and attn.masked_bias buffers and loads.
                load (gpt2 37 "F32" gpt2Defaults).Dir
            }
            test "norm epsilons must be finite and positive; sizes must be in range" {
                let cases =
                    [
                        "layer_norm_epsilon", "-1", [ "'layer_norm_epsilon' is -1"; "> 0" ]
                        "layer_norm_epsilon", "0", [ "'layer_norm_epsilon' is 0" ]
                        "layer_norm_epsilon", "1e400", [ "layer_norm_epsilon" ]
                        "n_embd", "1099511627776", [ "'n_embd' is 1099511627776"; "out of range" ]
                        "n_embd", "33554432", [ "'n_embd' is 33554432"; "too large"; "16777216" ]
                        "n_head", "-4", [ "'n_head' is -4"; "positive" ]
                    ]
                for key, value, fragments in cases do
                    let dir = (gpt2 38 "F32" gpt2Defaults).Dir
                    setConfig dir key value
                    Expect.throwsWith<CheckpointException> fragments (fun () -> load dir) (key + " = " + value)
            }
            test "--model paths: a file, a symbolic link loop, a dangling link, a directory without config.json" {
                let dir = tempDir ()
                let file = Path.Combine(dir, "model.safetensors")
                File.WriteAllText(file, "x")
                Expect.throwsWith<CheckpointException>
                    [ "is a file, not a directory"; dir ]
                    (fun () -> load file)
                    "file"
                let a, b = Path.Combine(dir, "a"), Path.Combine(dir, "b")
                File.CreateSymbolicLink(a, b) |> ignore
                File.CreateSymbolicLink(b, a) |> ignore
                Expect.throwsWith<CheckpointException>
                    [ "symbolic link"; "cannot be followed" ]
                    (fun () -> load a)
                    "loop"
                let dangling = Path.Combine(dir, "dangling")
                File.CreateSymbolicLink(dangling, Path.Combine(dir, "nowhere")) |> ignore
                Expect.throwsWith<CheckpointException>
                    [ "symbolic link to"; "nowhere"; "does not exist" ]
                    (fun () -> load dangling)
                    "dangling"
                let empty = tempDir ()
                Expect.throwsWith<CheckpointException> [ "has no config.json" ] (fun () -> load empty) "no config"
            }
        ]

/// Runs `f` and returns how long it took, failing if it took longer than `seconds`.
let private quickly (seconds: float) (what: string) (f: unit -> unit) =
    let clock = Stopwatch.StartNew()
    f ()
    Expect.isLessThan clock.Elapsed.TotalSeconds seconds (sprintf "%s answers at once" what)

let memory =
    testList
        "requests that cannot fit are refused at once"
        [
            test "a toy width of a million: the estimate and the limit" {
                quickly 5.0 "width 10⁶"
                <| fun () ->
                    Expect.throwsWith<MemoryLimitException>
                        [ "width 1000000"; "needs about"; "TB"; "available"; "at most about" ]
                        (fun () -> (Model.toy 0 1_000_000 torch.float32).Dispose())
                        "toy width"
            }
            test "a nested-JVP jet of order 100000 is refused before it starts" {
                use x = torch.tensor (0.5, dtype = torch.float64)
                quickly 5.0 "order 100000"
                <| fun () ->
                    Expect.throwsWith<MemoryLimitException>
                        [ "order 100000"; "square" ]
                        (fun () ->
                            (Jet.compute (JetOptions.OfOrder 100000) (fun t -> torch.sin t) x (Some x) :> IDisposable)
                                .Dispose())
                        "jet order"
            }
            test "a forward pass on a billion tokens is refused before any allocation" {
                use model = Model.toy 0 8 torch.float32
                // An expanded view: no memory behind the billion ids.
                use tokens = torch.zeros(1L, dtype = torch.int64).expand (1L, 1_000_000_000L)
                quickly 5.0 "10⁹ tokens"
                <| fun () ->
                    Expect.throwsWith<MemoryLimitException>
                        [ "forward pass on 1 × 1000000000 tokens"; "shorter prompt" ]
                        (fun () -> (Trace.run model.Net tokens :> IDisposable).Dispose())
                        "forward"
            }
            test "estimates grow with the order (as its square), the prompt and the centres" {
                use model = Model.toy 0 8 torch.float32
                let e order seq centres = MemoryEstimate.expansion model.Net 1L seq order centres false
                Expect.isGreaterThan (e 64 8L 1) (25.0 * e 10 8L 1) "order²"
                Expect.isGreaterThan (e 4 100L 1) (e 4 10L 1) "prompt"
                Expect.floatClose Accuracy.high (e 4 10L 3) (3.0 * e 4 10L 1) "linear in centres"
            }
        ]

let rendering =
    testList
        "control characters are printed visibly, the same way everywhere"
        [
            test "C0 controls as <0xNN>, newline and tab as escapes, format characters as <U+NNNN>" {
                Expect.equal (Printable.escape "a\u0000b\u0007c\u001b[31m") "a<0x00>b<0x07>c<0x1B>[31m" "C0"
                Expect.equal (Printable.escape "x\ny\tz\r") "x\\ny\\tz\\r" "escapes"
                Expect.equal (Printable.escape "\u007f\u0085\u202e") "<0x7F><U+0085><U+202E>" "DEL, C1, RLO"
                Expect.equal (Printable.piece " Once") "␣Once" "a space is ␣"
                Expect.equal (Printable.escape "héllo 🙂") "héllo 🙂" "other text unchanged"
            }
            test "every character of a printed piece is visible, and escaping is idempotent" {
                let text = String [| for c in 0..0x2100 -> char c |]
                let once = Printable.escape text
                Expect.isFalse (once |> Seq.exists Char.IsControl) "no control character left"
                Expect.equal (Printable.escape once) once "idempotent"
            }
            test "a byte-level tokenizer's byte tokens print the same as the table helper" {
                let tokenizer = Model.tokenizer (Jet.Tests.Fixtures.path [ "gpt2-tokenizer" ])
                let ids = tokenizer.Encode "a\u0007b\u001bc"
                let pieces = ids |> Array.map (LogitMetrics.piece tokenizer)
                Expect.contains pieces "<0x07>" "BEL"
                Expect.contains pieces "<0x1B>" "ESC"
            }
        ]

[<Tests>]
let tests = testList "nothing silent" [ detection; loading; memory; rendering ]
