namespace Jet.Core

/// How rotary position embedding pairs the coordinates it rotates.
[<RequireQualifiedAccess>]
type RotaryStyle =
    /// Pairs coordinate i with i + r/2 (GPT-NeoX, Llama in Hugging Face layout).
    | RotateHalf
    /// Pairs coordinate 2i with 2i + 1 (GPT-J, the original RoFormer).
    | Interleaved

/// Llama 3.1's `rope_scaling` (rope_type "llama3"): with wavelength λ = 2π/f, frequencies whose λ exceeds
/// OriginalContext / LowFreqFactor are divided by Factor, those below OriginalContext / HighFreqFactor are kept,
/// and those between blend the two with s = (OriginalContext/λ − LowFreqFactor) / (HighFreqFactor − LowFreqFactor).
type Llama3RopeScaling =
    {
        Factor: float
        LowFreqFactor: float
        HighFreqFactor: float
        /// original_max_position_embeddings.
        OriginalContext: int
    }

/// How a checkpoint rescales the rotary frequencies for a longer context (Hugging Face `rope_scaling`).
[<RequireQualifiedAccess>]
type RotaryScaling =
    /// The frequencies Base^(−2i/r) as they are.
    | Plain
    /// Every frequency divided by the factor (rope_type "linear": positions interpolated).
    | Linear of factor: float
    /// Llama 3.1 / 3.2 (rope_type "llama3").
    | Llama3 of Llama3RopeScaling

/// Rotary position embedding applied to queries and keys: the first `Fraction` of each head's
/// coordinates are rotated by angles position · f_i, with frequencies f_i = Base^(−2i/r) rescaled by `Scaling`.
type Rotary = { Fraction: float; Base: float; Style: RotaryStyle; Scaling: RotaryScaling }

/// RMSNorm on the projected queries and keys, before the rotary embedding: over each head's head_dim coordinates
/// when `PerHead` (Qwen3's q_norm and k_norm, weights [head_dim]), else over the whole projection across heads
/// (OLMo-2's, weights [heads·head_dim] and [kv_heads·head_dim]).
type QkNorm = { Query: RmsNormSpec; Key: RmsNormSpec; PerHead: bool }

/// How fused query/key/value rows are laid out in one projection.
[<RequireQualifiedAccess>]
type FusedLayout =
    /// [all query heads; all key heads; all value heads] (GPT-2's c_attn after transposing).
    | Blocked
    /// For each head h: [query_h; key_h; value_h] (GPT-NeoX's query_key_value).
    | PerHead

/// A step applied to the projected queries, keys and values [..., heads·head_dim] before the heads are split.
[<RequireQualifiedAccess>]
type QkvStep =
    /// Clamps queries, keys and values to [−c, c] (OLMo's clip_qkv).
    | Clip of float
    /// RMSNorm on queries and keys, per head (Qwen3) or over the whole projections (OLMo-2); values pass through.
    | NormQk of QkNorm

/// The query, key and value projections of an attention layer.
[<RequireQualifiedAccess>]
type Projections =
    | Separate of query: Linear * key: Linear * value: Linear
    | Fused of qkv: Linear * layout: FusedLayout
    /// The projections, then a step on their outputs.
    | Then of Projections * QkvStep

/// How attention scores q·k are scaled before the softmax.
[<RequireQualifiedAccess>]
type ScoreScaling =
    /// 1/√head_dim (almost every model).
    | InverseSqrtHeadDim
    /// No scaling (GPT-Neo).
    | Unscaled
    /// A fixed factor.
    | By of float
    /// Scores · scale, then soft-capped to cap·tanh(· / cap) before the mask (Gemma 2's attn_logit_softcapping).
    | SoftCapped of scale: float * cap: float

/// Causal multi-head self-attention over [batch, seq, d]. `KvHeads` < `Heads` is grouped-query attention.
type Attention =
    {
        Heads: int
        KvHeads: int
        HeadDim: int
        Projections: Projections
        Output: Linear
        Rotary: Rotary option
        Scaling: ScoreScaling
        /// Each position attends to at most this many positions, itself included (local / sliding-window attention).
        Window: int option
    }

namespace Jet.Core.Primitives

