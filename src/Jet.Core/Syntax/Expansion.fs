// `rec`: the plan types print themselves through `Print`, the one printer of networks, paths and plans at the end of
// this file, and F# lets a type call a later module only within one recursive file.
namespace rec Jet.Core

open System
open System.Globalization
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
    override r.ToString() = Print.tensor r

/// The weights w_i of the centres.
[<RequireQualifiedAccess>]
type Weights =
    /// w_i = 1/N.
    | Uniform
    /// Fixed finite numbers, one per centre.
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

    /// The centre as path names write it, for example `γ₁(Enc)` (see `Print.centre`).
    override c.ToString() = Print.centre c

/// Algorithm 1 as data: at `Site`, around `Centres` with `Weights`, at `Order`, by `Engine`.
/// A plan is made only by `Expansion.Create` (which the `Expansion` module's functions call), and `Create` validates,
/// so no invalid plan exists: the order is an integer in 0..`Expansion.MaxOrder`, there is at least one centre and no
/// null one, fixed weights are finite and (when no centre is `Terms`) one per centre, and a weight tensor has 1..3
/// dimensions whose first matches the number of centres when that is known. What depends on the network (layers,
/// streams, how many terms a `Terms` centre stands for) is checked when a session evaluates the plan.
/// Plans compare structurally (sessions memoise them by value) and print as `Print.plan` writes them.
[<Sealed>]
type Expansion private (site: Site, centres: Centre list, order: int, weights: Weights, engine: Engine) =
    member _.Site = site
    member _.Centres = centres
    member _.Order = order
    member _.Weights = weights
    member _.Engine = engine

    /// The one constructor of plans: validates every part (see the type's summary), then builds the plan. Fails with
    /// InvalidOrderException, InvalidPlanException, MissingArgumentException (a null part) or ShapeMismatchException
    /// (a weight tensor without 1..3 dimensions).
    static member Create(site: Site, centres: Centre list, order: int, weights: Weights, engine: Engine) : Expansion =
        Expansion.validate site centres order weights engine
        Expansion(site, centres, order, weights, engine)

    override e.Equals(other) =
        match other with
        | :? Expansion as o ->
            site = o.Site && order = o.Order && engine = o.Engine && weights = o.Weights && centres = o.Centres
        | _ -> false

    override _.GetHashCode() = hash (site, centres, order, weights, engine)

    /// The plan in the notation of `Print.plan`, for example
    /// `expand layer 2 around {Enc, γ₁(Enc)} at order 1, uniform weights, Taylor`.
    override e.ToString() = Print.plan e

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

    /// A readable path name, for example `J¹γ₂(γ₁(Enc))` (see `Print.path`).
    override p.ToString() = Print.path p

/// Where a readout path starts, for a one-token input z (at position 0).
[<RequireQualifiedAccess>]
type PathSource =
    /// The token embedding E[z] (scaled where the model scales it), without positions: `Emb`.
    | Embedding
    /// The encoder output h₀(z): the embedding plus position 0 where the model has absolute positions: `Enc`.
    | Encoder

/// One step of a readout path: the update γ of one residual layer, never the skip connection.
[<RequireQualifiedAccess>]
type PathStep =
    /// γ_l, the whole update of residual layer l (1-based), pre-norm included: `γₗ`.
    | Layer of int
    /// The MLP branch of the parallel residual layer l (GPT-NeoX: γ_l = attn(LN₁ h) + mlp(LN₂ h)), its norm
    /// included: `γₗ[mlp]`.
    | MlpBranch of int
    /// Head h (1-based) of the attention in residual layer l alone, pre-norm (and any post-norm) included: its OV
    /// circuit on a one-token input, W_O,h·V_h(LN_l(x)) with no output bias, `OVₗ,ₕ`. Grouped-query heads read the
    /// value head they share; a parallel layer's head leaves the MLP branch out.
    | Head of layer: int * head: int

/// A vocabulary readout: a function of one token z read through the decoder as next-token logits, so that sweeping
/// every z gives a V×V table (row z, column the next token). Readouts compare structurally and print as
/// `Print.readout` writes them.
[<RequireQualifiedAccess>]
type Readout =
    /// The order-0 path U·LN_f(γ_{s_m}(…γ_{s_1}(source(z))…)) + b through residual layers s_1 < … < s_m (none: the
    /// source read straight through the decoder).
    | Path of source: PathSource * steps: PathStep list
    /// A decoder expansion evaluated on the one-token input: U·(Σ terms) + b, its remainder left out. For example
    /// the order-1 jet of LN_f around the embedding, evaluated at h_L(z).
    | Expansion of Expansion

    /// The readout in path notation, for example `U·LN(γ₆(γ₃(Emb)))` (see `Print.readout`).
    override r.ToString() = Print.readout r

