/// OLMo, OLMo-2, Phi-3 and Gemma 2: reference forward passes written from the Hugging Face modeling code
/// (modeling_olmo.py, modeling_olmo2.py, modeling_phi3.py, modeling_gemma2.py), reading the checkpoint tensors by their
/// Hugging Face names and layouts without the DSL, and tiny random checkpoints in each family's exact layout and config.
/// Shapes: tokens [seq]; hidden states [seq, d]; logits [seq, vocab].
module Jet.Core.Tests.ModernFamilies

open TorchSharp
open Jet.Core
open Jet.Core.Tests.TestCheckpoints
open Jet.Core.Tests.ReferenceModels
open Jet.Core.Tests.FamilyCheckpoints

/// Collects h_0, the residual updates and the streams.
type private Stream(h0: Tensor) =
    let updates = ResizeArray<Tensor>()
    let streams = ResizeArray<Tensor>([ h0 ])
    member _.H = streams.[streams.Count - 1]
    member _.Add(update: Tensor) =
        updates.Add update
        streams.Add(streams.[streams.Count - 1] + update)
    member _.Output(logits: Tensor) = { Logits = logits; Updates = List.ofSeq updates; Streams = List.ofSeq streams }

/// The sizes and quirks of one tiny model.
type ModernConfig =
    {
        Layers: int
        Heads: int
        KvHeads: int
        HeadDim: int
        Eps: float
        Theta: float
        /// The rotary frequencies [head_dim/2] HF derives from `rope_scaling` when the config scales them (whole
        /// heads only); None: the plain 1 / theta^(2i/dim).
        Frequencies: float[] option
        /// OLMo's clip_qkv.
        Clip: float option
        /// Phi-3's partial_rotary_factor (rotated coordinates per head).
        RotaryDims: int
        /// Per layer: the sliding window, if any.
        Windows: int option list
        /// Gemma 2: query_pre_attn_scalar, attn_logit_softcapping, final_logit_softcapping.
        QueryScalar: float
        AttnCap: float option
        FinalCap: float option
    }

let private linear (w: string -> Tensor) name (x: Tensor) = x.matmul (w(name + ".weight").t ())

/// HF's repeat_kv: [kv, seq, hd] → [heads, seq, hd] by expand and reshape.
let private repeatKv (c: ModernConfig) (x: Tensor) =
    let groups = int64 (c.Heads / c.KvHeads)
    x.unsqueeze(1L).expand(int64 c.KvHeads, groups, x.shape.[1], x.shape.[2]).reshape (int64 c.Heads, x.shape.[1], -1L)

/// eager_attention_forward: softmax(soft-cap(q kᵀ · scale) + mask) v, then o_proj; q, k, v [seq, width].
let private attention (w: string -> Tensor) (c: ModernConfig) (layer: int) (scale: float) q k v =
    let seq = int (q: Tensor).shape.[0]
    let rotate (x: Tensor) =
        match c.Frequencies with
        | Some f -> Llama3QwenCheckpoints.rotaryWith f x
        | None -> rotary c.RotaryDims c.Theta x
    let q = rotate (splitHeads c.Heads q)
    let k = repeatKv c (rotate (splitHeads c.KvHeads k))
    let v = repeatKv c (splitHeads c.KvHeads v)
    let scores = q.matmul (k.transpose (-2L, -1L)) * scale
    let scores =
        match c.AttnCap with
        | Some cap -> torch.tanh (scores / cap) * cap
        | None -> scores
    let allowed i j =
        j <= i
        && (match c.Windows.[layer] with
            | Some win -> i - j < win
            | None -> true)
    let mixed = (scores + mask seq allowed).softmax(-1L).matmul v
    linear w (sprintf "model.layers.%d.self_attn.o_proj" layer) (mergeHeads mixed)

let private olmoLayerNorm (x: Tensor) = torch.nn.functional.layer_norm (x, [| x.shape.[1] |], null, null, 1e-5)

