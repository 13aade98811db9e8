namespace Jet.Core.Apps

open TorchSharp
open Jet.Core
open Jet.Core.Primitives

/// Single attention heads as functions of the residual stream: the attention branch of a residual layer with its
/// attention replaced by chosen heads alone, each head's mix of values through its own slice of W_O and no output
/// bias. Projections, head splits, rotary positions and grouped-query sharing are the primitive's own code
/// (`SelfAttention.project`, `SelfAttention.heads`), so a head here cannot drift from the attention the model runs.
[<RequireQualifiedAccess>]
module AttentionHeads =

    /// The attention spec of a residual layer's γ and the branch of γ it sits in (pre-norm and any post-norm
    /// included): the whole γ of an attention layer, the attention branch of a parallel layer; None when γ has no
    /// attention.
    let branchOf (layer: ResidualLayer) : (Fn * Attention) option =
        let attentionIn =
            Fn.tryPick (fun f ->
                match f with
                | Attention a -> Some a
                | _ -> None)
        match layer.Gamma with
        | Sum branches -> branches |> List.tryPick (fun b -> attentionIn b |> Option.map (fun a -> b, a))
        | gamma -> attentionIn gamma |> Option.map (fun a -> gamma, a)

    /// The query heads of residual layer l (1-based) of `net`, 0 when the layer has no attention.
    let headCount (net: Net) (l: int) =
        match branchOf net.Spec.Layers.[l - 1] with
        | Some(_, a) -> a.Heads
        | None -> 0

    /// The outputs of query heads `heads` (1-based) of attention `a` on x [batch, seq, d]: [heads·batch, seq, d], head
    /// by head (the first `batch` rows are the first head's). Head h is softmax(q_h k_hᵀ)·v_h through its columns of
    /// W_O, without the output bias, so the heads of a layer plus the bias sum to the attention's output.
    let outputs (parameters: ParameterStore) (a: Attention) (heads: int[]) (x: Tensor) : Tensor =
        let seq = x.shape.[1]
        let q, k, v = SelfAttention.heads a seq (SelfAttention.project parameters a x)
        let chosen =
            torch.tensor (heads |> Array.map (fun h -> int64 (h - 1)), dtype = torch.int64, device = x.device)
        let pick (t: Tensor) = t.index_select (1L, chosen)
        let q, k, v = pick q, pick k, pick v
        let scores =
            SelfAttention.capScores Activations.apply a (q.matmul (k.transpose (-2L, -1L)) * SelfAttention.scale a)
        let scores =
            scores.masked_fill (
                (SelfAttention.allowed a.Window seq x.device).logical_not (),
                System.Double.NegativeInfinity
            )
        // [batch, n, seq, dh] → [n, batch, seq, dh]
        let mixed = scores.softmax(-1L).matmul(v).transpose (0L, 1L)
        let dh = int64 a.HeadDim
        let w = parameters.[a.Output.Weight]
        // W_O [d, heads·dh] as [heads, dh, d]: head h's slice maps its dh values to the stream.
        let slices = w.t().unflatten(0L, [| int64 a.Heads; dh |]).index_select (0L, chosen.``to`` w.device)
        let n = int64 heads.Length
        let batch = x.shape.[0]
        mixed.reshape(n, batch * seq, dh).bmm(slices).reshape (n * batch, seq, -1L)

    /// The branch of residual layer l's γ that holds its attention, with the attention replaced by heads `heads`
    /// (1-based, valid) alone: [batch, seq, d] → [heads·batch, seq, d], head by head. What follows the attention in
    /// the branch (a post-norm) acts per position, so it reads the stacked heads as a batch.
    let branch (net: Net) (l: int) (heads: int[]) : Fn =
        let gamma, attention = (branchOf net.Spec.Layers.[l - 1]).Value
        let name =
            heads
            |> Array.map (fun h -> "OV" + Notation.subscript l + "," + Notation.subscript h)
            |> String.concat " | "
        let replacement = Fn.custom name (outputs net.Parameters attention heads)
        let rec replace (f: Fn) =
            match f with
            | Attention a when a = attention -> replacement
            | Chain fs -> Chain(List.map replace fs)
            | Sum fs -> Sum(List.map replace fs)
            | Scale(c, inner) -> Scale(c, replace inner)
            | Linear _
            | Act _
            | LayerNorm _
            | RmsNorm _
            | Attention _
            | GatedMlp _
            | Custom _ -> f
        replace gamma
