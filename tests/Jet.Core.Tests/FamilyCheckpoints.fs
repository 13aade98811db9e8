/// Tiny random checkpoints in each family's Hugging Face layout (names, shapes, Conv1D transposes, fused QKV,
/// buffers that loaders must ignore), written with the test-side writer, each with its reference forward pass.
module Jet.Core.Tests.FamilyCheckpoints

open TorchSharp
open Jet.Core
open Jet.Core.Tests.TestCheckpoints
open Jet.Core.Tests.ReferenceModels

/// A written checkpoint and the reference implementation of the same network.
type FamilyCase =
    {
        Name: string
        Dir: string
        /// The stored tensors by checkpoint name (float64, rounded through the stored dtype).
        Weights: Map<string, Tensor>
        Reference: int64[] -> ReferenceOutput
        Vocab: int
        /// Residual layers per block (2 sequential, 1 parallel).
        LayersPerBlock: int
        Blocks: int
    }

let private lookup (weights: Map<string, Tensor>) (prefix: string) (name: string) =
    match weights.TryFind(prefix + name) with
    | Some t -> t
    | None -> failwithf "the reference asked for %s%s, which the test checkpoint does not have" prefix name

/// GPT-2 options: `prefix` writes `transformer.` names (GPT2LMHeadModel) or bare ones (GPT2Model);
/// `untiedHead` saves a separate lm_head with tie_word_embeddings false; `Vocab` and `Width` size the network
/// (4 heads, MLP width 4·Width).
type Gpt2Options = { Prefix: bool; UntiedHead: bool; ScaleByLayer: bool; Layers: int; Vocab: int; Width: int }

let gpt2Defaults =
    { Prefix = true; UntiedHead = false; ScaleByLayer = false; Layers = 2; Vocab = 40; Width = 16 }

let gpt2 (seed: int) (dtype: string) (o: Gpt2Options) : FamilyCase =
    let vocab, d, heads, positions, inner = o.Vocab, o.Width, 4, 12, 4 * o.Width
    let dir = tempDir ()
    let w = Weights(seed, dtype)
    let pre = if o.Prefix then "transformer." else ""
    w.Normal(pre + "wte.weight", [ vocab; d ], 1.0) |> ignore
    w.Normal(pre + "wpe.weight", [ positions; d ], 0.5) |> ignore
    for l in 0 .. o.Layers - 1 do
        let p n = sprintf "%sh.%d.%s" pre l n
        w.AroundOne(p "ln_1.weight", [ d ], 0.1) |> ignore
        w.Normal(p "ln_1.bias", [ d ], 0.1) |> ignore
        // Conv1D: [in, out].
        w.Normal(p "attn.c_attn.weight", [ d; 3 * d ], 0.3) |> ignore
        w.Normal(p "attn.c_attn.bias", [ 3 * d ], 0.1) |> ignore
        w.Normal(p "attn.c_proj.weight", [ d; d ], 0.3) |> ignore
        w.Normal(p "attn.c_proj.bias", [ d ], 0.1) |> ignore
        // The causal-mask buffers old checkpoints carry; loaders ignore them.
        w.Add(
            p "attn.bias",
            torch
                .ones(int64 positions, int64 positions, dtype = torch.float64)
                .tril()
                .reshape (1L, 1L, int64 positions, int64 positions)
        )
        w.Add(p "attn.masked_bias", torch.tensor (-10000.0, dtype = torch.float64))
        w.AroundOne(p "ln_2.weight", [ d ], 0.1) |> ignore
        w.Normal(p "ln_2.bias", [ d ], 0.1) |> ignore
        w.Normal(p "mlp.c_fc.weight", [ d; inner ], 0.3) |> ignore
        w.Normal(p "mlp.c_fc.bias", [ inner ], 0.1) |> ignore
        w.Normal(p "mlp.c_proj.weight", [ inner; d ], 0.2) |> ignore
        w.Normal(p "mlp.c_proj.bias", [ d ], 0.1) |> ignore
    w.AroundOne(pre + "ln_f.weight", [ d ], 0.1) |> ignore
    w.Normal(pre + "ln_f.bias", [ d ], 0.1) |> ignore
    if o.UntiedHead then
        w.Normal("lm_head.weight", [ vocab; d ], 0.3) |> ignore
    w.Save dir
    writeConfig
        dir
        {|
            architectures = [ (if o.Prefix then "GPT2LMHeadModel" else "GPT2Model") ]
            model_type = "gpt2"
            vocab_size = vocab
            n_embd = d
            n_head = heads
            n_layer = o.Layers
            n_positions = positions
            n_ctx = positions
            n_inner = (null: obj)
            activation_function = "gelu_new"
            layer_norm_epsilon = 1e-5
            scale_attn_weights = true
            scale_attn_by_inverse_layer_idx = o.ScaleByLayer
            tie_word_embeddings = not o.UntiedHead
            torch_dtype = "float32"
        |}
    let weights = w.Map
    let get = lookup weights pre
    let head =
        if o.UntiedHead then
            weights.["lm_head.weight"]
        else
            get "wte.weight"
    let config: Gpt2Config =
        { Layers = o.Layers; Heads = heads; Eps = 1e-5; Act = "gelu_new"; ScaleByLayer = o.ScaleByLayer }
    {
        Name = "gpt2"
        Dir = dir
        Weights = weights
        Reference = ReferenceModels.gpt2 get head config
        Vocab = vocab
        LayersPerBlock = 2
        Blocks = o.Layers
    }