/// OlmoForCausalLM: parameter-free LayerNorms, optional q/k/v clamps, SwiGLU.
let olmo (w: string -> Tensor) (head: Tensor) (c: ModernConfig) (tokens: int64[]) =
    let r = Stream(w("model.embed_tokens.weight").index_select (0L, torch.tensor tokens))
    for l in 0 .. c.Layers - 1 do
        let p n = sprintf "model.layers.%d.%s" l n
        let x = olmoLayerNorm r.H
        let clip (t: Tensor) =
            match c.Clip with
            | Some b -> t.clamp (scalar -b, scalar b)
            | None -> t
        let q = clip (linear w (p "self_attn.q_proj") x)
        let k = clip (linear w (p "self_attn.k_proj") x)
        let v = clip (linear w (p "self_attn.v_proj") x)
        r.Add(attention w c l (1.0 / sqrt (float c.HeadDim)) q k v)
        let y = olmoLayerNorm r.H
        r.Add(
            linear
                w
                (p "mlp.down_proj")
                (activation "silu" (linear w (p "mlp.gate_proj") y) * linear w (p "mlp.up_proj") y)
        )
    r.Output((olmoLayerNorm r.H).matmul (head.t ()))

/// Olmo2ForCausalLM: q_norm and k_norm over whole projections, RMSNorm after attention and after the MLP.
let olmo2 (w: string -> Tensor) (head: Tensor) (c: ModernConfig) (tokens: int64[]) =
    let r = Stream(w("model.embed_tokens.weight").index_select (0L, torch.tensor tokens))
    for l in 0 .. c.Layers - 1 do
        let p n = sprintf "model.layers.%d.%s" l n
        let x = r.H
        let q = rmsNorm (linear w (p "self_attn.q_proj") x) (w (p "self_attn.q_norm.weight")) c.Eps false
        let k = rmsNorm (linear w (p "self_attn.k_proj") x) (w (p "self_attn.k_norm.weight")) c.Eps false
        let v = linear w (p "self_attn.v_proj") x
        let a = attention w c l (1.0 / sqrt (float c.HeadDim)) q k v
        r.Add(rmsNorm a (w (p "post_attention_layernorm.weight")) c.Eps false)
        let y = r.H
        let m =
            linear
                w
                (p "mlp.down_proj")
                (activation "silu" (linear w (p "mlp.gate_proj") y) * linear w (p "mlp.up_proj") y)
        r.Add(rmsNorm m (w (p "post_feedforward_layernorm.weight")) c.Eps false)
    r.Output((rmsNorm r.H (w "model.norm.weight") c.Eps false).matmul (head.t ()))

/// Phi3ForCausalLM: fused qkv_proj sliced [q | k | v], partial rotary, fused gate_up_proj chunked [gate | up].
let phi3 (w: string -> Tensor) (head: Tensor) (c: ModernConfig) (tokens: int64[]) =
    let r = Stream(w("model.embed_tokens.weight").index_select (0L, torch.tensor tokens))
    for l in 0 .. c.Layers - 1 do
        let p n = sprintf "model.layers.%d.%s" l n
        let x = rmsNorm r.H (w (p "input_layernorm.weight")) c.Eps false
        let qkv = linear w (p "self_attn.qkv_proj") x
        let qPos, kvWidth = int64 (c.Heads * c.HeadDim), int64 (c.KvHeads * c.HeadDim)
        let q, k, v =
            qkv.narrow (1L, 0L, qPos), qkv.narrow (1L, qPos, kvWidth), qkv.narrow (1L, qPos + kvWidth, kvWidth)
        r.Add(attention w c l (1.0 / sqrt (float c.HeadDim)) q k v)
        let y = rmsNorm r.H (w (p "post_attention_layernorm.weight")) c.Eps false
        let upStates = linear w (p "mlp.gate_up_proj") y
        let halves = upStates.chunk (2L, -1L)
        r.Add(linear w (p "mlp.down_proj") (halves.[1] * activation "silu" halves.[0]))
    r.Output((rmsNorm r.H (w "model.norm.weight") c.Eps false).matmul (head.t ()))

