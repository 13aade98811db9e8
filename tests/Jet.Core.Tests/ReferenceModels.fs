/// Straightforward TorchSharp implementations of each family, written from the Hugging Face modeling code and
/// reading the checkpoint tensors by their Hugging Face names and layouts. They do not use the DSL: they are what
/// the loaders' networks are checked against. Shapes: tokens [seq]; hidden states [seq, d]; logits [seq, vocab].
module Jet.Core.Tests.ReferenceModels

open System
open TorchSharp
open Jet.Core

/// What a reference forward pass returns: the logits, every residual update in order (for sequential blocks
/// attention then MLP; for parallel blocks their sum) and the streams h_0..h_L, so h_l − h_{l−1} can be compared
/// layer by layer.
type ReferenceOutput = { Logits: Tensor; Updates: Tensor list; Streams: Tensor list }

/// Collects h_0 and the updates, keeping the running stream.
type private Residual(h0: Tensor) =
    let updates = ResizeArray<Tensor>()
    let streams = ResizeArray<Tensor>([ h0 ])
    member _.H = streams.[streams.Count - 1]
    member _.Add(update: Tensor) =
        updates.Add update
        streams.Add(streams.[streams.Count - 1] + update)
    member _.Output(logits: Tensor) = { Logits = logits; Updates = List.ofSeq updates; Streams = List.ofSeq streams }

/// Additive mask [seq, seq]: 0 where query i may see key j, −∞ elsewhere.
let mask (seq: int) (allowed: int -> int -> bool) =
    let values =
        Array.init (seq * seq) (fun n ->
            if allowed (n / seq) (n % seq) then
                0.0
            else
                Double.NegativeInfinity)
    torch.tensor(values, dtype = torch.float64).reshape (int64 seq, int64 seq)

let causal i j = j <= i

/// [seq, heads·hd] → [heads, seq, hd].
let splitHeads (heads: int) (x: Tensor) = x.reshape(x.shape.[0], int64 heads, -1L).transpose (0L, 1L)

/// [heads, seq, hd] → [seq, heads·hd].
let mergeHeads (x: Tensor) = x.transpose(0L, 1L).reshape (x.shape.[1], -1L)

/// softmax(q kᵀ · scale + mask) v per head.
let attend (q: Tensor) (k: Tensor) (v: Tensor) (scale: float) (m: Tensor) =
    (q.matmul (k.transpose (-2L, -1L)) * scale + m).softmax(-1L).matmul v

let layerNorm (x: Tensor) (w: Tensor) (b: Tensor) (eps: float) =
    torch.nn.functional.layer_norm (x, [| x.shape.[1] |], w, b, eps)

/// HF's LlamaRMSNorm, or GemmaRMSNorm when `plusOne`.
let rmsNorm (x: Tensor) (w: Tensor) (eps: float) (plusOne: bool) =
    let normed = x * torch.rsqrt (x.pow(scalar 2.0).mean ([| -1L |], keepdim = true) + eps)
    if plusOne then normed * (1.0 + w) else normed * w

let activation (name: string) (x: Tensor) =
    match name with
    | "gelu_new"
    | "gelu_pytorch_tanh" -> torch.nn.functional.gelu (x, TorchSharp.Modules.GELU.Approximate.tanh)
    | "gelu" -> torch.nn.functional.gelu x
    | "silu" -> torch.nn.functional.silu x
    | "relu" -> torch.nn.functional.relu x
    | other -> failwithf "no reference activation %s" other

/// HF's rotary embedding on the first `dims` coordinates of x [heads, seq, hd] (rotate_half convention).
let rotary (dims: int) (theta: float) (x: Tensor) =
    if dims = 0 then
        x
    else
        let seq = x.shape.[1]
        let inverse =
            1.0
            / torch.pow (torch.tensor theta, torch.arange (0L, int64 dims, 2L, dtype = torch.float64) / float dims)
        let freqs = torch.outer (torch.arange (seq, dtype = torch.float64), inverse)
        let emb = torch.cat ([| freqs; freqs |], -1L)
        let cos, sin = emb.cos (), emb.sin ()
        let rotated = x.narrow (-1L, 0L, int64 dims)
        let passed = x.narrow (-1L, int64 dims, x.shape.[2] - int64 dims)
        let half = int64 (dims / 2)
        let rotateHalf =
            torch.cat ([| -(rotated.narrow (-1L, half, half)); rotated.narrow (-1L, 0L, half) |], -1L)
        torch.cat ([| rotated * cos + rotateHalf * sin; passed |], -1L)

let private embed (table: Tensor) (tokens: int64[]) = table.index_select (0L, torch.tensor tokens)