/// GPT-Neo with one global and one local layer (window 3).
let gptNeoWith (seed: int) (dtype: string) (window: int) (scaledReference: bool) : FamilyCase =
    let vocab, d, heads, positions, inner = 40, 16, 4, 12, 48
    let kinds = [ "global"; "local" ]
    let dir = tempDir ()
    let w = Weights(seed, dtype)
    let pre = "transformer."
    w.Normal(pre + "wte.weight", [ vocab; d ], 1.0) |> ignore
    w.Normal(pre + "wpe.weight", [ positions; d ], 0.5) |> ignore
    for l in 0 .. kinds.Length - 1 do
        let p n = sprintf "%sh.%d.%s" pre l n
        w.AroundOne(p "ln_1.weight", [ d ], 0.1) |> ignore
        w.Normal(p "ln_1.bias", [ d ], 0.1) |> ignore
        for proj in [ "q_proj"; "k_proj"; "v_proj" ] do
            w.Normal(p ("attn.attention." + proj + ".weight"), [ d; d ], 0.3) |> ignore
        w.Normal(p "attn.attention.out_proj.weight", [ d; d ], 0.3) |> ignore
        w.Normal(p "attn.attention.out_proj.bias", [ d ], 0.1) |> ignore
        w.AroundOne(p "ln_2.weight", [ d ], 0.1) |> ignore
        w.Normal(p "ln_2.bias", [ d ], 0.1) |> ignore
        w.Normal(p "mlp.c_fc.weight", [ inner; d ], 0.3) |> ignore
        w.Normal(p "mlp.c_fc.bias", [ inner ], 0.1) |> ignore
        w.Normal(p "mlp.c_proj.weight", [ d; inner ], 0.2) |> ignore
        w.Normal(p "mlp.c_proj.bias", [ d ], 0.1) |> ignore
    w.AroundOne(pre + "ln_f.weight", [ d ], 0.1) |> ignore
    w.Normal(pre + "ln_f.bias", [ d ], 0.1) |> ignore
    w.Save dir
    writeConfig
        dir
        {|
            architectures = [ "GPTNeoForCausalLM" ]
            model_type = "gpt_neo"
            vocab_size = vocab
            hidden_size = d
            num_heads = heads
            num_layers = kinds.Length
            attention_types = [| [| box [| "global"; "local" |]; box 1 |] |]
            window_size = window
            intermediate_size = inner
            max_position_embeddings = positions
            layer_norm_epsilon = 1e-5
            activation_function = "gelu_new"
            tie_word_embeddings = true
        |}
    let weights = w.Map
    let get = lookup weights pre
    let config: GptNeoConfig =
        {
            Layers = kinds.Length
            Heads = heads
            Eps = 1e-5
            Kinds = kinds
            Window = window
            Scaled = scaledReference
        }
    {
        Name = "gpt_neo"
        Dir = dir
        Weights = weights
        Reference = ReferenceModels.gptNeo get (get "wte.weight") config
        Vocab = vocab
        LayersPerBlock = 2
        Blocks = kinds.Length
    }

