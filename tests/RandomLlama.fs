/// Random Llama-shaped bfloat16 checkpoints of any size, written tensor by tensor (never the whole model in memory),
/// one file or shards with an index as Hugging Face writes them: the large-model bench suites and the load-memory
/// test share this writer.
module Jet.Tests.RandomLlama

open System
open System.IO
open System.Text
open System.Text.Json
open TorchSharp

/// The sizes of a Llama network.
type LlamaShape =
    {
        Layers: int
        Hidden: int
        Intermediate: int
        Heads: int
        KvHeads: int
        Vocab: int
        MaxPositions: int
    }

/// TinyLlama-1.1B: 22 layers, hidden 2,048, intermediate 5,632, 32 heads over 4 KV heads, vocabulary 32,000.
let tinyLlama =
    {
        Layers = 22
        Hidden = 2048
        Intermediate = 5632
        Heads = 32
        KvHeads = 4
        Vocab = 32000
        MaxPositions = 2048
    }

/// Llama-2-7B: 32 layers, hidden 4,096, intermediate 11,008, 32 heads, vocabulary 32,000.
let llama2_7b =
    {
        Layers = 32
        Hidden = 4096
        Intermediate = 11008
        Heads = 32
        KvHeads = 32
        Vocab = 32000
        MaxPositions = 4096
    }

/// Every tensor (name, shape) in the order Hugging Face saves them.
let tensors (s: LlamaShape) : (string * int64[]) list =
    let d, headDim = int64 s.Hidden, int64 (s.Hidden / s.Heads)
    let kv, inner = int64 s.KvHeads * headDim, int64 s.Intermediate
    [
        "model.embed_tokens.weight", [| int64 s.Vocab; d |]
        for l in 0 .. s.Layers - 1 do
            let p n = sprintf "model.layers.%d.%s" l n
            p "self_attn.q_proj.weight", [| d; d |]
            p "self_attn.k_proj.weight", [| kv; d |]
            p "self_attn.v_proj.weight", [| kv; d |]
            p "self_attn.o_proj.weight", [| d; d |]
            p "mlp.gate_proj.weight", [| inner; d |]
            p "mlp.up_proj.weight", [| inner; d |]
            p "mlp.down_proj.weight", [| d; inner |]
            p "input_layernorm.weight", [| d |]
            p "post_attention_layernorm.weight", [| d |]
        "model.norm.weight", [| d |]
        "lm_head.weight", [| int64 s.Vocab; d |]
    ]

/// Bytes of the weights in bfloat16.
let weightBytes (s: LlamaShape) = tensors s |> List.sumBy (fun (_, shape) -> 2L * Array.fold (*) 1L shape)

let private config (s: LlamaShape) =
    {|
        architectures = [ "LlamaForCausalLM" ]
        model_type = "llama"
        vocab_size = s.Vocab
        hidden_size = s.Hidden
        intermediate_size = s.Intermediate
        num_hidden_layers = s.Layers
        num_attention_heads = s.Heads
        num_key_value_heads = s.KvHeads
        max_position_embeddings = s.MaxPositions
        rms_norm_eps = 1e-5
        rope_theta = 10000.0
        hidden_act = "silu"
        tie_word_embeddings = false
        torch_dtype = "bfloat16"
    |}

/// Writes one safetensors file holding `names` (each drawn by `draw`) as BF16, a tensor at a time.
let private writeFile (path: string) (entries: (string * int64[]) list) (draw: string -> int64[] -> torch.Tensor) =
    let mutable offset = 0L
    let header =
        entries
        |> List.map (fun (name, shape) ->
            let bytes = 2L * Array.fold (*) 1L shape
            let text =
                sprintf
                    "%s:{\"dtype\":\"BF16\",\"shape\":[%s],\"data_offsets\":[%d,%d]}"
                    (JsonSerializer.Serialize name)
                    (shape |> Array.map string |> String.concat ",")
                    offset
                    (offset + bytes)
            offset <- offset + bytes
            text)
        |> String.concat ","
    let headerBytes =
        let b = Encoding.UTF8.GetBytes("{\"__metadata__\":{\"format\":\"pt\"}," + header + "}")
        Array.append b (Array.create ((b.Length + 7) / 8 * 8 - b.Length) (byte ' '))
    use stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 <<< 20)
    stream.Write(BitConverter.GetBytes(uint64 headerBytes.Length), 0, 8)
    stream.Write(headerBytes, 0, headerBytes.Length)
    for name, shape in entries do
        use scope = torch.NewDisposeScope()
        let t = draw name shape
        stream.Write(t.bytes)

/// Writes config.json and random BF16 weights for `shape` into `dir`: `model.safetensors` when `shards` is 1, else
/// `model-0000i-of-0000N.safetensors` files of about equal size with `model.safetensors.index.json`. Matrices are
/// N(0, 0.02²) as Llama is initialised, norm weights 1; the same seed writes the same bytes.
let write (dir: string) (shape: LlamaShape) (shards: int) (seed: int) =
    Directory.CreateDirectory dir |> ignore
    File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(config shape))
    let generator = new torch.Generator(uint64 seed)
    let draw (_: string) (dims: int64[]) =
        if dims.Length = 1 then
            torch.ones (dims, dtype = torch.bfloat16)
        else
            (torch.randn (dims, dtype = torch.float32, generator = generator) * 0.02).to_type torch.bfloat16
    let all = tensors shape
    if shards <= 1 then
        writeFile (Path.Combine(dir, "model.safetensors")) all draw
    else
        let total = weightBytes shape
        let bytes (_, dims: int64[]) = 2L * Array.fold (*) 1L dims
        // Greedy split in saving order: a shard closes once it holds its share of the bytes.
        let groups =
            all
            |> List.fold
                (fun (groups: ((string * int64[]) list * int64) list) entry ->
                    match groups with
                    | (current, size) :: rest when size < total / int64 shards || groups.Length = shards ->
                        (entry :: current, size + bytes entry) :: rest
                    | _ -> ([ entry ], bytes entry) :: groups)
                []
            |> List.rev
            |> List.map (fst >> List.rev)
        let n = groups.Length
        let weightMap = Collections.Generic.Dictionary<string, string>()
        groups
        |> List.iteri (fun i group ->
            let file = sprintf "model-%05d-of-%05d.safetensors" (i + 1) n
            writeFile (Path.Combine(dir, file)) group draw
            for name, _ in group do
                weightMap.[name] <- file)
        let index = {| metadata = {| total_size = total |}; weight_map = weightMap |}
        File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), JsonSerializer.Serialize index)
