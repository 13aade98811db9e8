/// Bad checkpoints and bad requests: each is a JetException subclass with a one-line message that says what is
/// wrong and what is valid, raised before any tensor memory is touched.
module Jet.Core.Tests.CheckpointErrorTests

open System
open System.IO
open System.Text
open Expecto
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Tests.TestKit
open Jet.Core.Tests.TestCheckpoints
open Jet.Core.Tests.FamilyCheckpoints

let private load (dir: string) = (Model.load dir torch.float32 torch.CPU).Dispose()

/// Fails with 'E whose message mentions every fragment and fits on one line.
let private rejects<'E when 'E :> exn> (fragments: string list) (f: unit -> unit) (what: string) =
    Expect.throwsWith<'E> fragments f what
    try
        f ()
    with e ->
        Expect.isFalse (e.Message.Contains '\n') (sprintf "%s: the message is one line: %s" what e.Message)

/// A valid GPT-2 checkpoint directory whose model.safetensors the test then replaces.
let private gpt2Dir () = (gpt2 101 "F32" gpt2Defaults).Dir

let private weightsOf (dir: string) = Path.Combine(dir, "model.safetensors")

/// A GPT-2 checkpoint whose model.safetensors has `header` and `data` (declared length optional).
let private withFile (header: string) (data: byte[]) (declared: uint64 option) =
    let dir = gpt2Dir ()
    writeRaw (weightsOf dir) header data declared
    dir

let private f32 (name: string) (shape: int64[]) (first: int64) (last: int64) = name, "F32", shape, first, last

let fileTests =
    testList
        "malformed safetensors files"
        [
            test "a file shorter than the 8-byte header length is truncated" {
                let dir = gpt2Dir ()
                File.WriteAllBytes(weightsOf dir, [| 1uy; 2uy; 3uy |])
                rejects<CheckpointException>
                    [ "model.safetensors"; "truncated"; "3 bytes" ]
                    (fun () -> load dir)
                    "3-byte file"
            }
            test "a header length beyond the file" {
                let dir = withFile (headerJson [ f32 "x" [| 2L |] 0L 8L ]) (Array.zeroCreate 8) (Some 1_000_000UL)
                rejects<CheckpointException>
                    [ "header length 1000000"; "beyond the file" ]
                    (fun () -> load dir)
                    "header length too large"
            }
            test "a header that is not JSON" {
                let dir = withFile "{\"x\": {\"dtype\": \"F32\", " (Array.zeroCreate 8) None
                rejects<CheckpointException>
                    [ "model.safetensors"; "not valid JSON" ]
                    (fun () -> load dir)
                    "malformed JSON"
            }
            test "a header that is JSON but not an object" {
                let dir = withFile "[1, 2, 3]" [||] None
                rejects<CheckpointException> [ "must be a JSON object" ] (fun () -> load dir) "array header"
            }
            test "an entry without data_offsets" {
                let dir = withFile "{\"x\":{\"dtype\":\"F32\",\"shape\":[2]}}" (Array.zeroCreate 8) None
                rejects<CheckpointException> [ "'x'"; "data_offsets" ] (fun () -> load dir) "missing data_offsets"
            }
            test "an unknown dtype names the tensor and the valid dtypes" {
                let dir = withFile (headerJson [ "x", "F12", [| 2L |], 0L, 8L ]) (Array.zeroCreate 8) None
                rejects<CheckpointException>
                    [ "'x'"; "unknown dtype 'F12'"; "F32"; "BF16" ]
                    (fun () -> load dir)
                    "dtype F12"
            }
            test "offsets outside the data section" {
                let dir = withFile (headerJson [ f32 "x" [| 4L |] 8L 24L ]) (Array.zeroCreate 16) None
                rejects<CheckpointException>
                    [ "'x'"; "[8, 24]"; "outside the data section of 16 bytes" ]
                    (fun () -> load dir)
                    "offsets past the end"
            }
            test "a truncated file is caught by the last tensor's offsets" {
                let dir = gpt2Dir ()
                let bytes = File.ReadAllBytes(weightsOf dir)
                File.WriteAllBytes(weightsOf dir, Array.sub bytes 0 (bytes.Length - 100))
                rejects<CheckpointException> [ "outside the data section"; "truncated" ] (fun () -> load dir) "cut file"
            }
            test "overlapping tensors" {
                let dir =
                    withFile
                        (headerJson [ f32 "a" [| 4L |] 0L 16L; f32 "b" [| 4L |] 8L 24L ])
                        (Array.zeroCreate 24)
                        None
                rejects<CheckpointException> [ "'a' [0, 16]"; "'b' [8, 24]"; "overlap" ] (fun () -> load dir) "overlap"
            }
            test "holes in the data section" {
                let between =
                    withFile
                        (headerJson [ f32 "a" [| 2L |] 0L 8L; f32 "b" [| 2L |] 12L 20L ])
                        (Array.zeroCreate 20)
                        None
                rejects<CheckpointException>
                    [ "bytes [8, 12]"; "'a'"; "'b'"; "no holes" ]
                    (fun () -> load between)
                    "a hole between tensors"
                let before = withFile (headerJson [ f32 "a" [| 2L |] 4L 12L ]) (Array.zeroCreate 12) None
                rejects<CheckpointException>
                    [ "bytes [0, 4]"; "'a'"; "no holes" ]
                    (fun () -> load before)
                    "a hole before the first tensor"
                let after = withFile (headerJson [ f32 "a" [| 2L |] 0L 8L ]) (Array.zeroCreate 12) None
                rejects<CheckpointException>
                    [ "12 bytes"; "end at byte 8"; "4 bytes after them" ]
                    (fun () -> load after)
                    "trailing bytes"
            }
            test "offsets that do not match shape × dtype" {
                let dir = withFile (headerJson [ f32 "x" [| 3L |] 0L 8L ]) (Array.zeroCreate 8) None
                rejects<CheckpointException>
                    [ "'x'"; "F32 [3] = 12 bytes"; "span 8 bytes" ]
                    (fun () -> load dir)
                    "size mismatch"
            }
            test "a negative shape entry" {
                let dir =
                    withFile
                        "{\"x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}"
                        (Array.zeroCreate 8)
                        None
                rejects<CheckpointException> [ "'x'"; "non-negative integer" ] (fun () -> load dir) "negative dimension"
            }
            test "readHeader accepts the format's own example and reads metadata" {
                let dir = tempDir ()
                let path = Path.Combine(dir, "ok.safetensors")
                writeRaw
                    path
                    (headerJson [ f32 "a" [| 2L |] 0L 8L; f32 "empty" [| 0L; 3L |] 8L 8L ])
                    (Array.zeroCreate 8)
                    None
                let header = Safetensors.readHeader path
                Expect.equal header.Metadata.["format"] "pt" "__metadata__"
                Expect.equal header.Entries.Count 2 "two tensors, one empty"
                use file = SafetensorsFile.Open path
                use empty = file.ReadRaw "empty"
                Expect.equal empty.shape [| 0L; 3L |] "an empty tensor reads as empty"
            }
        ]