let gptNeo seed dtype = gptNeoWith seed dtype 3 false

/// GPT-NeoX with head_dim 16 and rotary_pct 0.25 (4 rotated coordinates per head).
let gptNeoXWith
    (seed: int)
    (dtype: string)
    (parallelResidual: bool)
    (rotaryPct: float)
    (referenceRotaryDims: int)
    : FamilyCase =
    let vocab, d, heads, positions, inner, layers = 40, 32, 2, 12, 64, 2
    let dir = tempDir ()
    let w = Weights(seed, dtype)
    w.Normal("gpt_neox.embed_in.weight", [ vocab; d ], 1.0) |> ignore
    for l in 0 .. layers - 1 do
        let p n = sprintf "gpt_neox.layers.%d.%s" l n
        for norm in [ "input_layernorm"; "post_attention_layernorm" ] do
            w.AroundOne(p (norm + ".weight"), [ d ], 0.1) |> ignore
            w.Normal(p (norm + ".bias"), [ d ], 0.1) |> ignore
        w.Normal(p "attention.query_key_value.weight", [ 3 * d; d ], 0.3) |> ignore
        w.Normal(p "attention.query_key_value.bias", [ 3 * d ], 0.1) |> ignore
        w.Normal(p "attention.dense.weight", [ d; d ], 0.3) |> ignore
        w.Normal(p "attention.dense.bias", [ d ], 0.1) |> ignore
        // A buffer some checkpoints carry; loaders ignore it.
        w.Add(p "attention.rotary_emb.inv_freq", torch.ones (2L, dtype = torch.float64))
        w.Normal(p "mlp.dense_h_to_4h.weight", [ inner; d ], 0.3) |> ignore
        w.Normal(p "mlp.dense_h_to_4h.bias", [ inner ], 0.1) |> ignore
        w.Normal(p "mlp.dense_4h_to_h.weight", [ d; inner ], 0.2) |> ignore
        w.Normal(p "mlp.dense_4h_to_h.bias", [ d ], 0.1) |> ignore
    w.AroundOne("gpt_neox.final_layer_norm.weight", [ d ], 0.1) |> ignore
    w.Normal("gpt_neox.final_layer_norm.bias", [ d ], 0.1) |> ignore
    w.Normal("embed_out.weight", [ vocab; d ], 0.3) |> ignore
    w.Save dir
    writeConfig
        dir
        {|
            architectures = [ "GPTNeoXForCausalLM" ]
            model_type = "gpt_neox"
            vocab_size = vocab
            hidden_size = d
            num_attention_heads = heads
            num_hidden_layers = layers
            intermediate_size = inner
            rotary_pct = rotaryPct
            rotary_emb_base = 10000
            max_position_embeddings = positions
            layer_norm_eps = 1e-5
            use_parallel_residual = parallelResidual
            hidden_act = "gelu"
            tie_word_embeddings = false
        |}
    let weights = w.Map
    let config: GptNeoXConfig =
        {
            Layers = layers
            Heads = heads
            Eps = 1e-5
            RotaryDims = referenceRotaryDims
            Base = 10000.0
            Parallel = parallelResidual
        }
    {
        Name = "gpt_neox"
        Dir = dir
        Weights = weights
        Reference = ReferenceModels.gptNeoX (lookup weights "") config
        Vocab = vocab
        LayersPerBlock = (if parallelResidual then 1 else 2)
        Blocks = layers
    }

let gptNeoX seed dtype parallelResidual = gptNeoXWith seed dtype parallelResidual 0.25 4