open System
open TorchSharp
open Jet.Core

/// Causal multi-head self-attention `Attention a` and its pieces (projections, rotary, masks): forward definition,
/// Taylor rule, printing and parameters.
/// Shapes: input [batch, seq, d]; heads are laid out [batch, heads, seq, head_dim].
[<RequireQualifiedAccess>]
module SelfAttention =

    /// The number of rotated coordinates per head: ⌊fraction · head_dim⌋ as Hugging Face computes it, made even.
    let rotaryDims (rotary: Rotary) (headDim: int) =
        let r = int (Math.Floor(rotary.Fraction * float headDim + 1e-9))
        r - (r % 2)

    /// The rotary frequencies [r/2] (float64): base^(−2i/r), rescaled as `rotary.Scaling` says (as Hugging Face's
    /// `_compute_linear_scaling_rope_parameters` and `_compute_llama3_parameters` do; both keep the attention
    /// scale at 1).
    let frequencies (rotary: Rotary) (headDim: int) : Tensor =
        let r = rotaryDims rotary headDim
        let half = int64 (r / 2)
        let plain =
            torch.pow (torch.tensor rotary.Base, -(torch.arange (0L, half, dtype = torch.float64) * 2.0 / float r))
        match rotary.Scaling with
        | RotaryScaling.Plain -> plain
        | RotaryScaling.Linear factor -> plain / factor
        | RotaryScaling.Llama3 s ->
            let wavelength = 2.0 * Math.PI / plain
            let context = float s.OriginalContext
            let longWaves = wavelength.gt (torch.tensor (context / s.LowFreqFactor, dtype = torch.float64))
            let shortWaves = wavelength.lt (torch.tensor (context / s.HighFreqFactor, dtype = torch.float64))
            let smooth = (context / wavelength - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
            let blended = (1.0 - smooth) * plain / s.Factor + smooth * plain
            let medium = longWaves.logical_or(shortWaves).logical_not ()
            torch.where (medium, blended, torch.where (longWaves, plain / s.Factor, plain))

    /// cos and sin of the rotary angles, each [seq, r/2]: angle(p, i) = p · f_i (see `frequencies`).
    let rotaryAngles (rotary: Rotary) (headDim: int) (seq: int64) (like: Tensor) =
        let angles = torch.outer (torch.arange (seq, dtype = torch.float64), frequencies rotary headDim)
        torch.cos(angles).to_type(like.dtype).``to`` (like.device),
        torch.sin(angles).to_type(like.dtype).``to`` (like.device)

    /// Rotates the first r coordinates of each head of x [batch, heads, seq, head_dim]; linear in x.
    let rotate (rotary: Rotary) (cos: Tensor, sin: Tensor) (x: Tensor) =
        let headDim = int x.shape.[3]
        let r = int64 (rotaryDims rotary headDim)
        if r = 0L then
            x
        else
            let half = r / 2L
            let rotated = x.narrow (3L, 0L, r)
            let rest = x.narrow (3L, r, int64 headDim - r)
            let turned =
                match rotary.Style with
                | RotaryStyle.RotateHalf ->
                    let x1, x2 = rotated.narrow (3L, 0L, half), rotated.narrow (3L, half, half)
                    torch.cat ([| x1 * cos - x2 * sin; x2 * cos + x1 * sin |], 3L)
                | RotaryStyle.Interleaved ->
                    let pairs = rotated.unflatten (3L, [| half; 2L |])
                    let even, odd = pairs.select (4L, 0L), pairs.select (4L, 1L)
                    torch.stack([| even * cos - odd * sin; odd * cos + even * sin |], 4L).flatten (3L, 4L)
            if r = int64 headDim then
                turned
            else
                torch.cat ([| turned; rest |], 3L)

    /// Boolean [seq, seq] mask, true where position i may attend to j (j ≤ i, and i − j < window).
    let allowed (window: int option) (seq: int64) (device: torch.Device) =
        let i = torch.arange(seq, device = device).unsqueeze 1
        let j = torch.arange(seq, device = device).unsqueeze 0
        let causal = j.le i
        match window with
        | Some w -> causal.logical_and ((i - j).lt (torch.tensor (int64 w, device = device)))
        | None -> causal

    /// The score scale factor.
    let scale (a: Attention) =
        match a.Scaling with
        | ScoreScaling.InverseSqrtHeadDim -> 1.0 / Math.Sqrt(float a.HeadDim)
        | ScoreScaling.Unscaled -> 1.0
        | ScoreScaling.By c -> c
        | ScoreScaling.SoftCapped(c, _) -> c

    /// Scaled scores, soft-capped where the layer caps them; `activation` is `Activations.apply` or its Taylor rule.
    let capScores (activation: Activation -> Tensor -> Tensor) (a: Attention) (scores: Tensor) =
        match a.Scaling with
        | ScoreScaling.SoftCapped(_, cap) -> activation (Activation.SoftCap cap) scores
        | ScoreScaling.InverseSqrtHeadDim
        | ScoreScaling.Unscaled
        | ScoreScaling.By _ -> scores

    /// Clamps x to [−c, c]. As a series [k+1, ...]: elements with |x₀| ≤ c keep every coefficient (the clamp is the
    /// identity there, and autograd passes the gradient at the bound itself); the others become the constant ±c.
    let clipSeries (c: float) (x: Tensor) =
        let x0 = x.[0L]
        let inside = x0.abs().le (torch.tensor (c, dtype = x.dtype, device = x.device))
        let constant =
            torch.cat (
                [|
                    x0.clamp(scalar -c, scalar c).unsqueeze 0L
                    torch.zeros_like (x.narrow (0L, 1L, x.shape.[0] - 1L))
                |],
                0L
            )
        torch.where (inside, x, constant)

    /// The step on projected q, k, v: with `taylor` false, the forward clamps and norms of tensors [..., width]; with
    /// `taylor` true, their Taylor rules on series [k+1, ..., width]. Per-head norms view the last axis as
    /// [width / headDim, headDim]; both rules normalise the last axis only, so the leading axes pass through.
    let qkvStep
        (parameters: ParameterStore)
        (taylor: bool)
        (headDim: int)
        (step: QkvStep)
        (q: Tensor, k: Tensor, v: Tensor)
        =
        match step with
        | QkvStep.Clip c ->
            let clip (t: Tensor) =
                if taylor then
                    clipSeries c t
                else
                    t.clamp (scalar -c, scalar c)
            clip q, clip k, clip v
        | QkvStep.NormQk n ->
            let rule =
                if taylor then
                    Norms.rmsNormTaylor parameters
                else
                    Norms.rmsNorm parameters
            let norm (spec: RmsNormSpec) (t: Tensor) =
                if n.PerHead then
                    // TorchSharp's unflatten takes no negative axis.
                    (rule spec (t.unflatten (t.dim () - 1L, [| -1L; int64 headDim |]))).flatten (-2L, -1L)
                else
                    rule spec t
            norm n.Query q, norm n.Key k, v

    /// Splits [batch, seq, heads·head_dim] into [batch, heads, seq, head_dim].
    let splitHeads (heads: int) (x: Tensor) = x.unflatten(2L, [| int64 heads; -1L |]).transpose (1L, 2L)

    /// Queries, keys and values from `affine` and `step` (the forward maps, or their Taylor rules), each
    /// [..., heads·head_dim] (keys and values with the KV heads). The splits act on the last axis only, so any leading
    /// axes pass through.
    let rec private projectThrough
        (affine: Linear -> Tensor -> Tensor)
        (step: QkvStep -> Tensor * Tensor * Tensor -> Tensor * Tensor * Tensor)
        (a: Attention)
        (projections: Projections)
        (x: Tensor)
        =
        match projections with
        | Projections.Then(inner, s) -> step s (projectThrough affine step a inner x)
        | Projections.Separate(q, k, v) -> affine q x, affine k x, affine v x
        | Projections.Fused(qkv, FusedLayout.Blocked) ->
            let all = affine qkv x
            let qWidth, kvWidth = int64 (a.Heads * a.HeadDim), int64 (a.KvHeads * a.HeadDim)
            all.narrow (-1L, 0L, qWidth), all.narrow (-1L, qWidth, kvWidth), all.narrow (-1L, qWidth + kvWidth, kvWidth)
        | Projections.Fused(qkv, FusedLayout.PerHead) ->
            let all = affine qkv x
            // TorchSharp's unflatten takes no negative axis.
            let all = all.unflatten (all.dim () - 1L, [| int64 a.Heads; 3L * int64 a.HeadDim |])
            let part i = all.narrow(-1L, int64 (i * a.HeadDim), int64 a.HeadDim).flatten (-2L, -1L)
            part 0, part 1, part 2

    /// Queries, keys and values, each [batch, seq, heads·head_dim] (keys and values with the KV heads).
    let project (parameters: ParameterStore) (a: Attention) (x: Tensor) =
        projectThrough (Affine.apply parameters) (qkvStep parameters false a.HeadDim) a a.Projections x

    /// The Taylor rule of `project`: series [k+1, batch, seq, d] to series of q, k, v.
    let projectTaylor (parameters: ParameterStore) (a: Attention) (x: Tensor) =
        projectThrough (Affine.taylor parameters) (qkvStep parameters true a.HeadDim) a a.Projections x

    /// Repeats each KV head for the query heads that share it: [b, kv, s, dh] → [b, heads, s, dh].
    let repeatKv (a: Attention) (x: Tensor) =
        if a.KvHeads = a.Heads then
            x
        else
            x.repeat_interleave (int64 (a.Heads / a.KvHeads), dim = 1L)

    /// Merges [batch, heads, seq, head_dim] back into [batch, seq, heads·head_dim].
    let mergeHeads (x: Tensor) = x.transpose(1L, 2L).flatten (2L, 3L)

    /// Projected queries, keys and values [batch, seq, ·] as heads [batch, heads, seq, head_dim]: rotated where the
    /// layer has rotary positions, and keys and values repeated for the query heads that share them. Linear, so the
    /// Taylor rule runs it on the coefficient stack folded into the batch axis.
    let heads (a: Attention) (seq: int64) (q: Tensor, k: Tensor, v: Tensor) =
        let q, k, v = splitHeads a.Heads q, splitHeads a.KvHeads k, splitHeads a.KvHeads v
        let q, k =
            match a.Rotary with
            | Some r ->
                let angles = rotaryAngles r a.HeadDim seq q
                rotate r angles q, rotate r angles k
            | None -> q, k
        q, repeatKv a k, repeatKv a v

    /// Causal self-attention followed by the output projection.
    let apply (parameters: ParameterStore) (a: Attention) (x: Tensor) : Tensor =
        let seq = x.shape.[1]
        let q, k, v = heads a seq (project parameters a x)
        let scores = capScores Activations.apply a (q.matmul (k.transpose (-2L, -1L)) * scale a)
        let scores =
            scores.masked_fill ((allowed a.Window seq x.device).logical_not (), Double.NegativeInfinity)
        let mixed = scores.softmax(-1L).matmul v
        Affine.apply parameters a.Output (mergeHeads mixed)

    /// Taylor rule of `apply` on a series x [k+1, batch, seq, d] (see `Series`). The projections, head splits,
    /// rotary embedding and output projection are linear, so each maps the whole stack at once (q/k norms, where the
    /// layer has them, go through RMSNorm's Taylor rule on the stack; the head helpers
    /// act per batch item, so the coefficient axis rides in the batch axis); the scores QKᵀ and the mix
    /// probabilities·V are Cauchy products of matmuls; scaling is linear; masked scores become the constant −∞
    /// (x₀ = −∞, x_j = 0); softmax goes through exp and division, shifted by the row maximum of x₀.
    /// Example: with one position the softmax is the constant 1, so the series is the output projection of the
    /// value series V(x(t)).
    let taylor (parameters: ParameterStore) (a: Attention) (x: Tensor) : Tensor =
        if x.dim () <> 4L then
            let shape = Tensors.shapeText (Array.tail x.shape)
            raise (
                ShapeMismatchException(
                    sprintf "Attention expects a stream [batch, seq, d]; got a stream of shape %s." shape
                )
            )
        let count, batch, seq = x.shape.[0], x.shape.[1], x.shape.[2]
        let q, k, v = projectTaylor parameters a x
        let q, k, v = heads a seq (q.flatten (0L, 1L), k.flatten (0L, 1L), v.flatten (0L, 1L))
        let series (t: Tensor) = t.unflatten (0L, [| count; batch |])
        let scores =
            capScores Activations.taylor a (Series.matmul (series q) (series(k).transpose (-2L, -1L)) * scale a)
        let scores = Series.maskFill (allowed a.Window seq x.device) Double.NegativeInfinity scores
        let mixed = Series.matmul (Series.softmax scores) (series v)
        Affine.taylor parameters a.Output (series (mergeHeads (mixed.flatten (0L, 1L))))

    /// "Attention(2 heads × 3, q Linear(q), k Linear(k), v Linear(v), out Linear(o))", with the KV heads, rotary
    /// embedding, window and scaling shown where they differ from plain multi-head attention.
    let print (a: Attention) =
        let rotary =
            match a.Rotary with
            | Some r ->
                let scaling =
                    match r.Scaling with
                    | RotaryScaling.Plain -> ""
                    | RotaryScaling.Linear f -> sprintf " linear ×%g" f
                    | RotaryScaling.Llama3 s ->
                        sprintf
                            " llama3 ×%g (low %g, high %g, context %d)"
                            s.Factor
                            s.LowFreqFactor
                            s.HighFreqFactor
                            s.OriginalContext
                sprintf ", rotary %g%% %A%s" (100.0 * r.Fraction) r.Style scaling
            | None -> ""
        let window = a.Window |> Option.map (sprintf ", window %d") |> Option.defaultValue ""
        let rec projections (p: Projections) =
            match p with
            | Projections.Separate(q, k, v) ->
                sprintf "q %s, k %s, v %s" (Affine.print q) (Affine.print k) (Affine.print v)
            | Projections.Fused(qkv, layout) -> sprintf "qkv %s %A" (Affine.print qkv) layout
            | Projections.Then(inner, QkvStep.Clip c) -> sprintf "%s, clipped to ±%g" (projections inner) c
            | Projections.Then(inner, QkvStep.NormQk n) ->
                sprintf
                    "%s, q-norm %s, k-norm %s%s"
                    (projections inner)
                    (Norms.printRms n.Query)
                    (Norms.printRms n.Key)
                    (if n.PerHead then " per head" else "")
        let scaling =
            match a.Scaling with
            | ScoreScaling.InverseSqrtHeadDim -> ""
            | ScoreScaling.Unscaled -> ", unscaled"
            | ScoreScaling.By c -> sprintf ", scale %g" c
            | ScoreScaling.SoftCapped(c, cap) -> sprintf ", scale %g, soft-capped at %g" c cap
        let kv =
            if a.KvHeads <> a.Heads then
                sprintf "/%d kv" a.KvHeads
            else
                ""
        sprintf
            "Attention(%d heads%s × %d%s%s%s, %s, out %s)"
            a.Heads
            kv
            a.HeadDim
            rotary
            window
            scaling
            (projections a.Projections)
            (Affine.print a.Output)

    /// The projections' parameters (query, key, value or the fused one, then any q/k norm weights), then the output
    /// projection's.
    let parameterNames (a: Attention) =
        let rec projections (p: Projections) =
            match p with
            | Projections.Separate(q, k, v) ->
                Affine.parameterNames q @ Affine.parameterNames k @ Affine.parameterNames v
            | Projections.Fused(qkv, _) -> Affine.parameterNames qkv
            | Projections.Then(inner, QkvStep.Clip _) -> projections inner
            | Projections.Then(inner, QkvStep.NormQk n) ->
                projections inner @ Option.toList n.Query.Weight @ Option.toList n.Key.Weight
        projections a.Projections @ Affine.parameterNames a.Output

    /// The primitive `Attention a`, the only one that mixes positions.
    /// Example: with one position every softmax row is the constant 1, so for any heads and projections
    /// `(rule a).Forward parameters x` is the output projection of the values, V(x) W_oᵀ (+ b_o), for x [batch, 1, d].
    let rule (a: Attention) : PrimitiveRule =
        {
            Print = fun () -> print a
            Parameters = parameterNames a
            MixesPositions = true
            Forward = fun parameters x -> apply parameters a x
            Taylor = fun parameters x -> taylor parameters a x
        }