let directoryTests =
    testList
        "bad checkpoint directories and configs"
        [
            test "a missing directory" {
                rejects<CheckpointException>
                    [ "/no/such/dir"; "does not exist" ]
                    (fun () -> load "/no/such/dir")
                    "missing directory"
            }
            test "a directory without config.json" {
                let dir = tempDir ()
                rejects<CheckpointException> [ "no config.json" ] (fun () -> load dir) "missing config"
            }
            test "a directory without weights lists what it has" {
                let dir = gpt2Dir ()
                File.Delete(weightsOf dir)
                rejects<CheckpointException>
                    [ "has no weights"; "model.safetensors"; "model.safetensors.index.json"; "config.json" ]
                    (fun () -> load dir)
                    "missing weights"
            }
            test "pytorch_model.bin alone is refused with advice to use safetensors" {
                let dir = gpt2Dir ()
                File.Move(weightsOf dir, Path.Combine(dir, "pytorch_model.bin"))
                rejects<CheckpointException>
                    [ "pytorch_model.bin"; "pickle"; "model.safetensors"; "safe_serialization=True" ]
                    (fun () -> load dir)
                    "pickle"
            }
            test "an unsupported architecture lists the supported ones" {
                let dir = gpt2Dir ()
                writeConfig dir {| architectures = [ "BertForMaskedLM" ]; model_type = "bert" |}
                rejects<UnsupportedArchitectureException>
                    [
                        "BertForMaskedLM"
                        "GPT2LMHeadModel"
                        "GPTNeoForCausalLM"
                        "GPTNeoXForCausalLM"
                        "LlamaForCausalLM"
                        "MistralForCausalLM"
                        "GemmaForCausalLM"
                    ]
                    (fun () -> load dir)
                    "BERT"
            }
            test "a config without architectures falls back to model_type" {
                let case = gpt2 102 "F32" gpt2Defaults
                let text =
                    File
                        .ReadAllText(Path.Combine(case.Dir, "config.json"))
                        .Replace("\"architectures\":[\"GPT2LMHeadModel\"],", "")
                File.WriteAllText(Path.Combine(case.Dir, "config.json"), text)
                use model = Model.load case.Dir torch.float32 torch.CPU
                Expect.equal model.Family "gpt2" "found by model_type"
            }
            test "a config.json that is not JSON" {
                let dir = gpt2Dir ()
                File.WriteAllText(Path.Combine(dir, "config.json"), "{ \"n_embd\": ")
                rejects<CheckpointException> [ "config.json"; "not valid JSON" ] (fun () -> load dir) "bad config"
            }
            test "a config without a required size names the key" {
                let dir = gpt2Dir ()
                writeConfig
                    dir
                    {|
                        architectures = [ "GPT2LMHeadModel" ]
                        vocab_size = 40
                        n_head = 4
                        n_layer = 2
                        n_positions = 12
                    |}
                rejects<CheckpointException> [ "config.json"; "'n_embd' is missing" ] (fun () -> load dir) "no n_embd"
            }
            test "a config whose heads do not divide the width" {
                let dir = gpt2Dir ()
                writeConfig
                    dir
                    {|
                        architectures = [ "GPT2LMHeadModel" ]
                        vocab_size = 40
                        n_embd = 16
                        n_head = 3
                        n_layer = 2
                        n_positions = 12
                    |}
                rejects<CheckpointException> [ "'n_embd' is 16"; "n_head = 3" ] (fun () -> load dir) "16 / 3"
            }
            test "a config with a size of the wrong JSON type" {
                let dir = gpt2Dir ()
                writeConfig
                    dir
                    {|
                        architectures = [ "GPT2LMHeadModel" ]
                        vocab_size = 40
                        n_embd = "sixteen"
                        n_head = 4
                        n_layer = 2
                        n_positions = 12
                    |}
                rejects<CheckpointException> [ "'n_embd'"; "\"sixteen\""; "integer" ] (fun () -> load dir) "string size"
            }
            test "an unsupported activation lists the supported ones" {
                let dir = gpt2Dir ()
                let path = Path.Combine(dir, "config.json")
                File.WriteAllText(path, File.ReadAllText(path).Replace("gelu_new", "quick_gelu"))
                rejects<CheckpointException>
                    [ "'activation_function'"; "quick_gelu"; "gelu_new" ]
                    (fun () -> load dir)
                    "quick_gelu"
            }
            test
                "Llama with a rope_scaling type JetDsl does not implement (yarn) is refused rather than computed wrongly" {
                let case = llama 103 "F32"
                let path = Path.Combine(case.Dir, "config.json")
                File.WriteAllText(
                    path,
                    File
                        .ReadAllText(path)
                        .Replace("\"rope_scaling\":null", "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0}")
                )
                rejects<CheckpointException>
                    [ "'rope_scaling'"; "'yarn'"; "default, linear, llama3" ]
                    (fun () -> load case.Dir)
                    "rope scaling"
            }
            test "GPT-Neo attention_types that do not cover num_layers" {
                let case = gptNeo 104 "F32"
                let path = Path.Combine(case.Dir, "config.json")
                File.WriteAllText(
                    path,
                    File.ReadAllText(path).Replace("[[[\"global\",\"local\"],1]]", "[[[\"global\"],1]]")
                )
                rejects<CheckpointException>
                    [ "'attention_types'"; "1 layers"; "num_layers is 2" ]
                    (fun () -> load case.Dir)
                    "attention_types"
            }
            test "a missing tensor is named" {
                let case = gpt2 105 "F32" gpt2Defaults
                let kept = case.Weights |> Map.remove "transformer.h.1.ln_2.bias" |> Map.toList
                writeSafetensors (weightsOf case.Dir) "F32" kept
                rejects<CheckpointException>
                    [ "no tensor 'transformer.h.1.ln_2.bias'"; "gpt2" ]
                    (fun () -> load case.Dir)
                    "missing ln_2.bias"
            }
            test "a tensor with the wrong shape is named with expected and actual shapes" {
                let case = gpt2 106 "F32" gpt2Defaults
                let changed =
                    case.Weights
                    |> Map.add "transformer.h.0.mlp.c_fc.weight" (torch.zeros (16L, 32L, dtype = torch.float64))
                    |> Map.toList
                writeSafetensors (weightsOf case.Dir) "F32" changed
                rejects<CheckpointException>
                    [ "'transformer.h.0.mlp.c_fc.weight'"; "has shape [16, 32]"; "requires [16, 64]"; "Conv1D" ]
                    (fun () -> load case.Dir)
                    "wrong shape"
            }
            test "an integer tensor where a parameter is expected" {
                let case = gpt2 107 "F32" gpt2Defaults
                let dir = case.Dir
                let path = weightsOf dir
                let bytes = File.ReadAllBytes path
                let n = int (BitConverter.ToUInt64(bytes, 0))
                let header = Encoding.UTF8.GetString(bytes, 8, n)
                // Same bytes, but ln_f.bias declared as I32.
                let marker = "\"transformer.ln_f.bias\":{\"dtype\":\"F32\""
                Expect.stringContains header marker "the header has ln_f.bias"
                writeRaw
                    path
                    (header.Replace(marker, "\"transformer.ln_f.bias\":{\"dtype\":\"I32\"").TrimEnd())
                    (Array.sub bytes (8 + n) (bytes.Length - 8 - n))
                    None
                rejects<CheckpointException>
                    [ "'transformer.ln_f.bias'"; "I32"; "F16, BF16, F32 or F64" ]
                    (fun () -> load dir)
                    "integer parameter"
            }
            test "an index that lists a missing shard" {
                let case = gpt2 108 "F32" gpt2Defaults
                File.Delete(weightsOf case.Dir)
                File.WriteAllText(
                    Path.Combine(case.Dir, "model.safetensors.index.json"),
                    "{\"weight_map\":{\"transformer.wte.weight\":\"model-00001-of-00002.safetensors\"}}"
                )
                rejects<CheckpointException>
                    [ "model-00001-of-00002.safetensors"; "missing" ]
                    (fun () -> load case.Dir)
                    "missing shard"
            }
            test "an index that is not an index" {
                let case = gpt2 109 "F32" gpt2Defaults
                File.Delete(weightsOf case.Dir)
                File.WriteAllText(Path.Combine(case.Dir, "model.safetensors.index.json"), "{\"metadata\":{}}")
                rejects<CheckpointException> [ "weight_map" ] (fun () -> load case.Dir) "no weight_map"
            }
            test "a non-floating dtype is refused" {
                let case = gpt2 110 "F32" gpt2Defaults
                rejects<DTypeException>
                    [ "float32"; "Int64" ]
                    (fun () -> Model.load case.Dir torch.int64 torch.CPU |> ignore)
                    "int64 model"
            }
        ]