/// Gemma2ForCausalLM: √d embeddings, (1 + w) sandwich norms, query_pre_attn_scalar, attention and final soft-caps,
/// sliding layers as configured.
let gemma2 (w: string -> Tensor) (c: ModernConfig) (tokens: int64[]) =
    let table = w "model.embed_tokens.weight"
    let r = Stream(table.index_select (0L, torch.tensor tokens) * sqrt (float table.shape.[1]))
    let norm (x: Tensor) name = rmsNorm x (w name) c.Eps true
    for l in 0 .. c.Layers - 1 do
        let p n = sprintf "model.layers.%d.%s" l n
        let x = norm r.H (p "input_layernorm.weight")
        let q, k, v =
            linear w (p "self_attn.q_proj") x, linear w (p "self_attn.k_proj") x, linear w (p "self_attn.v_proj") x
        let a = attention w c l (c.QueryScalar ** -0.5) q k v
        r.Add(norm a (p "post_attention_layernorm.weight"))
        let y = norm r.H (p "pre_feedforward_layernorm.weight")
        let m =
            linear
                w
                (p "mlp.down_proj")
                (activation "gelu_pytorch_tanh" (linear w (p "mlp.gate_proj") y) * linear w (p "mlp.up_proj") y)
        r.Add(norm m (p "post_feedforward_layernorm.weight"))
    let logits = (norm r.H "model.norm.weight").matmul (table.t ())
    let logits =
        match c.FinalCap with
        | Some cap -> torch.tanh (logits / cap) * cap
        | None -> logits
    r.Output logits

// ---------------------------------------------------------------- tiny checkpoints

let private vocab, positions = 40, 12

let private baseConfig layers heads kvHeads headDim =
    {
        Layers = layers
        Heads = heads
        KvHeads = kvHeads
        HeadDim = headDim
        Eps = 1e-5
        Theta = 500.0
        Frequencies = None
        Clip = None
        RotaryDims = headDim
        Windows = List.replicate layers None
        QueryScalar = float headDim
        AttnCap = None
        FinalCap = None
    }

let private case name dir (w: Weights) reference layers =
    {
        Name = name
        Dir = dir
        Weights = w.Map
        Reference = reference
        Vocab = vocab
        LayersPerBlock = 2
        Blocks = layers
    }

let private separateAttention (w: Weights) (p: string -> string) (d: int) (c: ModernConfig) =
    w.Normal(p "self_attn.q_proj.weight", [ c.Heads * c.HeadDim; d ], 0.3) |> ignore
    w.Normal(p "self_attn.k_proj.weight", [ c.KvHeads * c.HeadDim; d ], 0.3) |> ignore
    w.Normal(p "self_attn.v_proj.weight", [ c.KvHeads * c.HeadDim; d ], 0.3) |> ignore
    w.Normal(p "self_attn.o_proj.weight", [ d; c.Heads * c.HeadDim ], 0.3) |> ignore

let private gatedMlp (w: Weights) (p: string -> string) (d: int) (inner: int) =
    w.Normal(p "mlp.gate_proj.weight", [ inner; d ], 0.3) |> ignore
    w.Normal(p "mlp.up_proj.weight", [ inner; d ], 0.3) |> ignore
    w.Normal(p "mlp.down_proj.weight", [ d; inner ], 0.2) |> ignore

/// A config's `rope_scaling` (null when None) and the frequencies HF computes from it for head_dim `dim`.
type RopeScaling = { Json: obj; Frequencies: float -> int -> float[] }

let private ropeJson (rope: RopeScaling option) = rope |> Option.map (fun r -> r.Json) |> Option.defaultValue null

let private withRope (rope: RopeScaling option) (c: ModernConfig) =
    { c with Frequencies = rope |> Option.map (fun r -> r.Frequencies c.Theta c.HeadDim) }