/// Building and validating expansion plans. Every function here returns a valid plan or fails with a clear error.
[<RequireQualifiedAccess>]
module Expansion =
    /// The highest expansion order a plan may have. Jets of order k divide by j! for j ≤ k: 35! already exceeds
    /// float32's range and 171! float64's, and long before that the terms are rounding noise, so 64 leaves room for
    /// float64 experiments while rejecting orders that are typing mistakes (the cost grows as k² in Taylor mode and
    /// much faster with nested JVPs).
    [<Literal>]
    let MaxOrder = 64

    /// Fails with InvalidOrderException unless `order` is in 0..MaxOrder. `subject` starts the message, for
    /// example "The lens order" or "--order"; every front door checks orders through this one function.
    let checkOrder (subject: string) (order: int) =
        if order < 0 || order > MaxOrder then
            raise (InvalidOrderException(sprintf "%s must be an integer in 0..%d; got %d." subject MaxOrder order))

    /// How many centres `centres` stand for, when that is known without a network: None when one is `Terms`.
    let centreCount (centres: Centre list) : int option =
        if
            centres
            |> List.exists (function
                | Centre.Terms _ -> true
                | _ -> false)
        then
            None
        else
            Some centres.Length

    /// Fails unless the weights fit `centreCount` centres (None: not known yet, checked again at evaluation): fixed
    /// weights finite and one per centre; a weight tensor of shape [N], [N, seq] or [N, batch, seq].
    let checkWeights (centreCount: int option) (weights: Weights) =
        if isNull (box weights) then
            raise (
                MissingArgumentException "The weights are null; use Weights.Uniform, Weights.Fixed or Weights.Tensor."
            )
        match weights with
        | Weights.Uniform -> ()
        | Weights.Fixed ws ->
            if isNull (box ws) then
                raise (MissingArgumentException "The fixed weights are null; give one number per centre.")
            ws
            |> List.iteri (fun i w ->
                if Double.IsNaN w || Double.IsInfinity w then
                    raise (
                        InvalidPlanException(sprintf "Weight %d (0-based) is %g; weights must be finite numbers." i w)
                    ))
            match centreCount with
            | Some count when ws.Length <> count ->
                raise (
                    InvalidPlanException(
                        sprintf
                            "%d weights were given for %d centre%s; give one weight per centre."
                            ws.Length
                            count
                            (if count = 1 then "" else "s")
                    )
                )
            | _ -> ()
        | Weights.Tensor r ->
            if isNull (box r) || isNull (box r.Tensor) then
                raise (
                    MissingArgumentException
                        "The weight tensor is null; give a tensor of shape [N], [N, seq] or [N, batch, seq]."
                )
            let w = r.Tensor
            if w.dim () < 1L || w.dim () > 3L then
                raise (
                    ShapeMismatchException(
                        sprintf
                            "The weight tensor has shape %s; use [N], [N, seq] or [N, batch, seq] with N the number of centres."
                            (Tensors.shapeText w.shape)
                    )
                )
            match centreCount with
            | Some count when w.shape.[0] <> int64 count ->
                let centres =
                    if count = 1 then
                        "is 1 centre"
                    else
                        sprintf "are %d centres" count
                raise (
                    InvalidPlanException(
                        sprintf
                            "The weight tensor has shape %s but there %s; its first dimension must be %d."
                            (Tensors.shapeText w.shape)
                            centres
                            count
                    )
                )
            | _ -> ()

    /// Fails when centre `index` of a plan, or a part of it, is null (possible only from C# or Unchecked.defaultof).
    let rec private checkCentre (index: int) (nested: bool) (c: Centre) =
        let fail (what: string) =
            raise (
                MissingArgumentException(
                    sprintf "Centre %d (0-based) of the plan %s; give centres such as Centre.Stream 0." index what
                )
            )
        if isNull (box c) then
            fail (if nested then "contains a null centre" else "is null")
        match c with
        | Centre.Difference(a, b) ->
            checkCentre index true a
            checkCentre index true b
        | Centre.Term(e, _)
        | Centre.Terms e ->
            if isNull (box e) then
                fail "refers to a null plan"
        | Centre.Custom f ->
            if isNull (box f) || isNull (box f.Apply) then
                fail "is a custom centre without a function"
        | Centre.Stream _
        | Centre.Gamma _
        | Centre.Embedding
        | Centre.Encoder -> ()

    /// Every check `Expansion.Create` makes (see the type's summary).
    let internal validate (site: Site) (centres: Centre list) (order: int) (weights: Weights) (engine: Engine) =
        if isNull (box site) then
            raise (MissingArgumentException "The plan's site is null; use Site.Layer l or Site.Decoder.")
        if isNull (box engine) then
            raise (MissingArgumentException "The plan's engine is null; use Engine.Taylor or Engine.Jvp.")
        checkOrder "The expansion order" order
        if isNull (box centres) || List.isEmpty centres then
            raise (
                InvalidPlanException(
                    sprintf
                        "The expansion at %s has no centres; give at least one, for example Centre.Stream 0."
                        (Print.site site)
                )
            )
        centres |> List.iteri (fun i c -> checkCentre i false c)
        checkWeights (centreCount centres) weights

    /// An expansion at `site` around `centres`, order 1, uniform weights, Taylor engine.
    let at (site: Site) (centres: Centre list) : Expansion =
        Expansion.Create(site, centres, 1, Weights.Uniform, Engine.Taylor)

    /// An expansion at residual layer `layer` (1..L) around `centres`, order 1, uniform weights, Taylor engine.
    let atLayer (layer: int) centres = at (Site.Layer layer) centres

    /// An expansion of the decoder (the final norm) around `centres`, order 1, uniform weights, Taylor engine.
    let atDecoder centres = at Site.Decoder centres

    /// The same plan at order `order` (0..MaxOrder).
    let withOrder order (e: Expansion) = Expansion.Create(e.Site, e.Centres, order, e.Weights, e.Engine)

    /// The same plan with other weights (validated against the centres).
    let withWeights weights (e: Expansion) = Expansion.Create(e.Site, e.Centres, e.Order, weights, e.Engine)

    /// The same plan computed by another jet engine.
    let withEngine engine (e: Expansion) = Expansion.Create(e.Site, e.Centres, e.Order, e.Weights, engine)

    /// The same plan with weights from a tensor [N], [N, seq] or [N, batch, seq] (it may require grad).
    let withWeightTensor (w: Tensor) (e: Expansion) = withWeights (Weights.Tensor { Tensor = w }) e