// ---------------------------------------------------------------- GPT-2

type Gpt2Config = { Layers: int; Heads: int; Eps: float; Act: string; ScaleByLayer: bool }

/// GPT2LMHeadModel: Conv1D weights [in, out] used as x·W + b.
let gpt2 (w: string -> Tensor) (head: Tensor) (c: Gpt2Config) (tokens: int64[]) =
    let seq = tokens.Length
    let conv name (x: Tensor) = x.matmul (w (name + ".weight")) + w (name + ".bias")
    let r = Residual(embed (w "wte.weight") tokens + w("wpe.weight").narrow (0L, 0L, int64 seq))
    let m = mask seq causal
    for l in 0 .. c.Layers - 1 do
        let p n = sprintf "h.%d.%s" l n
        let a = layerNorm r.H (w (p "ln_1.weight")) (w (p "ln_1.bias")) c.Eps
        let qkv = conv (p "attn.c_attn") a
        let d = qkv.shape.[1] / 3L
        let q, k, v = qkv.narrow (1L, 0L, d), qkv.narrow (1L, d, d), qkv.narrow (1L, 2L * d, d)
        let hd = int d / c.Heads
        let scale = 1.0 / sqrt (float hd) / (if c.ScaleByLayer then float (l + 1) else 1.0)
        let attn =
            conv
                (p "attn.c_proj")
                (mergeHeads (attend (splitHeads c.Heads q) (splitHeads c.Heads k) (splitHeads c.Heads v) scale m))
        r.Add attn
        let x = layerNorm r.H (w (p "ln_2.weight")) (w (p "ln_2.bias")) c.Eps
        let mlp = conv (p "mlp.c_proj") (activation c.Act (conv (p "mlp.c_fc") x))
        r.Add mlp
    let final = layerNorm r.H (w "ln_f.weight") (w "ln_f.bias") c.Eps
    r.Output(final.matmul (head.t ()))

// ---------------------------------------------------------------- GPT-Neo

type GptNeoConfig = { Layers: int; Heads: int; Eps: float; Kinds: string list; Window: int; Scaled: bool }

/// GPTNeoForCausalLM: nn.Linear weights, q/k/v without bias, unscaled scores (`Scaled` = true only to show
/// that scaling would change the result), local layers see keys i − j < window.
let gptNeo (w: string -> Tensor) (head: Tensor) (c: GptNeoConfig) (tokens: int64[]) =
    let seq = tokens.Length
    let project name (x: Tensor) = x.matmul (w(name + ".weight").t ())
    let linear name (x: Tensor) = project name x + w (name + ".bias")
    let r = Residual(embed (w "wte.weight") tokens + w("wpe.weight").narrow (0L, 0L, int64 seq))
    c.Kinds
    |> List.iteri (fun l kind ->
        let p n = sprintf "h.%d.%s" l n
        let a = layerNorm r.H (w (p "ln_1.weight")) (w (p "ln_1.bias")) c.Eps
        let q = project (p "attn.attention.q_proj") a
        let k = project (p "attn.attention.k_proj") a
        let v = project (p "attn.attention.v_proj") a
        let hd = int q.shape.[1] / c.Heads
        let allowed i j = j <= i && (kind = "global" || i - j < c.Window)
        let scale = if c.Scaled then 1.0 / sqrt (float hd) else 1.0
        let attn =
            linear
                (p "attn.attention.out_proj")
                (mergeHeads (
                    attend
                        (splitHeads c.Heads q)
                        (splitHeads c.Heads k)
                        (splitHeads c.Heads v)
                        scale
                        (mask seq allowed)
                ))
        r.Add attn
        let x = layerNorm r.H (w (p "ln_2.weight")) (w (p "ln_2.bias")) c.Eps
        let mlp = linear (p "mlp.c_proj") (activation "gelu_new" (linear (p "mlp.c_fc") x))
        r.Add mlp)
    let final = layerNorm r.H (w "ln_f.weight") (w "ln_f.bias") c.Eps
    r.Output(final.matmul (head.t ()))

// ---------------------------------------------------------------- GPT-NeoX

type GptNeoXConfig = { Layers: int; Heads: int; Eps: float; RotaryDims: int; Base: float; Parallel: bool }

