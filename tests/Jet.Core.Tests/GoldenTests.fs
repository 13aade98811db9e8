/// Golden files for what users read: the printed structure of one network per model family and a handful of plans.
/// Each file in golden/ holds the exact printed text (plus a final newline) and was reviewed by eye.
///
/// A change in printing shows up as a failing test with a line-by-line diff. When the change is intended, regenerate
/// the files and review them in the commit:
///     JETDSL_UPDATE_GOLDEN=1 dotnet tests/Jet.Core.Tests/bin/Release/net10.0/Jet.Core.Tests.dll --filter "golden files"
/// That writes into the source tree (tests/Jet.Core.Tests/golden/); without the variable (as in CI) the test only compares.
module Jet.Core.Tests.GoldenTests

open System
open System.IO
open Expecto
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Tests.FamilyCheckpoints
open Jet.Core.Tests.Llama3QwenCheckpoints

/// Where the test reads goldens (copied beside the test assembly) and where regeneration writes them (the sources).
let private copied = Path.Combine(AppContext.BaseDirectory, "golden")
let private sources = Path.Combine(__SOURCE_DIRECTORY__, "golden")
let private updating = Environment.GetEnvironmentVariable "JETDSL_UPDATE_GOLDEN" = "1"

/// The lines of expected and actual, marked "  " (same), "- " (expected only) and "+ " (actual only), by a longest
/// common subsequence, so one changed line shows as one "-" and one "+" among unchanged context.
let private diff (expected: string[]) (actual: string[]) =
    let n, m = expected.Length, actual.Length
    let common = Array2D.zeroCreate (n + 1) (m + 1)
    for i in n - 1 .. -1 .. 0 do
        for j in m - 1 .. -1 .. 0 do
            common.[i, j] <-
                if expected.[i] = actual.[j] then
                    common.[i + 1, j + 1] + 1
                else
                    max common.[i + 1, j] common.[i, j + 1]
    let rec walk i j =
        [
            if i < n && j < m && expected.[i] = actual.[j] then
                yield "  " + expected.[i]
                yield! walk (i + 1) (j + 1)
            elif i < n && (j = m || common.[i + 1, j] >= common.[i, j + 1]) then
                yield "- " + expected.[i]
                yield! walk (i + 1) j
            elif j < m then
                yield "+ " + actual.[j]
                yield! walk i (j + 1)
        ]
    walk 0 0

/// Compares `actual` with golden/`name`, or writes it there when regenerating.
let private expectGolden (name: string) (actual: string) =
    let text = actual.Replace("\r\n", "\n") + "\n"
    if updating then
        Directory.CreateDirectory sources |> ignore
        File.WriteAllText(Path.Combine(sources, name), text)
    else
        let path = Path.Combine(copied, name)
        if not (File.Exists path) then
            failtestf
                "golden/%s does not exist; run with JETDSL_UPDATE_GOLDEN=1 to write it, review it, and commit it. Actual:\n%s"
                name
                text
        let expected = File.ReadAllText(path).Replace("\r\n", "\n")
        if expected <> text then
            let lines (s: string) = s.TrimEnd('\n').Split '\n'
            let shown = diff (lines expected) (lines text) |> String.concat "\n"
            failtestf
                "golden/%s differs from what is printed now (- golden, + now); if the change is intended, regenerate with JETDSL_UPDATE_GOLDEN=1 and review:\n%s"
                name
                shown

/// One network per model family, printed: the checkpoints are the tiny ones the family tests write.
let private families: (string * (unit -> Net)) list =
    let load (case: FamilyCase) = (Model.load case.Dir torch.float32 torch.CPU).Net
    [
        "toy", (fun () -> (Model.toy 0 Model.ToyWidth torch.float32).Net)
        "gpt2", (fun () -> load (gpt2 11 "F32" gpt2Defaults))
        "gpt_neo", (fun () -> load (gptNeo 12 "F32"))
        "gpt_neox", (fun () -> load (gptNeoX 13 "F32" true))
        "gpt_neox_sequential", (fun () -> load (gptNeoX 14 "F32" false))
        "llama", (fun () -> load (llama 15 "F32"))
        "mistral", (fun () -> load (mistral 16 "F32"))
        "gemma", (fun () -> load (gemma 17 "F32"))
        "llama3_1", (fun () -> load (llama31 18 "F32" true))
        "qwen2_5", (fun () -> load (qwen25Windowed 20 "F32" [ None; Some 3 ]))
        "qwen3", (fun () -> load (qwen3 25 "F32"))
    ]

/// Plans of every shape a user writes: one layer, the decoder, composition, fixed and tensor weights, differences,
/// single terms and custom centres.
let private plans: (string * (unit -> Expansion)) list =
    let block2 = Expansion.atLayer 2 [ Centre.Stream 0; Centre.Gamma 1 ]
    [
        "single_layer", (fun () -> block2)
        "decoder", (fun () -> Expansion.atDecoder [ Centre.Stream 6; Centre.Embedding ] |> Expansion.withOrder 2)
        "composed",
        (fun () ->
            let l1 = Expansion.atLayer 1 [ Centre.Encoder ]
            let l2 = Expansion.atLayer 2 [ Centre.Terms l1; Centre.Stream 1 ] |> Expansion.withOrder 0
            Expansion.atDecoder [ Centre.Terms l2; Centre.Stream 2 ] |> Expansion.withOrder 3)
        "fixed_weights",
        (fun () ->
            Expansion.atDecoder [ Centre.Stream 0; Centre.Stream 3; Centre.Stream 6 ]
            |> Expansion.withOrder 0
            |> Expansion.withWeights (Weights.Fixed [ 1.0; 0.25; 1.0 / 3.0 ]))
        "tensor_weights",
        (fun () ->
            let w = torch.zeros([| 3L; 1L; 4L |], dtype = torch.float64).requires_grad_ true
            Expansion.atDecoder [ Centre.Embedding; Centre.Stream 1; Centre.Gamma 4 ]
            |> Expansion.withEngine Engine.Jvp
            |> Expansion.withWeightTensor (w.softmax 0L))
        "differences_terms_custom",
        (fun () ->
            let shifted = Centre.Custom { Name = "shifted(Emb)"; Apply = id }
            Expansion.atLayer
                3
                [
                    Centre.Difference(Centre.Stream 2, Centre.Stream 1)
                    Centre.Term(block2, 1)
                    Centre.Difference(Centre.Term(block2, 3), Centre.Gamma 2)
                    shifted
                ]
            |> Expansion.withOrder 1)
    ]

[<Tests>]
let tests =
    testList
        "golden files"
        [
            for name, make in families do
                test (sprintf "the %s network prints as golden/net_%s.txt" name name) {
                    use net = make ()
                    expectGolden (sprintf "net_%s.txt" name) (string net)
                }
            for name, make in plans do
                test (sprintf "the %s plan prints as golden/plan_%s.txt" name name) {
                    let plan = make ()
                    Expect.equal (string plan) (Print.plan plan) "ToString is the printer's"
                    expectGolden (sprintf "plan_%s.txt" name) (Print.plan plan)
                }
            test "the diff shows changed lines among unchanged ones" {
                Expect.equal
                    (diff [| "a"; "b"; "c" |] [| "a"; "B"; "c"; "d" |])
                    [ "  a"; "- b"; "+ B"; "  c"; "+ d" ]
                    "diff"
            }
        ]
