/// Smoke tests of `jet info`, `jet tokenize` and `jet run` on the built-in toy, the real GPT-2 fixture and bad input.
module Jet.Cli.Tests.ModelCommandTests

open System
open System.IO
open Expecto
open TorchSharp
open Jet.Cli.Tests.CliRunner

let private fakeGpt2 = Jet.Tests.Fixtures.path [ "lm-buddy-fake-gpt2" ]

/// Exit code 1 and exactly one line on stderr, an `error:` that mentions every fragment.
let private failsWith (fragments: string list) (r: CliResult) =
    Expect.equal r.ExitCode 1 (sprintf "exit code (stderr: %s)" r.Stderr)
    let lines = r.Stderr.Trim().Split('\n')
    Expect.equal lines.Length 1 (sprintf "one line on stderr: %s" r.Stderr)
    Expect.stringStarts lines.[0] "error: " "an error line"
    for f in fragments do
        Expect.stringContains r.Stderr f "the error says what is wrong"

/// A directory with the fixture's config.json and, optionally, a weights file made from the fixture's.
let private brokenCheckpoint (weights: (byte[] -> byte[]) option) =
    let dir = tempDir ()
    File.Copy(Path.Combine(fakeGpt2, "config.json"), Path.Combine(dir, "config.json"))
    weights
    |> Option.iter (fun f ->
        File.WriteAllBytes(
            Path.Combine(dir, "model.safetensors"),
            f (File.ReadAllBytes(Path.Combine(fakeGpt2, "model.safetensors")))
        ))
    dir

/// A small random Llama checkpoint stored in bfloat16, with the Llama-2 tokenizer (vocabulary 32,000).
let private bf16Llama =
    lazy
        (Jet.Core.Native.ensure ()
         let dir = tempDir ()
         let shape =
             { Jet.Tests.RandomLlama.tinyLlama with
                 Layers = 2
                 Hidden = 64
                 Intermediate = 128
                 Heads = 4
                 KvHeads = 2
             }
         Jet.Tests.RandomLlama.write dir shape 1 5
         let tokenizer = Jet.Tests.Fixtures.path [ "llama2-tokenizer-json" ]
         File.Copy(Path.Combine(tokenizer, "llama_tokenizer.json"), Path.Combine(dir, "tokenizer.json"))
         File.Copy(Path.Combine(tokenizer, "llama_tokenizer_config.json"), Path.Combine(dir, "tokenizer_config.json"))
         dir, Jet.Tests.RandomLlama.weightBytes shape)