/// GPTNeoXForCausalLM: fused query_key_value viewed [seq, heads, 3·hd] and split per head, partial rotary,
/// parallel or sequential residual, exact GELU, separate embed_out.
let gptNeoX (w: string -> Tensor) (c: GptNeoXConfig) (tokens: int64[]) =
    let seq = tokens.Length
    let linear name (x: Tensor) = x.matmul (w(name + ".weight").t ()) + w (name + ".bias")
    let r = Residual(embed (w "gpt_neox.embed_in.weight") tokens)
    let m = mask seq causal
    for l in 0 .. c.Layers - 1 do
        let p n = sprintf "gpt_neox.layers.%d.%s" l n
        let attention (x: Tensor) =
            let qkv = linear (p "attention.query_key_value") x
            let hd = qkv.shape.[1] / 3L / int64 c.Heads
            let perHead = qkv.reshape(int64 seq, int64 c.Heads, 3L * hd).transpose (0L, 1L) // [heads, seq, 3hd]
            let q, k, v =
                perHead.narrow (-1L, 0L, hd), perHead.narrow (-1L, hd, hd), perHead.narrow (-1L, 2L * hd, hd)
            let q, k = rotary c.RotaryDims c.Base q, rotary c.RotaryDims c.Base k
            linear (p "attention.dense") (mergeHeads (attend q k v (1.0 / sqrt (float hd)) m))
        let mlp (x: Tensor) = linear (p "mlp.dense_4h_to_h") (activation "gelu" (linear (p "mlp.dense_h_to_4h") x))
        let ln1 (x: Tensor) = layerNorm x (w (p "input_layernorm.weight")) (w (p "input_layernorm.bias")) c.Eps
        let ln2 (x: Tensor) =
            layerNorm x (w (p "post_attention_layernorm.weight")) (w (p "post_attention_layernorm.bias")) c.Eps
        if c.Parallel then
            let update = attention (ln1 r.H) + mlp (ln2 r.H)
            r.Add update
        else
            let a = attention (ln1 r.H)
            r.Add a
            let f = mlp (ln2 r.H)
            r.Add f
    let final =
        layerNorm r.H (w "gpt_neox.final_layer_norm.weight") (w "gpt_neox.final_layer_norm.bias") c.Eps
    r.Output(final.matmul (w("embed_out.weight").t ()))

// ---------------------------------------------------------------- Llama, Mistral, Gemma

type LlamaConfig =
    {
        Layers: int
        Heads: int
        KvHeads: int
        HeadDim: int
        Eps: float
        Theta: float
        Act: string
        Window: int option
        Gemma: bool
    }

/// LlamaForCausalLM / MistralForCausalLM / GemmaForCausalLM: RMSNorm, rotary on whole heads, repeat_kv by
/// expand + reshape as HF does, gated MLP; Gemma's √d embedding scale and (1 + w) norms.
let llama (w: string -> Tensor) (head: Tensor) (c: LlamaConfig) (tokens: int64[]) =
    let seq = tokens.Length
    let linear name (x: Tensor) = x.matmul (w(name + ".weight").t ())
    let table = w "model.embed_tokens.weight"
    let e = embed table tokens
    let r = Residual(if c.Gemma then e * sqrt (float table.shape.[1]) else e)
    let allowed i j =
        j <= i
        && (match c.Window with
            | Some win -> i - j < win
            | None -> true)
    let m = mask seq allowed
    let repeatKv (x: Tensor) =
        let groups = int64 (c.Heads / c.KvHeads)
        x
            .unsqueeze(1L)
            .expand(int64 c.KvHeads, groups, int64 seq, int64 c.HeadDim)
            .reshape (int64 c.Heads, int64 seq, int64 c.HeadDim)
    for l in 0 .. c.Layers - 1 do
        let p n = sprintf "model.layers.%d.%s" l n
        let x = rmsNorm r.H (w (p "input_layernorm.weight")) c.Eps c.Gemma
        let q = rotary c.HeadDim c.Theta (splitHeads c.Heads (linear (p "self_attn.q_proj") x))
        let k = rotary c.HeadDim c.Theta (splitHeads c.KvHeads (linear (p "self_attn.k_proj") x))
        let v = splitHeads c.KvHeads (linear (p "self_attn.v_proj") x)
        let attn =
            linear
                (p "self_attn.o_proj")
                (mergeHeads (attend q (repeatKv k) (repeatKv v) (1.0 / sqrt (float c.HeadDim)) m))
        r.Add attn
        let y = rmsNorm r.H (w (p "post_attention_layernorm.weight")) c.Eps c.Gemma
        let mlp =
            linear (p "mlp.down_proj") (activation c.Act (linear (p "mlp.gate_proj") y) * linear (p "mlp.up_proj") y)
        r.Add mlp
    let final = rmsNorm r.H (w "model.norm.weight") c.Eps c.Gemma
    r.Output(final.matmul (head.t ()))
