/// Fuzzing the loaders: corrupt safetensors files (header lengths, header entries, truncations, byte flips), corrupt
/// config.json and corrupt tokenizer files, each written over a copy of a real tiny checkpoint and loaded. Every case
/// must end, within a time limit, in a clear typed error (a JetException) or a correct load (finite weights, a
/// forward pass that runs, a tokenizer that encodes); never an unhandled exception, never a hang.
///
/// Fixed seed and JETDSL_FUZZ_CASES cases per category (default 60; the seven categories take about 20 s). A longer
/// local run: `JETDSL_FUZZ_CASES=2000 dotnet tests/Jet.Core.Tests/bin/Release/net10.0/Jet.Core.Tests.dll
/// --filter-test-list fuzz`;
/// JETDSL_FUZZ_SEED picks another seed; JETDSL_FUZZ_CENSUS=1 counts defects instead of failing at the first. Each
/// category prints its outcomes (how many cases ended how).
module Jet.Core.Tests.FuzzTests

open System
open System.IO
open System.Text
open System.Text.Json.Nodes
open System.Threading.Tasks
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Jet.Core
open Jet.Core.Models

/// Cases per category.
let caseCount =
    match Int32.TryParse(Environment.GetEnvironmentVariable "JETDSL_FUZZ_CASES") with
    | true, n when n > 0 -> n
    | _ -> 60

/// The FsCheck seed (fixed unless JETDSL_FUZZ_SEED is set).
let private seed =
    match UInt64.TryParse(Environment.GetEnvironmentVariable "JETDSL_FUZZ_SEED") with
    | true, s -> s
    | _ -> 20261202UL

/// JETDSL_FUZZ_CENSUS=1 records defects without failing, to count every category in one run (for comparing builds).
let census = Environment.GetEnvironmentVariable "JETDSL_FUZZ_CENSUS" = "1"

/// Seconds a case may take before it counts as a hang.
let private limitSeconds = 30.0

/// The real checkpoint every case corrupts a copy of: GPT-2 with a 21-token vocabulary (vocab.json + merges.txt).
let private fixture = Jet.Tests.Fixtures.path [ "lm-buddy-tiny-gpt2-toyvocab" ]

let private copyFixture () =
    let dir = TestCheckpoints.tempDir ()
    for f in Directory.GetFiles fixture do
        File.Copy(f, Path.Combine(dir, Path.GetFileName f))
    dir

/// How a case ended. A defect fails the property; the others are what every case may end in.
type Outcome =
    | Loaded
    /// Loaded with finite weights whose forward pass overflows (huge finite values): what `jet` flags with exit 3.
    | LoadedNonFiniteOutput
    | Refused of kind: string
    | Defect of what: string

/// Loads the model in `dir` (the weights, then a forward pass and an encode/decode round), classifying the end.
let private loadAndUse (dir: string) : Outcome =
    use scope = torch.NewDisposeScope()
    use model = Model.load dir torch.float32 torch.CPU
    let nonFinite =
        model.Net.Parameters.Tensors.Values
        |> Seq.tryFind (fun t -> not (torch.isfinite(t).all().item<bool> ()))
    match nonFinite with
    | Some _ -> Defect "non-finite weights loaded without an error"
    | None ->
        let ids = model.Tokenizer.Encode "the cat"
        model.Tokenizer.Decode ids |> ignore
        let tokens =
            torch.tensor([| for id in ids -> int64 (id % model.Net.Vocab) |], dtype = torch.int64).unsqueeze 0
        use trace = Trace.run model.Net tokens
        if torch.isfinite(Trace.logits trace).all().item<bool> () then
            Loaded
        else
            LoadedNonFiniteOutput

/// Only the tokenizer of `dir`, then an encode/decode round.
let private tokenizerOnly (dir: string) : Outcome =
    let tokenizer = Model.tokenizer dir
    let ids = tokenizer.Encode "Hello, wörld\n\u0007"
    tokenizer.Decode ids |> ignore
    for id in ids do
        tokenizer.Piece id |> ignore
    Loaded

/// Runs a case on a worker thread with the time limit; exceptions other than JetException are defects.
let private classify (case: unit -> Outcome) : Outcome =
    let work =
        Task.Run(fun () ->
            try
                case ()
            with
            | :? JetException as e -> Refused(e.GetType().Name)
            | e ->
                let first = e.Message.Split('\n').[0]
                Defect(sprintf "unhandled %s: %s" (e.GetType().Name) first))
    if work.Wait(TimeSpan.FromSeconds limitSeconds) then
        work.Result
    else
        Defect(sprintf "hang (no answer within %.0f s)" limitSeconds)

