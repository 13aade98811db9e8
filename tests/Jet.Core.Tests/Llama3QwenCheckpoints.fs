/// Tiny random checkpoints of Llama 3.1 (rope_scaling "llama3" or "linear"), Qwen2 / Qwen2.5 and Qwen3 in their
/// Hugging Face layout and config, and their reference forward pass, written from HF's modeling_llama.py,
/// modeling_qwen2.py, modeling_qwen3.py and modeling_rope_utils.py without the DSL.
module Jet.Core.Tests.Llama3QwenCheckpoints

open System
open System.Collections.Generic
open TorchSharp
open Jet.Core
open Jet.Core.Tests.TestCheckpoints
open Jet.Core.Tests.ReferenceModels
open Jet.Core.Tests.FamilyCheckpoints

/// HF's `_compute_default_rope_parameters`: inv_freq_i = 1 / theta^(2i/dim).
let defaultFrequencies (theta: float) (dim: int) =
    Array.init (dim / 2) (fun i -> 1.0 / Math.Pow(theta, float (2 * i) / float dim))

/// HF's `_compute_linear_scaling_rope_parameters`: inv_freq / factor.
let linearFrequencies (theta: float) (dim: int) (factor: float) =
    defaultFrequencies theta dim |> Array.map (fun f -> f / factor)

/// HF's `_compute_llama3_parameters`, one frequency at a time: wavelengths shorter than
/// original / high_freq_factor keep their frequency, longer than original / low_freq_factor divide it by the
/// factor, and those between interpolate with the smooth factor.
let llama3Frequencies (theta: float) (dim: int) (factor: float) (low: float) (high: float) (original: float) =
    let lowWavelength, highWavelength = original / low, original / high
    defaultFrequencies theta dim
    |> Array.map (fun f ->
        let wavelength = 2.0 * Math.PI / f
        if wavelength < highWavelength then
            f
        elif wavelength > lowWavelength then
            f / factor
        else
            let smooth = (original / wavelength - low) / (high - low)
            (1.0 - smooth) * f / factor + smooth * f)

/// Rotate-half rotary embedding of x [heads, seq, hd] with explicit frequencies [hd/2], as HF's
/// apply_rotary_pos_emb with emb = cat(freqs, freqs).
let rotaryWith (frequencies: float[]) (x: Tensor) =
    let seq = int x.shape.[1]
    let half = frequencies.Length
    let angles =
        Array.init (seq * 2 * half) (fun n ->
            let p, i = n / (2 * half), n % (2 * half)
            float p * frequencies.[i % half])
    let angles = torch.tensor(angles, dtype = torch.float64).reshape (int64 seq, int64 (2 * half))
    let cos, sin = angles.cos (), angles.sin ()
    let h = int64 half
    let rotateHalf = torch.cat ([| -(x.narrow (-1L, h, h)); x.narrow (-1L, 0L, h) |], -1L)
    x * cos + rotateHalf * sin

/// What the reference needs of a Llama-3 / Qwen config.
type ModernConfig =
    {
        Layers: int
        Heads: int
        KvHeads: int
        HeadDim: int
        Eps: float
        Frequencies: float[]
        QkvBias: bool
        OutputBias: bool
        /// Qwen3's q_norm / k_norm over each head.
        QkNorm: bool
        /// The attention window of each layer.
        Windows: int option list
    }