/// OLMo (`second` = false) or OLMo-2, with `rope` scaling the rotary frequencies. OLMo clamps q/k/v at `clip` (1.0
/// clamps a good share of them here); OLMo-2 has 4 query heads sharing 2 KV heads, so its q_norm and k_norm have
/// different widths.
let olmoScaled seed dtype (second: bool) (clip: float option) (tied: bool) (rope: RopeScaling option) : FamilyCase =
    let d, inner, layers = 16, 24, 2
    let c = withRope rope { baseConfig layers 4 2 4 with Clip = clip }
    let dir = tempDir ()
    let w = Weights(seed, dtype)
    w.Normal("model.embed_tokens.weight", [ vocab; d ], 1.0) |> ignore
    for l in 0 .. layers - 1 do
        let p n = sprintf "model.layers.%d.%s" l n
        separateAttention w p d c
        if second then
            w.AroundOne(p "self_attn.q_norm.weight", [ c.Heads * c.HeadDim ], 0.1) |> ignore
            w.AroundOne(p "self_attn.k_norm.weight", [ c.KvHeads * c.HeadDim ], 0.1) |> ignore
            w.AroundOne(p "post_attention_layernorm.weight", [ d ], 0.1) |> ignore
        gatedMlp w p d inner
        if second then
            w.AroundOne(p "post_feedforward_layernorm.weight", [ d ], 0.1) |> ignore
    if second then
        w.AroundOne("model.norm.weight", [ d ], 0.1) |> ignore
    if not tied then
        w.Normal("lm_head.weight", [ vocab; d ], 0.3) |> ignore
    w.Save dir
    let common =
        {|
            model_type = (if second then "olmo2" else "olmo")
            vocab_size = vocab
            hidden_size = d
            intermediate_size = inner
            num_hidden_layers = layers
            num_attention_heads = c.Heads
            num_key_value_heads = c.KvHeads
            max_position_embeddings = positions
            hidden_act = "silu"
            rope_theta = c.Theta
            rope_scaling = ropeJson rope
            attention_bias = false
            tie_word_embeddings = tied
            torch_dtype = "float32"
        |}
    if second then
        writeConfig dir {| common with architectures = [ "Olmo2ForCausalLM" ]; rms_norm_eps = c.Eps |}
    else
        writeConfig
            dir
            {| common with
                architectures = [ "OlmoForCausalLM" ]
                clip_qkv =
                    (match clip with
                     | Some v -> box v
                     | None -> null)
            |}
    let weights = w.Map
    let get n = weights.[n]
    let head =
        if tied then
            get "model.embed_tokens.weight"
        else
            get "lm_head.weight"
    let reference = if second then olmo2 get head c else olmo get head c
    case (if second then "olmo2" else "olmo") dir w reference layers

/// OLMo or OLMo-2 with plain rotary frequencies (see `olmoScaled`).
let olmoLike (seed: int) (dtype: string) (second: bool) (clip: float option) (tied: bool) : FamilyCase =
    olmoScaled seed dtype second clip tied None

/// Phi-3 with 4 query heads and 2 KV heads of width 8 in one fused qkv_proj, half of each head rotated
/// (partial_rotary_factor 0.5), and a sliding window of 3 when `window`.
let phi3Case (seed: int) (dtype: string) (window: bool) : FamilyCase =
    let d, inner, layers = 16, 20, 2
    let c =
        { baseConfig layers 4 2 4 with
            RotaryDims = 2
            Windows = List.replicate layers (if window then Some 3 else None)
        }
    let dir = tempDir ()
    let w = Weights(seed, dtype)
    w.Normal("model.embed_tokens.weight", [ vocab; d ], 1.0) |> ignore
    for l in 0 .. layers - 1 do
        let p n = sprintf "model.layers.%d.%s" l n
        w.AroundOne(p "input_layernorm.weight", [ d ], 0.1) |> ignore
        w.Normal(p "self_attn.qkv_proj.weight", [ (c.Heads + 2 * c.KvHeads) * c.HeadDim; d ], 0.3) |> ignore
        w.Normal(p "self_attn.o_proj.weight", [ d; c.Heads * c.HeadDim ], 0.3) |> ignore
        w.AroundOne(p "post_attention_layernorm.weight", [ d ], 0.1) |> ignore
        w.Normal(p "mlp.gate_up_proj.weight", [ 2 * inner; d ], 0.3) |> ignore
        w.Normal(p "mlp.down_proj.weight", [ d; inner ], 0.2) |> ignore
    w.AroundOne("model.norm.weight", [ d ], 0.1) |> ignore
    w.Normal("lm_head.weight", [ vocab; d ], 0.3) |> ignore
    w.Save dir
    writeConfig
        dir
        {|
            architectures = [ "Phi3ForCausalLM" ]
            model_type = "phi3"
            vocab_size = vocab
            hidden_size = d
            intermediate_size = inner
            num_hidden_layers = layers
            num_attention_heads = c.Heads
            num_key_value_heads = c.KvHeads
            max_position_embeddings = positions
            original_max_position_embeddings = positions
            hidden_act = "silu"
            rms_norm_eps = c.Eps
            rope_theta = c.Theta
            rope_scaling = (null: obj)
            partial_rotary_factor = 0.5
            sliding_window = (if window then box 3 else null)
            tie_word_embeddings = false
            bos_token_id = 1
            eos_token_id = 32000
        |}
    let weights = w.Map
    let get n = weights.[n]
    case "phi3" dir w (phi3 get (get "lm_head.weight") c) layers

