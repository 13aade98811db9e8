namespace Jet.Core

open System
open TorchSharp

/// Where an expansion applies: a residual layer l (1..L), expanding h_l = h_{l−1} + γ_l(h_{l−1}), or the
/// decoder, expanding LN_f(h_L) (logits follow by the linear unembedding).
[<RequireQualifiedAccess>]
type Site =
    | Layer of int
    | Decoder

/// How jets are computed. `Taylor` propagates all k+1 Taylor coefficients through the syntax in one pass;
/// `Jvp` nests Jacobian-vector products (works for any function, slower at high order).
[<RequireQualifiedAccess>]
type Engine =
    | Taylor
    | Jvp

/// A tensor compared by identity, so plans that hold one keep structural equality elsewhere.
[<CustomEquality; NoComparison>]
type TensorRef =
    {
        Tensor: Tensor
    }

    override r.Equals(other) =
        match other with
        | :? TensorRef as o -> obj.ReferenceEquals(r.Tensor, o.Tensor)
        | _ -> false

    override r.GetHashCode() = LanguagePrimitives.PhysicalHash r.Tensor
    override r.ToString() = Tensors.describe r.Tensor + (if r.Tensor.requires_grad then " (requires grad)" else "")

/// The weights w_i of the centres.
[<RequireQualifiedAccess>]
type Weights =
    /// w_i = 1/N.
    | Uniform
    /// Fixed numbers, one per centre.
    | Fixed of float list
    /// A tensor of shape [N], [N, seq] or [N, batch, seq] (per-token weights), possibly requiring grad.
    | Tensor of TensorRef

/// A point to expand around, as a function of the token batch.
[<RequireQualifiedAccess>]
type Centre =
    /// The residual stream h_l (0..L); h₀ is the encoder output.
    | Stream of int
    /// γ_l(h_{l−1}), the update of residual layer l (1..L).
    | Gamma of int
    /// The scaled token embedding, without positions.
    | Embedding
    /// The encoder output h₀ (token embedding plus absolute positions where the model has them).
    | Encoder
    /// The difference of two centres.
    | Difference of Centre * Centre
    /// Term i (0-based) of an earlier expansion.
    | Term of Expansion * int
    /// Every term of an earlier expansion, in order (counts as as many centres as it has terms).
    | Terms of Expansion
    /// A user function of the tokens [batch, seq] → [batch, seq, d].
    | Custom of NamedFn

/// Algorithm 1 as data: at `Site`, around `Centres` with `Weights`, at `Order`, by `Engine`.
and Expansion =
    {
        Site: Site
        Centres: Centre list
        Order: int
        Weights: Weights
        Engine: Engine
    }

/// What a term is a jet of.
[<RequireQualifiedAccess>]
type JetTarget =
    /// γ_l.
    | Gamma of int
    /// The identity (the skip connection).
    | Identity
    /// The final norm LN_f.
    | FinalNorm
    /// A user function (generic expansions).
    | Named of string

/// Where a term comes from: a base centre, or the jet of a target around an earlier path.
[<RequireQualifiedAccess>]
type Path =
    | Origin of Centre
    | Jet of target: JetTarget * order: int * around: Path
    /// A decoder term mapped to logit space by the unembedding U.
    | Unembedded of Path

    /// A readable path name, for example `J¹γ₂(γ₁(Enc))`.
    override p.ToString() = Path.Render p

    static member DescribeExpansion(e: Expansion) =
        let site =
            match e.Site with
            | Site.Layer l -> sprintf "layer %d" l
            | Site.Decoder -> "the decoder"
        sprintf "the order-%d expansion at %s" e.Order site

    static member RenderCentre(c: Centre) : string =
        match c with
        | Centre.Stream 0
        | Centre.Encoder -> "Enc"
        | Centre.Stream l -> "h" + Notation.subscript l
        | Centre.Gamma 1 -> "γ₁(Enc)"
        | Centre.Gamma l -> sprintf "γ%s(h%s)" (Notation.subscript l) (Notation.subscript(l - 1))
        | Centre.Embedding -> "Emb"
        | Centre.Difference(a, b) -> sprintf "(%s − %s)" (Path.RenderCentre a) (Path.RenderCentre b)
        | Centre.Term(e, i) -> sprintf "term %d of %s" i (Path.DescribeExpansion e)
        | Centre.Terms e -> sprintf "terms of %s" (Path.DescribeExpansion e)
        | Centre.Custom f -> f.Name

    static member Render(p: Path) : string =
        match p with
        | Path.Origin c -> Path.RenderCentre c
        | Path.Unembedded inner -> "U·" + Path.Render inner
        | Path.Jet(target, order, around) ->
            let inner = Path.Render around
            let name =
                match target with
                | JetTarget.Gamma l -> "γ" + Notation.subscript l
                | JetTarget.Identity -> "id"
                | JetTarget.FinalNorm -> "LN"
                | JetTarget.Named n -> n
            match target, order with
            | JetTarget.Identity, 0 -> inner
            | _, 0 -> sprintf "%s(%s)" name inner
            | _ -> sprintf "J%s%s(%s)" (Notation.superscript order) name inner


/// Building expansion plans.
[<RequireQualifiedAccess>]
module Expansion =
    /// An expansion at `site` around `centres`, order 1, uniform weights, Taylor engine.
    let at (site: Site) (centres: Centre list) : Expansion =
        { Site = site; Centres = centres; Order = 1; Weights = Weights.Uniform; Engine = Engine.Taylor }

    let atLayer (layer: int) centres = at (Site.Layer layer) centres
    let atDecoder centres = at Site.Decoder centres
    let withOrder order (e: Expansion) = { e with Order = order }
    let withWeights weights (e: Expansion) = { e with Weights = weights }
    let withEngine engine (e: Expansion) = { e with Engine = engine }
    let withWeightTensor (w: Tensor) (e: Expansion) = { e with Weights = Weights.Tensor { Tensor = w } }

    /// The plan's structure as F# prints it (`%A`), for every front door.
    [<CompiledName("Print")>]
    let print (e: Expansion) = sprintf "%A" e