/// LlamaForCausalLM / Qwen2ForCausalLM / Qwen3ForCausalLM: RMSNorm, q/k/v (+ biases), Qwen3's per-head RMSNorm of
/// q and k (view [seq, heads, hd], normalise the last axis) before rotary, repeat_kv, per-layer sliding window
/// (key j visible from query i when i − window < j ≤ i), SwiGLU MLP.
let modern (w: string -> Tensor) (head: Tensor) (c: ModernConfig) (tokens: int64[]) =
    let seq = tokens.Length
    let linear name (bias: bool) (x: Tensor) =
        let y = x.matmul (w(name + ".weight").t ())
        if bias then y + w (name + ".bias") else y
    let mutable h = w("model.embed_tokens.weight").index_select (0L, torch.tensor tokens)
    let streams = ResizeArray [ h ]
    let updates = ResizeArray()
    let repeatKv (x: Tensor) =
        let groups = int64 (c.Heads / c.KvHeads)
        x
            .unsqueeze(1L)
            .expand(int64 c.KvHeads, groups, int64 seq, int64 c.HeadDim)
            .reshape (int64 c.Heads, int64 seq, int64 c.HeadDim)
    for l in 0 .. c.Layers - 1 do
        let p n = sprintf "model.layers.%d.%s" l n
        let x = rmsNorm h (w (p "input_layernorm.weight")) c.Eps false
        let headsOf (count: int) (t: Tensor) (norm: string) =
            let viewed = t.reshape (int64 seq, int64 count, int64 c.HeadDim)
            let viewed =
                if c.QkNorm then
                    rmsNorm viewed (w (p norm)) c.Eps false
                else
                    viewed
            viewed.transpose (0L, 1L)
        let q =
            rotaryWith
                c.Frequencies
                (headsOf c.Heads (linear (p "self_attn.q_proj") c.QkvBias x) "self_attn.q_norm.weight")
        let k =
            rotaryWith
                c.Frequencies
                (headsOf c.KvHeads (linear (p "self_attn.k_proj") c.QkvBias x) "self_attn.k_norm.weight")
        let v = splitHeads c.KvHeads (linear (p "self_attn.v_proj") c.QkvBias x)
        let allowed i j =
            j <= i
            && (match c.Windows.[l] with
                | Some win -> i - j < win
                | None -> true)
        let attn =
            linear
                (p "self_attn.o_proj")
                c.OutputBias
                (mergeHeads (attend q (repeatKv k) (repeatKv v) (1.0 / sqrt (float c.HeadDim)) (mask seq allowed)))
        updates.Add attn
        h <- h + attn
        streams.Add h
        let y = rmsNorm h (w (p "post_attention_layernorm.weight")) c.Eps false
        let mlp =
            linear
                (p "mlp.down_proj")
                false
                (activation "silu" (linear (p "mlp.gate_proj") false y) * linear (p "mlp.up_proj") false y)
        updates.Add mlp
        h <- h + mlp
        streams.Add h
    let final = rmsNorm h (w "model.norm.weight") c.Eps false
    { Logits = final.matmul (head.t ()); Updates = List.ofSeq updates; Streams = List.ofSeq streams }

/// How to write a Llama-3-style checkpoint.
type ModernOptions =
    {
        /// "llama", "qwen2" or "qwen3".
        Kind: string
        Tied: bool
        /// Extra config keys (rope_scaling, sliding-window settings, …), written as given.
        Extra: (string * obj) list
        /// The reference's rotary frequencies for head_dim; None: the plain ones of rope_theta 500.
        Frequencies: float[] option
        /// The reference's window per layer.
        Windows: int option list
        Layers: int
    }

let modernDefaults kind =
    { Kind = kind; Tied = false; Extra = []; Frequencies = None; Windows = [ None; None ]; Layers = 2 }

/// Query heads, KV heads and head_dim of each kind (d = 16): Llama 2 × 8 sharing one KV head, so that four
/// rotary frequencies span Llama 3's three bands; Qwen2 4 × 4 with 2 KV heads; Qwen3 4 × 8 with 2 KV heads, head_dim
/// from the config, so that heads · head_dim = 32 ≠ d.
let headsOf kind =
    match kind with
    | "llama" -> 2, 1, 8
    | "qwen2" -> 4, 2, 4
    | _ -> 4, 2, 8