/// The Llama-shaped families. `kind` is "llama", "mistral" or "gemma".
let llamaLike (seed: int) (dtype: string) (kind: string) (referenceWindow: int option) : FamilyCase =
    let gemma = kind = "gemma"
    let vocab, d, heads, kvHeads, positions, inner, layers = 40, 16, 4, 2, 12, 24, 2
    // Gemma takes head_dim from the config; here heads · head_dim = 32 ≠ d = 16.
    let headDim = if gemma then 8 else d / heads
    let dir = tempDir ()
    let w = Weights(seed, dtype)
    let norm name =
        if gemma then
            w.Normal(name, [ d ], 0.1)
        else
            w.AroundOne(name, [ d ], 0.1)
    w.Normal("model.embed_tokens.weight", [ vocab; d ], (if gemma then 0.3 else 1.0)) |> ignore
    for l in 0 .. layers - 1 do
        let p n = sprintf "model.layers.%d.%s" l n
        norm (p "input_layernorm.weight") |> ignore
        w.Normal(p "self_attn.q_proj.weight", [ heads * headDim; d ], 0.3) |> ignore
        w.Normal(p "self_attn.k_proj.weight", [ kvHeads * headDim; d ], 0.3) |> ignore
        w.Normal(p "self_attn.v_proj.weight", [ kvHeads * headDim; d ], 0.3) |> ignore
        w.Normal(p "self_attn.o_proj.weight", [ d; heads * headDim ], 0.3) |> ignore
        norm (p "post_attention_layernorm.weight") |> ignore
        w.Normal(p "mlp.gate_proj.weight", [ inner; d ], 0.3) |> ignore
        w.Normal(p "mlp.up_proj.weight", [ inner; d ], 0.3) |> ignore
        w.Normal(p "mlp.down_proj.weight", [ d; inner ], 0.2) |> ignore
    norm "model.norm.weight" |> ignore
    if not gemma then
        w.Normal("lm_head.weight", [ vocab; d ], 0.3) |> ignore
    w.Save dir
    let common =
        {|
            model_type = kind
            vocab_size = vocab
            hidden_size = d
            intermediate_size = inner
            num_hidden_layers = layers
            num_attention_heads = heads
            num_key_value_heads = kvHeads
            max_position_embeddings = positions
            rms_norm_eps = 1e-6
            rope_theta = 500.0
        |}
    match kind with
    | "llama" ->
        writeConfig
            dir
            {| common with
                architectures = [ "LlamaForCausalLM" ]
                hidden_act = "silu"
                tie_word_embeddings = false
                rope_scaling = (null: obj)
            |}
    | "mistral" ->
        writeConfig
            dir
            {| common with
                architectures = [ "MistralForCausalLM" ]
                hidden_act = "silu"
                tie_word_embeddings = false
                sliding_window = 3
            |}
    | _ ->
        writeConfig
            dir
            {| common with
                architectures = [ "GemmaForCausalLM" ]
                head_dim = headDim
                hidden_act = "gelu"
                hidden_activation = "gelu_pytorch_tanh"
                tie_word_embeddings = true
            |}
    let weights = w.Map
    let get = lookup weights ""
    let head =
        if gemma then
            get "model.embed_tokens.weight"
        else
            get "lm_head.weight"
    let config: LlamaConfig =
        {
            Layers = layers
            Heads = heads
            KvHeads = kvHeads
            HeadDim = headDim
            Eps = 1e-6
            Theta = 500.0
            Act = (if gemma then "gelu_pytorch_tanh" else "silu")
            Window = referenceWindow
            Gemma = gemma
        }
    {
        Name = kind
        Dir = dir
        Weights = weights
        Reference = ReferenceModels.llama get head config
        Vocab = vocab
        LayersPerBlock = 2
        Blocks = layers
    }

let llama seed dtype = llamaLike seed dtype "llama" None
let mistral seed dtype = llamaLike seed dtype "mistral" (Some 3)
let gemma seed dtype = llamaLike seed dtype "gemma" None

/// One case per family (GPT-NeoX in both residual styles), stored as `dtype`.
let all (dtype: string) : FamilyCase list =
    [
        gpt2 11 dtype gpt2Defaults
        gptNeo 12 dtype
        gptNeoX 13 dtype true
        gptNeoX 14 dtype false
        llama 15 dtype
        mistral 16 dtype
        gemma 17 dtype
    ]