/// A category: a generator of corruptions (applied to a fresh copy of the fixture) and what to load.
let private category (name: string) (corruption: Gen<string * (string -> unit)>) (use': string -> Outcome) =
    test name {
        let outcomes = Collections.Concurrent.ConcurrentBag<string * Outcome>()
        let property =
            Prop.forAll (Arb.fromGen corruption) (fun (label: string, corrupt) ->
                let dir = copyFixture ()
                corrupt dir
                let outcome = classify (fun () -> use' dir)
                outcomes.Add((label, outcome))
                match outcome with
                | Defect what when not census -> failwithf "%s: %s" label what
                | Defect what -> eprintfn "DEFECT %s: %s" label what
                | _ -> ())
        let config =
            Config.QuickThrowOnFailure.WithMaxTest(caseCount).WithReplay(Some { Rnd = Rnd seed; Size = None })
        Check.One(config, property)
        let summary =
            outcomes
            |> Seq.countBy (fun (_, o) ->
                match o with
                | Loaded -> "loaded"
                | LoadedNonFiniteOutput -> "loaded, non-finite logits"
                | Refused kind -> "refused: " + kind
                | Defect what -> "DEFECT: " + what)
            |> Seq.sortBy fst
            |> Seq.map (fun (k, n) -> sprintf "%s ×%d" k n)
            |> String.concat ", "
        printfn "fuzz %s: %d cases: %s" name outcomes.Count summary
    }

// ---- generators ----

let private weightsFile (dir: string) = Path.Combine(dir, "model.safetensors")

/// The fixture's safetensors file split into its header JSON and the bytes after it.
let private original =
    lazy
        (let bytes = File.ReadAllBytes(Path.Combine(fixture, "model.safetensors"))
         let n = int (BitConverter.ToUInt64(bytes, 0))
         Encoding.UTF8.GetString(bytes, 8, n), bytes.[8 + n ..])

let private hostileInts =
    [ -1L; 0L; 1L; 2L; 3L; 7L; 8L; 21L; 1024L; 65535L; 1L <<< 31; 1L <<< 40; Int64.MaxValue ]

let private intGen = Gen.oneof [ Gen.elements hostileInts; Gen.choose (-5, 5000) |> Gen.map int64 ]

let private headerLengthGen =
    gen {
        let header, data = original.Value
        let actual = uint64 (Encoding.UTF8.GetByteCount header)
        let total = actual + uint64 data.Length
        let! declared =
            Gen.oneof
                [
                    Gen.elements
                        [
                            0UL
                            1UL
                            2UL
                            7UL
                            actual - 1UL
                            actual + 1UL
                            total
                            total + 1UL
                            1UL <<< 31
                            UInt64.MaxValue
                        ]
                    Gen.choose (0, int total + 64) |> Gen.map uint64
                ]
        return
            sprintf "header length %d" declared,
            fun dir -> TestCheckpoints.writeRaw (weightsFile dir) header data (Some declared)
    }

let private entryGen =
    gen {
        let header, data = original.Value
        let names =
            (JsonNode.Parse header).AsObject()
            |> Seq.map (fun kv -> kv.Key)
            |> Seq.filter (fun k -> k <> "__metadata__")
            |> Array.ofSeq
        let! name = Gen.elements names
        let! dtype =
            Gen.elements [ "F32"; "F16"; "BF16"; "F64"; "I64"; "I32"; "I8"; "U8"; "BOOL"; "F8_E4M3"; "XYZ"; "" ]
        let! rank = Gen.choose (0, 4)
        let! shape = Gen.listOfLength rank intGen
        let! first = intGen
        let! last = intGen
        let! junk = Gen.elements [ "null"; "1"; "\"F32\""; "[]"; "{}"; "[1,2,3]"; "true"; "-1e308" ]
        let! field = Gen.elements [ "dtype"; "shape"; "data_offsets" ]
        let! kind = Gen.choose (0, 6)
        let mutate (root: JsonObject) =
            let entry = root.[name].AsObject()
            match kind with
            | 0 -> entry.["dtype"] <- JsonValue.Create dtype
            | 1 -> entry.["shape"] <- JsonArray([| for s in shape -> JsonValue.Create s :> JsonNode |])
            | 2 -> entry.["data_offsets"] <- JsonArray(JsonValue.Create first, JsonValue.Create last)
            | 3 -> root.Remove name |> ignore
            | 4 -> entry.[field] <- JsonNode.Parse junk
            | 5 -> entry.Remove field |> ignore
            | _ -> root.[name] <- JsonNode.Parse junk
        let label =
            match kind with
            | 0 -> sprintf "%s dtype %s" name dtype
            | 1 -> sprintf "%s shape %A" name shape
            | 2 -> sprintf "%s data_offsets [%d, %d]" name first last
            | 3 -> sprintf "%s removed" name
            | 4 -> sprintf "%s %s = %s" name field junk
            | 5 -> sprintf "%s without %s" name field
            | _ -> sprintf "%s = %s" name junk
        return
            "header entry " + label,
            fun dir ->
                let root = (JsonNode.Parse header).AsObject()
                mutate root
                TestCheckpoints.writeRaw (weightsFile dir) (root.ToJsonString()) data None
    }

/// Truncates, or flips 1–8 random bytes of, a file of the checkpoint.
let private bytesGen (file: string) =
    gen {
        let length = int (FileInfo(Path.Combine(fixture, file))).Length
        let! truncate = Gen.elements [ true; false ]
        let! cut = Gen.choose (0, max 0 (length - 1))
        let! count = Gen.choose (1, 8)
        let! flips = Gen.listOfLength count (Gen.zip (Gen.choose (0, length - 1)) (Gen.choose (0, 255)))
        if truncate then
            return
                sprintf "%s truncated to %d of %d bytes" file cut length,
                fun dir ->
                    let path = Path.Combine(dir, file)
                    File.WriteAllBytes(path, (File.ReadAllBytes path).[.. cut - 1])
        else
            return
                sprintf "%s bytes %A" file flips,
                fun dir ->
                    let path = Path.Combine(dir, file)
                    let bytes = File.ReadAllBytes path
                    for at, value in flips do
                        bytes.[at] <- byte value
                    File.WriteAllBytes(path, bytes)
    }

/// A float of the weights set to NaN, ±Inf or a huge finite value (bit patterns, as a corrupt writer would leave).
let private valueGen =
    gen {
        let header, data = original.Value
        let! at = Gen.choose (0, data.Length / 4 - 1)
        let! bits = Gen.elements [ 0x7FC00000u; 0x7F800000u; 0xFF800000u; 0x7F7FFFFFu; 0xFFFFFFFFu ]
        return
            sprintf "float %d of the data = 0x%08X" at bits,
            fun dir ->
                let copy = Array.copy data
                BitConverter.GetBytes(bits).CopyTo(copy, 4 * at)
                TestCheckpoints.writeRaw (weightsFile dir) header copy None
    }

let private configGen =
    gen {
        let text = File.ReadAllText(Path.Combine(fixture, "config.json"))
        let keys = (JsonNode.Parse text).AsObject() |> Seq.map (fun kv -> kv.Key) |> Array.ofSeq
        let! key = Gen.elements (Array.append keys [| "num_hidden_layers"; "tie_word_embeddings"; "rope_scaling" |])
        let! value =
            Gen.elements
                [
                    "null"
                    "-1"
                    "0"
                    "1"
                    "2"
                    "3"
                    "1099511627776"
                    "1e308"
                    "-1e308"
                    "1.5"
                    "\"x\""
                    "[]"
                    "{}"
                    "true"
                    "\"NaN\""
                    "2147483648"
                    "-0.0"
                    "\"GPT2Model\""
                ]
        let! remove = Gen.frequency [ 1, Gen.constant true; 5, Gen.constant false ]
        return
            (if remove then
                 sprintf "config.json without %s" key
             else
                 sprintf "config.json %s = %s" key value),
            fun dir ->
                let root = (JsonNode.Parse text).AsObject()
                if remove then
                    root.Remove key |> ignore
                else
                    root.[key] <- JsonNode.Parse value
                File.WriteAllText(Path.Combine(dir, "config.json"), root.ToJsonString())
    }

let private tokenizerGen =
    gen {
        let! file = Gen.elements [ "vocab.json"; "merges.txt"; "tokenizer_config.json"; "special_tokens_map.json" ]
        let! replace = Gen.frequency [ 1, Gen.constant true; 3, Gen.constant false ]
        let! content =
            Gen.elements
                [ ""; "{}"; "[]"; "null"; "{\"a\": -1}"; "{\"a\": 99999999999}"; "#version\na"; "\u0000\u0001" ]
        if replace then
            return
                sprintf "%s = %A" file content, fun (dir: string) -> File.WriteAllText(Path.Combine(dir, file), content)
        else
            return! bytesGen file
    }

[<Tests>]
let tests =
    testSequenced
    <| testList
        "fuzz"
        [
            category "safetensors header lengths" headerLengthGen loadAndUse
            category "safetensors header entries (dtypes, shapes, offsets)" entryGen loadAndUse
            category "safetensors truncations and byte flips" (bytesGen "model.safetensors") loadAndUse
            category "non-finite and huge weight values" valueGen loadAndUse
            category "config.json values" configGen loadAndUse
            category "config.json truncations and byte flips" (bytesGen "config.json") loadAndUse
            category "tokenizer files" tokenizerGen tokenizerOnly
        ]