let promptTests =
    testList
        "bad prompts and missing tokenizers"
        [
            test "an empty prompt" {
                use model = Model.load (gpt2 111 "F32" gpt2Defaults).Dir torch.float32 torch.CPU
                rejects<MissingArgumentException>
                    [ "prompt is empty" ]
                    (fun () -> Model.encode model "" |> ignore)
                    "empty prompt"
            }
            test "a checkpoint without tokenizer files loads, but encoding says what is missing" {
                use model = Model.load (gpt2 112 "F32" gpt2Defaults).Dir torch.float32 torch.CPU
                rejects<CheckpointException>
                    [ "no tokenizer files"; "tokenizer.json" ]
                    (fun () -> model.Tokenizer.Encode "hi" |> ignore)
                    "no tokenizer"
            }
            test "a prompt longer than the context" {
                use model = Model.load (gpt2 113 "F32" gpt2Defaults).Dir torch.float32 torch.CPU
                rejects<IndexRangeException>
                    [ "13 tokens"; "at most 12 positions" ]
                    (fun () -> Trace.run model.Net (torch.zeros (13L, dtype = torch.int64)) |> ignore)
                    "13 > 12"
            }
            test "token ids outside the vocabulary" {
                use model = Model.load (gpt2 114 "F32" gpt2Defaults).Dir torch.float32 torch.CPU
                rejects<IndexRangeException>
                    [ "Token id 40"; "0..39" ]
                    (fun () -> Trace.run model.Net (torch.tensor [| 1L; 40L |]) |> ignore)
                    "id 40"
            }
            test "a weights file truncated after it was opened is an error, not a crash" {
                let dir = gpt2Dir ()
                use checkpoint = Checkpoint.openDirectory dir
                let last = checkpoint.Names |> List.maxBy (fun n -> (checkpoint.TryEntry n).Value.Begin)
                // Reads go through positioned reads: bytes gone from the file end the read early (a memory map
                // would fault with SIGBUS and kill the process).
                use stream = new FileStream(weightsOf dir, FileMode.Open, FileAccess.Write, FileShare.ReadWrite)
                stream.SetLength(stream.Length - 4L)
                stream.Dispose()
                rejects<CheckpointException>
                    [ "model.safetensors"; "truncated after it was opened" ]
                    (fun () -> checkpoint.ReadRaw(last).Dispose())
                    "a shortened file"
            }
        ]

[<Tests>]
let tests = testList "checkpoint errors" [ fileTests; directoryTests; promptTests ]