/// Writes a tiny checkpoint (d 16, rope_theta 500, vocab 40) and its reference.
let modernCase (seed: int) (dtype: string) (o: ModernOptions) : FamilyCase =
    let vocab, d, positions, inner = 40, 16, 12, 24
    let heads, kvHeads, headDim = headsOf o.Kind
    let qwen2, qwen3 = o.Kind = "qwen2", o.Kind = "qwen3"
    let dir = tempDir ()
    let w = Weights(seed, dtype)
    w.Normal("model.embed_tokens.weight", [ vocab; d ], 1.0) |> ignore
    for l in 0 .. o.Layers - 1 do
        let p n = sprintf "model.layers.%d.%s" l n
        w.AroundOne(p "input_layernorm.weight", [ d ], 0.1) |> ignore
        w.Normal(p "self_attn.q_proj.weight", [ heads * headDim; d ], 0.3) |> ignore
        if qwen2 then
            w.Normal(p "self_attn.q_proj.bias", [ heads * headDim ], 0.2) |> ignore
        w.Normal(p "self_attn.k_proj.weight", [ kvHeads * headDim; d ], 0.3) |> ignore
        if qwen2 then
            w.Normal(p "self_attn.k_proj.bias", [ kvHeads * headDim ], 0.2) |> ignore
        w.Normal(p "self_attn.v_proj.weight", [ kvHeads * headDim; d ], 0.3) |> ignore
        if qwen2 then
            w.Normal(p "self_attn.v_proj.bias", [ kvHeads * headDim ], 0.2) |> ignore
        w.Normal(p "self_attn.o_proj.weight", [ d; heads * headDim ], 0.3) |> ignore
        if qwen3 then
            w.AroundOne(p "self_attn.q_norm.weight", [ headDim ], 0.2) |> ignore
            w.AroundOne(p "self_attn.k_norm.weight", [ headDim ], 0.2) |> ignore
        w.AroundOne(p "post_attention_layernorm.weight", [ d ], 0.1) |> ignore
        w.Normal(p "mlp.gate_proj.weight", [ inner; d ], 0.3) |> ignore
        w.Normal(p "mlp.up_proj.weight", [ inner; d ], 0.3) |> ignore
        w.Normal(p "mlp.down_proj.weight", [ d; inner ], 0.2) |> ignore
    w.AroundOne("model.norm.weight", [ d ], 0.1) |> ignore
    if not o.Tied then
        w.Normal("lm_head.weight", [ vocab; d ], 0.3) |> ignore
    w.Save dir
    let architecture =
        match o.Kind with
        | "llama" -> "LlamaForCausalLM"
        | "qwen2" -> "Qwen2ForCausalLM"
        | _ -> "Qwen3ForCausalLM"
    let config = Dictionary<string, obj>()
    for key, value in
        [
            "architectures", box [| architecture |]
            "model_type", box o.Kind
            "vocab_size", box vocab
            "hidden_size", box d
            "intermediate_size", box inner
            "num_hidden_layers", box o.Layers
            "num_attention_heads", box heads
            "num_key_value_heads", box kvHeads
            "max_position_embeddings", box positions
            "rms_norm_eps", box 1e-6
            "rope_theta", box 500.0
            "hidden_act", box "silu"
            "tie_word_embeddings", box o.Tied
            "torch_dtype", box "bfloat16"
        ] do
        config.[key] <- value
    if qwen3 then
        config.["head_dim"] <- box headDim
        config.["attention_bias"] <- box false
    for key, value in o.Extra do
        config.[key] <- value
    writeConfig dir config
    let weights = w.Map
    let get (name: string) =
        match weights.TryFind name with
        | Some t -> t
        | None -> failwithf "the reference asked for %s, which the test checkpoint does not have" name
    let head =
        if o.Tied then
            get "model.embed_tokens.weight"
        else
            get "lm_head.weight"
    let reference: ModernConfig =
        {
            Layers = o.Layers
            Heads = heads
            KvHeads = kvHeads
            HeadDim = headDim
            Eps = 1e-6
            Frequencies = defaultArg o.Frequencies (defaultFrequencies 500.0 headDim)
            QkvBias = qwen2
            OutputBias = false
            QkNorm = qwen3
            Windows = o.Windows
        }
    {
        Name = o.Kind
        Dir = dir
        Weights = weights
        Reference = modern get head reference
        Vocab = vocab
        LayersPerBlock = 2
        Blocks = o.Layers
    }

/// Llama 3.1's rope_scaling with a small original context, so that head_dim 8's four frequencies (wavelengths
/// 6.3, 29.7, 140 and 664) fall in all three bands: original 64, low 1, high 4 → kept below 16, blended between 16
/// and 64, divided above 64.
let llama3Scaling =
    dict
        [
            "factor", box 8.0
            "low_freq_factor", box 1.0
            "high_freq_factor", box 4.0
            "original_max_position_embeddings", box 64
            "rope_type", box "llama3"
        ]

/// Llama 3.1 (llama3 rope_scaling; `referenceScaled` false gives the reference the unscaled frequencies).
let llama31 (seed: int) (dtype: string) (referenceScaled: bool) =
    modernCase
        seed
        dtype
        { modernDefaults "llama" with
            Extra = [ "rope_scaling", box llama3Scaling ]
            Frequencies =
                Some(
                    if referenceScaled then
                        llama3Frequencies 500.0 8 8.0 1.0 4.0 64.0
                    else
                        defaultFrequencies 500.0 8
                )
        }

/// Qwen2 with an untied head, no sliding window (use_sliding_window false, as the released configs).
let qwen2 (seed: int) (dtype: string) =
    modernCase
        seed
        dtype
        { modernDefaults "qwen2" with
            Extra = [ "use_sliding_window", box false; "sliding_window", box 4096; "max_window_layers", box 21 ]
        }

/// Qwen2.5 with a tied head and use_sliding_window true: layers from max_window_layers 1 on see 3 positions.
let qwen25Windowed (seed: int) (dtype: string) (referenceWindows: int option list) =
    modernCase
        seed
        dtype
        { modernDefaults "qwen2" with
            Tied = true
            Extra = [ "use_sliding_window", box true; "sliding_window", box 3; "max_window_layers", box 1 ]
            Windows = referenceWindows
        }

/// Qwen3 with a tied head and explicit layer_types: the first layer slides a window of 2, the second does not.
let qwen3 (seed: int) (dtype: string) =
    modernCase
        seed
        dtype
        { modernDefaults "qwen3" with
            Tied = true
            Extra =
                [
                    "use_sliding_window", box true
                    "sliding_window", box 2
                    "layer_types", box [| "sliding_attention"; "full_attention" |]
                    "rope_scaling", box null
                ]
            Windows = [ Some 2; None ]
        }