/// The one printer of the syntax: networks, paths, centres and plans. Every ToString of the syntax delegates here
/// (a function `Fn` prints itself); the notation is documented in docs/dsl-reference.md.
[<RequireQualifiedAccess>]
module Print =
    /// A function of the stream, as it prints itself, for example `Linear(w, b) ▸ ReLU`.
    let fn (f: Fn) = string f

    /// A network's structure: a header, one line per residual layer, then LN_f and U.
    let net (spec: NetSpec) =
        let layers =
            spec.Layers
            |> List.mapi (fun i l -> sprintf "  γ%d [%s, block %d]: %s" (i + 1) l.Name l.Block (fn l.Gamma))
        let blocks = spec.BlockCount
        String.concat
            "\n"
            ([
                sprintf
                    "%s: vocab %d, width %d, %d residual layers in %d block%s"
                    spec.Name
                    spec.Vocab
                    spec.Width
                    spec.Depth
                    blocks
                    (if blocks = 1 then "" else "s")
             ]
             @ layers
             @ [
                 sprintf "  LN_f: %s" (fn spec.FinalNorm)
                 sprintf
                     "  U: %s%s%s"
                     spec.Unembedding.Weight
                     (if spec.Unembedding.Tied then " (tied)" else "")
                     (spec.Unembedding.SoftCap
                      |> Option.map (sprintf ", logits soft-capped at %g")
                      |> Option.defaultValue "")
             ])

    /// A weight tensor: its dtype, shape and device, and whether it requires grad.
    let tensor (r: TensorRef) = Tensors.describe r.Tensor + (if r.Tensor.requires_grad then " (requires grad)" else "")

    /// `layer 2` or `the decoder`.
    let site (s: Site) =
        match s with
        | Site.Layer l -> sprintf "layer %d" l
        | Site.Decoder -> "the decoder"

    /// A plan named in a few words, for path names and error messages: `the order-1 expansion at layer 2`.
    let describe (e: Expansion) = sprintf "the order-%d expansion at %s" e.Order (site e.Site)

    /// A centre as path names write it: `Enc`, `Emb`, `h₃`, `γ₄(h₃)`, `(h₆ − h₃)`, a custom centre's name.
    let rec centre (c: Centre) : string =
        match c with
        | Centre.Stream 0
        | Centre.Encoder -> "Enc"
        | Centre.Stream l -> "h" + Notation.subscript l
        | Centre.Gamma 1 -> "γ₁(Enc)"
        | Centre.Gamma l -> sprintf "γ%s(h%s)" (Notation.subscript l) (Notation.subscript (l - 1))
        | Centre.Embedding -> "Emb"
        | Centre.Difference(a, b) -> sprintf "(%s − %s)" (centre a) (centre b)
        | Centre.Term(e, i) -> sprintf "term %d of %s" i (describe e)
        | Centre.Terms e -> sprintf "terms of %s" (describe e)
        | Centre.Custom f -> f.Name

    /// A path name as the paper writes it, for example `U·J¹LN(J¹γ₂(γ₁(Enc)))`; order-0 jets print as plain
    /// application (`γ₂(Enc)`) and the order-0 skip connection disappears.
    let rec path (p: Path) : string =
        match p with
        | Path.Origin c -> centre c
        | Path.Unembedded inner -> "U·" + path inner
        | Path.Jet(target, order, around) ->
            let inner = path around
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

    /// A path step: `γ₃`, `γ₃[mlp]` for the MLP branch of a parallel layer, `OV₃,₅` for head 5 of layer 3.
    let step (s: PathStep) =
        match s with
        | PathStep.Layer l -> "γ" + Notation.subscript l
        | PathStep.MlpBranch l -> "γ" + Notation.subscript l + "[mlp]"
        | PathStep.Head(l, h) -> "OV" + Notation.subscript l + "," + Notation.subscript h

    /// `uniform weights`, `weights [0.25, 0.75]` (shortest round-trip decimals) or `weights from float64[2] on cpu`.
    let weights (w: Weights) =
        match w with
        | Weights.Uniform -> "uniform weights"
        | Weights.Fixed ws ->
            "weights ["
            + (ws |> List.map (fun x -> x.ToString("R", CultureInfo.InvariantCulture)) |> String.concat ", ")
            + "]"
        | Weights.Tensor r -> "weights from " + tensor r

    /// `Taylor` or `JVP`.
    let engine (e: Engine) =
        match e with
        | Engine.Taylor -> "Taylor"
        | Engine.Jvp -> "JVP"

    /// A plan in full, one line: `expand SITE around {CENTRES} at order K, WEIGHTS, ENGINE`. Centres print as in path
    /// names, except that `Term`/`Terms` name their inner plan in full, in brackets: `terms of [expand layer 2 …]`.
    let rec plan (e: Expansion) : string =
        let centres = e.Centres |> List.map centreInPlan |> String.concat ", "
        sprintf
            "expand %s around {%s} at order %d, %s, %s"
            (site e.Site)
            centres
            e.Order
            (weights e.Weights)
            (engine e.Engine)

    and private centreInPlan (c: Centre) : string =
        match c with
        | Centre.Term(e, i) -> sprintf "term %d of [%s]" i (plan e)
        | Centre.Terms e -> sprintf "terms of [%s]" (plan e)
        | Centre.Difference(a, b) -> sprintf "(%s − %s)" (centreInPlan a) (centreInPlan b)
        | Centre.Stream _
        | Centre.Gamma _
        | Centre.Embedding
        | Centre.Encoder
        | Centre.Custom _ -> centre c

    /// A readout in path notation: `U·LN(γ₆(γ₃(Emb)))` for an order-0 path (LN is the final norm LN_f, as in every
    /// path name), `U·[expand the decoder around {Emb} at order 1, …]` for an expansion evaluated on one token.
    let readout (r: Readout) =
        match r with
        | Readout.Path(source, steps) ->
            let start =
                match source with
                | PathSource.Embedding -> "Emb"
                | PathSource.Encoder -> "Enc"
            let inner = steps |> List.fold (fun inside s -> sprintf "%s(%s)" (step s) inside) start
            sprintf "U·LN(%s)" inner
        | Readout.Expansion e -> sprintf "U·[%s]" (plan e)