/// Gemma 2 with 4 layers (head_dim 8 ≠ d / heads, query_pre_attn_scalar 4, scores capped at 2 and logits at 3, so
/// both soft-caps bend); `layerTypes` writes an explicit `layer_types` (global, local, local, global) instead of
/// the default alternation (local first).
let gemma2Scaled (seed: int) (dtype: string) (layerTypes: bool) (rope: RopeScaling option) : FamilyCase =
    let d, inner, layers, window = 16, 24, 4, 3
    let kinds =
        if layerTypes then
            [ false; true; true; false ]
        else
            [ true; false; true; false ]
    let plain =
        { baseConfig layers 4 2 8 with
            Eps = 1e-6
            Windows = kinds |> List.map (fun sliding -> if sliding then Some window else None)
            QueryScalar = 4.0
            AttnCap = Some 2.0
            FinalCap = Some 3.0
        }
    let c = withRope rope plain
    let dir = tempDir ()
    let w = Weights(seed, dtype)
    w.Normal("model.embed_tokens.weight", [ vocab; d ], 0.3) |> ignore
    for l in 0 .. layers - 1 do
        let p n = sprintf "model.layers.%d.%s" l n
        w.Normal(p "input_layernorm.weight", [ d ], 0.1) |> ignore
        separateAttention w p d c
        w.Normal(p "post_attention_layernorm.weight", [ d ], 0.1) |> ignore
        w.Normal(p "pre_feedforward_layernorm.weight", [ d ], 0.1) |> ignore
        gatedMlp w p d inner
        w.Normal(p "post_feedforward_layernorm.weight", [ d ], 0.1) |> ignore
    w.Normal("model.norm.weight", [ d ], 0.1) |> ignore
    w.Save dir
    let common =
        {|
            architectures = [ "Gemma2ForCausalLM" ]
            model_type = "gemma2"
            vocab_size = vocab
            hidden_size = d
            intermediate_size = inner
            num_hidden_layers = layers
            num_attention_heads = c.Heads
            num_key_value_heads = c.KvHeads
            head_dim = c.HeadDim
            max_position_embeddings = positions
            hidden_act = "gelu_pytorch_tanh"
            hidden_activation = "gelu_pytorch_tanh"
            rms_norm_eps = c.Eps
            rope_theta = c.Theta
            rope_scaling = ropeJson rope
            attention_bias = false
            query_pre_attn_scalar = 4
            sliding_window = window
            attn_logit_softcapping = 2.0
            final_logit_softcapping = 3.0
            cache_implementation = "hybrid"
            tie_word_embeddings = true
        |}
    if layerTypes then
        let types = kinds |> List.map (fun s -> if s then "sliding_attention" else "full_attention")
        writeConfig dir {| common with layer_types = types |}
    else
        writeConfig dir common
    let weights = w.Map
    case "gemma2" dir w (gemma2 (fun n -> weights.[n]) c) layers

/// Gemma 2 with plain rotary frequencies (see `gemma2Scaled`).
let gemma2Case (seed: int) (dtype: string) (layerTypes: bool) : FamilyCase = gemma2Scaled seed dtype layerTypes None

/// One case per family and variant, as (name, maker by stored dtype).
let cases: (string * (string -> FamilyCase)) list =
    [
        "olmo (clip_qkv 1, untied)", (fun dtype -> olmoLike 41 dtype false (Some 1.0) false)
        "olmo (no clip, tied)", (fun dtype -> olmoLike 42 dtype false None true)
        "olmo2", (fun dtype -> olmoLike 43 dtype true None false)
        "phi3 (sliding window 3)", (fun dtype -> phi3Case 44 dtype true)
        "phi3 (no window)", (fun dtype -> phi3Case 45 dtype false)
        "gemma2 (default alternation)", (fun dtype -> gemma2Case 46 dtype false)
        "gemma2 (layer_types)", (fun dtype -> gemma2Case 47 dtype true)
    ]