[<Tests>]
let tests =
    testList
        "jet info, tokenize, run"
        [
            test "bfloat16 weights stay bfloat16 and compute in float32 unless --dtype or --compute-dtype say otherwise" {
                let dir, bytes = bf16Llama.Value
                let info (extra: string list) =
                    let root = json (run ([ "info"; "--model"; dir; "--json" ] @ extra))
                    root.GetProperty("dtype").GetString(), root.GetProperty("storage_dtype").GetString()
                Expect.equal (info []) ("float32", "bfloat16") "default: kept as stored, computed in float32"
                Expect.equal (info [ "--compute-dtype"; "float64" ]) ("float64", "bfloat16") "--compute-dtype"
                Expect.equal (info [ "--dtype"; "float32" ]) ("float32", "float32") "--dtype alone converts at load"
                Expect.equal (info [ "--dtype"; "bfloat16" ]) ("bfloat16", "bfloat16") "--dtype alone computes in it"
                let root = json (run [ "info"; "--model"; dir; "--json" ])
                Expect.equal (root.GetProperty("weight_bytes").GetInt64()) bytes "two bytes per weight"
                // bfloat16 values are exact in float32: widening per layer and converting at load compute the same.
                let predictions (extra: string list) =
                    let r = run ([ "run"; "--model"; dir; "--prompt"; "Hello world"; "--top"; "3"; "--json" ] @ extra)
                    (json r).GetProperty("positions").GetRawText()
                Expect.equal (predictions []) (predictions [ "--dtype"; "float32" ]) "same predictions"
                failsWith
                    [ "Unknown --compute-dtype 'int8'"; "float32, float64, bfloat16, float16" ]
                    (run [ "run"; "--model"; dir; "--prompt"; "a"; "--compute-dtype"; "int8" ])
            }
            test "info on the GPT-2 fixture" {
                let root = json (run [ "info"; "--model"; fakeGpt2; "--json" ])
                Expect.equal (root.GetProperty("family").GetString()) "gpt2" "family"
                Expect.equal (root.GetProperty("blocks").GetInt32()) 1 "blocks"
                Expect.equal (root.GetProperty("residual_layers").GetInt32()) 2 "residual layers"
                Expect.equal (root.GetProperty("width").GetInt32()) 2 "width"
                Expect.equal (root.GetProperty("heads").GetInt32()) 1 "heads"
                Expect.equal (root.GetProperty("vocab").GetInt32()) 50257 "vocabulary"
                // 50257·2 (wte, also the head) + 1024·2 (wpe) + 1·(ln 4 + attn 18 + proj 6 + ln 4 + fc 24 + proj 18) + ln_f 4.
                Expect.equal (root.GetProperty("parameters").GetInt64()) 102640L "parameters, tied head counted once"
                Expect.equal (root.GetProperty("dtype").GetString()) "float32" "dtype"
                let text = run [ "info"; "--model"; fakeGpt2 ]
                Expect.equal text.ExitCode 0 "text mode"
                Expect.stringContains text.Stdout "residual layers" "table"
            }
            test "info on the toy model" {
                let root = json (run [ "info"; "--model"; "toy"; "--json"; "--dtype"; "float64" ])
                Expect.equal (root.GetProperty("family").GetString()) "toy" "family"
                Expect.equal (root.GetProperty("residual_layers").GetInt32()) 2 "two blocks"
                Expect.equal (root.GetProperty("dtype").GetString()) "float64" "dtype"
            }
            test "tokenize \"Hello world\" with the GPT-2 fixture" {
                let root = json (run [ "tokenize"; "--model"; fakeGpt2; "--text"; "Hello world"; "--json" ])
                Expect.equal [ for x in root.GetProperty("ids").EnumerateArray() -> x.GetInt32() ] [ 15496; 995 ] "ids"
                Expect.equal
                    [ for x in root.GetProperty("tokens").EnumerateArray() -> x.GetString() ]
                    [ "Hello"; "␣world" ]
                    "pieces"
            }
            test "tokenize with a directory that holds only tokenizer files" {
                let root =
                    json (
                        run
                            [
                                "tokenize"
                                "--model"
                                (Jet.Tests.Fixtures.path [ "gpt2-tokenizer" ])
                                "--text"
                                "Hello world<|endoftext|>"
                                "--json"
                            ]
                    )
                Expect.equal
                    [ for x in root.GetProperty("ids").EnumerateArray() -> x.GetInt32() ]
                    [ 15496; 995; 50256 ]
                    "ids"
            }
            test "tokenize with a Qwen3 directory that holds config.json and the tokenizer files only" {
                let dir = tempDir ()
                for file in [ "tokenizer.json"; "tokenizer_config.json" ] do
                    File.Copy(Jet.Tests.Fixtures.path [ "qwen3-tokenizer"; file ], Path.Combine(dir, file))
                File.WriteAllText(
                    Path.Combine(dir, "config.json"),
                    "{\"architectures\":[\"Qwen3ForCausalLM\"],\"model_type\":\"qwen3\",\"vocab_size\":151936}"
                )
                let root = json (run [ "tokenize"; "--model"; dir; "--text"; "Hello world<|im_end|>"; "--json" ])
                Expect.equal
                    [ for x in root.GetProperty("ids").EnumerateArray() -> x.GetInt32() ]
                    [ 9707; 1879; 151645 ]
                    "ids, no BOS"
                Expect.equal
                    [ for x in root.GetProperty("tokens").EnumerateArray() -> x.GetString() ]
                    [ "Hello"; "␣world"; "<|im_end|>" ]
                    "pieces"
            }
            test "tokenize with a directory without tokenizer files" {
                run [ "tokenize"; "--model"; tempDir (); "--text"; "hi" ] |> failsWith [ "no tokenizer files" ]
            }
            test "tokenize with the toy's character tokenizer" {
                let root = json (run [ "tokenize"; "--model"; "toy"; "--text"; "hi"; "--json" ])
                Expect.equal
                    [ for x in root.GetProperty("ids").EnumerateArray() -> x.GetInt32() ]
                    [ 72; 73 ]
                    "'h' and 'i'"
            }
            test "run on the GPT-2 fixture prints the model's own top-K logits at every position" {
                let root = json (run [ "run"; "--model"; fakeGpt2; "--prompt"; "Hello world"; "--top"; "4"; "--json" ])
                let tokens =
                    [
                        for t in root.GetProperty("tokens").EnumerateArray() ->
                            t.GetProperty("id").GetInt32(), t.GetProperty("text").GetString()
                    ]
                Expect.equal tokens [ 15496, "Hello"; 995, " world" ] "prompt tokens"
                let positions =
                    [
                        for p in root.GetProperty("positions").EnumerateArray() ->
                            [
                                for t in p.GetProperty("top").EnumerateArray() ->
                                    t.GetProperty("id").GetInt32(), t.GetProperty("logit").GetDouble()
                            ]
                    ]
                Expect.equal positions.Length 2 "one entry per position"
                // The same logits computed in this process through the library.
                Jet.Core.Native.ensure ()
                use model = Jet.Core.Models.Model.load fakeGpt2 torch.float32 torch.CPU
                use trace = Jet.Core.Trace.run model.Net (torch.tensor [| 15496L; 995L |])
                let logits = (Jet.Core.Trace.logits trace).[0L]
                positions
                |> List.iteri (fun p top ->
                    Expect.equal top.Length 4 "top 4"
                    let struct (expected: TorchSharp.torch.Tensor, _) = logits.[int64 p].topk (4)
                    for j, (id, logit) in List.indexed top do
                        Expect.floatClose
                            Accuracy.medium
                            logit
                            (logits.[int64 p, int64 id].item<float32> () |> float)
                            (sprintf "logit of %d at position %d" id p)
                        Expect.floatClose
                            Accuracy.medium
                            logit
                            (expected.[int64 j].item<float32> () |> float)
                            (sprintf "rank %d at position %d" j p))
            }
            test "run on the toy model, as a table" {
                let r = run [ "run"; "--model"; "toy"; "--prompt"; "abc"; "--top"; "2" ]
                Expect.equal r.ExitCode 0 (sprintf "exit code (stderr: %s)" r.Stderr)
                Expect.stringContains r.Stdout "top 2 next tokens" "header"
            }
            test "run --continue on stories260K prints the published greedy continuation" {
                let stories = Jet.Tests.Fixtures.path [ "stories260K" ]
                let prompt = "Once upon a time"
                let r = run [ "run"; "--model"; stories; "--prompt"; prompt; "--continue"; "20"; "--json" ]
                Expect.equal r.ExitCode 0 (sprintf "exit code (stderr: %s)" r.Stderr)
                let continuation = (json r).GetProperty "continuation"
                Expect.equal (continuation.GetProperty("ids").GetArrayLength()) 20 "20 new tokens"
                let text = continuation.GetProperty("text").GetString()
                // The prompt is the published story's first four tokens after <s>, so greedy decoding goes on with it
                // (the model card's text; tests/Jet.Core.Tests/Stories260KTests.fs checks 99 tokens from <s>).
                let published =
                    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
                Expect.stringStarts published (prompt + text) "the published continuation"
                Expect.isGreaterThan text.Length 40 "20 tokens of text"
                let table = run [ "run"; "--model"; stories; "--prompt"; prompt; "--continue"; "5" ]
                Expect.equal table.ExitCode 0 (sprintf "exit code (stderr: %s)" table.Stderr)
                Expect.stringContains table.Stdout "greedy continuation (5 tokens):" "table mode names the continuation"
                run [ "run"; "--model"; "toy"; "--prompt"; "abc"; "--continue"; "-1" ]
                |> failsWith [ "--continue -1"; "0 or more" ]
            }
            test "JETDSL_MMAP=0 copies the weights and prints what the mapped default prints" {
                let stories = Jet.Tests.Fixtures.path [ "stories260K" ]
                let args = [ "run"; "--model"; stories; "--prompt"; "Once upon a time"; "--continue"; "8"; "--json" ]
                let mapped = run args
                Expect.equal mapped.ExitCode 0 (sprintf "exit code (stderr: %s)" mapped.Stderr)
                for value in [ "0"; "off" ] do
                    let copied = runWith [ "JETDSL_MMAP", value ] Environment.CurrentDirectory 300 args
                    Expect.equal copied.ExitCode 0 (sprintf "exit code (stderr: %s)" copied.Stderr)
                    Expect.equal copied.Stdout mapped.Stdout (sprintf "JETDSL_MMAP=%s: the same JSON" value)
            }
            test "a missing directory" {
                run [ "run"; "--model"; "/no/such/model"; "--prompt"; "hi" ]
                |> failsWith [ "/no/such/model"; "does not exist" ]
            }
            test "a directory without config.json" {
                run [ "info"; "--model"; tempDir () ] |> failsWith [ "config.json" ]
            }
            test "a checkpoint without weights" {
                run [ "info"; "--model"; brokenCheckpoint None ] |> failsWith [ "no weights"; "model.safetensors" ]
            }
            test "an unsupported architecture" {
                let dir = brokenCheckpoint None
                File.WriteAllText(
                    Path.Combine(dir, "config.json"),
                    "{\"architectures\":[\"T5ForConditionalGeneration\"],\"model_type\":\"t5\"}"
                )
                run [ "info"; "--model"; dir ]
                |> failsWith [ "T5ForConditionalGeneration"; "Supported architectures"; "LlamaForCausalLM" ]
            }
            test "a truncated weights file" {
                let dir = brokenCheckpoint (Some(fun bytes -> Array.sub bytes 0 (bytes.Length / 2)))
                run [ "run"; "--model"; dir; "--prompt"; "hi" ] |> failsWith [ "model.safetensors"; "truncated" ]
            }
            test "a header length beyond the file" {
                let dir =
                    brokenCheckpoint (
                        Some(fun bytes -> Array.append (BitConverter.GetBytes 999999999UL) (Array.sub bytes 8 100))
                    )
                run [ "info"; "--model"; dir ] |> failsWith [ "header length 999999999"; "beyond the file" ]
            }
            test "an empty prompt" {
                run [ "run"; "--model"; fakeGpt2; "--prompt"; "" ] |> failsWith [ "prompt is empty" ]
            }
            test "a prompt longer than the context" {
                let prompt = String.replicate 1100 " a"
                run [ "run"; "--model"; fakeGpt2; "--prompt"; prompt ]
                |> failsWith [ "1100 tokens"; "at most 1024 positions" ]
            }
            test "info and run take --device: cpu works, CUDA on this CPU-only build says how to switch" {
                let root =
                    json (
                        run
                            [
                                "run"
                                "--model"
                                "toy"
                                "--prompt"
                                "ab"
                                "--top"
                                "1"
                                "--device"
                                "cpu"
                                "--dtype"
                                "float64"
                                "--json"
                            ]
                    )
                Expect.equal (root.GetProperty("positions").GetArrayLength()) 2 "run on the CPU"
                run [ "info"; "--model"; "toy"; "--device"; "cuda:0" ]
                |> failsWith [ "--device cuda:0"; "CUDA is not available"; "docs/troubleshooting.md#using-a-gpu-cuda" ]
                run [ "run"; "--model"; "toy"; "--prompt"; "ab"; "--device"; "cuda:x" ]
                |> failsWith [ "Unknown --device 'cuda:x'" ]
                run [ "info"; "--model"; "  " ] |> failsWith [ "--model is empty" ]
            }
            test "a --top outside the vocabulary" {
                run [ "run"; "--model"; "toy"; "--prompt"; "a"; "--top"; "0" ] |> failsWith [ "--top 0"; "1..100" ]
            }
        ]
