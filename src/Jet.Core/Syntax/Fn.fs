namespace Jet.Core

open Jet.Core.Primitives

/// A function with a name, compared by its name only, so syntax that holds it keeps structural equality.
[<CustomEquality; NoComparison>]
type NamedFn =
    {
        Name: string
        Apply: Tensor -> Tensor
    }

    override f.Equals(other) =
        match other with
        | :? NamedFn as g -> f.Name = g.Name
        | _ -> false

    override f.GetHashCode() = hash f.Name
    override f.ToString() = f.Name

/// A function of the residual stream, as data. Parameters are referenced by name (see `Net`).
/// Shapes: every Fn maps [batch, seq, d_in] to [batch, seq, d_out]; only `Attention` mixes positions.
/// The primitive cases hold a spec whose rule (printing, parameters, forward, Taylor) sits in its own file under
/// Primitives/; `Node` is the one place that maps a case to its rule.
type Fn =
    | Linear of Linear
    | Act of Activation
    | LayerNorm of LayerNormSpec
    | RmsNorm of RmsNormSpec
    | Attention of Attention
    | GatedMlp of GatedMlpSpec
    /// Σ of branches applied to the same input.
    | Sum of Fn list
    /// Applies the functions left to right: Chain [f; g] is g ∘ f. Chain [] is the identity.
    | Chain of Fn list
    /// c · f(x).
    | Scale of float * Fn
    /// A user function with no rule of its own (evaluated as given; jets of it use nested JVPs).
    | Custom of NamedFn

    /// This node as a primitive's rule or one of the combinators: what every interpreter matches on.
    /// Adding a primitive adds one line here (the compiler flags the missing case).
    member f.Node: FnNode =
        match f with
        | Linear l -> FnNode.Primitive(Affine.rule l)
        | Act a -> FnNode.Primitive(Activations.rule a)
        | LayerNorm spec -> FnNode.Primitive(Norms.layerNormRule spec)
        | RmsNorm spec -> FnNode.Primitive(Norms.rmsNormRule spec)
        | Attention a -> FnNode.Primitive(SelfAttention.rule a)
        | GatedMlp g -> FnNode.Primitive(GatedMlp.rule g)
        | Sum branches -> FnNode.Sum branches
        | Chain steps -> FnNode.Chain steps
        | Scale(c, inner) -> FnNode.Scale(c, inner)
        | Custom named -> FnNode.Custom named

    override f.ToString() =
        match f.Node with
        | FnNode.Primitive rule -> rule.Print()
        | FnNode.Sum branches -> "(" + (branches |> List.map string |> String.concat " + ") + ")"
        | FnNode.Chain [] -> "id"
        | FnNode.Chain steps -> steps |> List.map string |> String.concat " ▸ "
        | FnNode.Scale(c, (Chain(_ :: _ :: _) as inner)) -> sprintf "%g·(%O)" c inner
        | FnNode.Scale(c, inner) -> sprintf "%g·%O" c inner
        | FnNode.Custom named -> named.Name

/// An `Fn` node seen by an interpreter: a primitive (its rule) or a combinator of other functions.
and [<RequireQualifiedAccess; NoEquality; NoComparison>] FnNode =
    | Primitive of PrimitiveRule
    | Sum of Fn list
    | Chain of Fn list
    | Scale of float * Fn
    | Custom of NamedFn

/// Helpers to write Fn values briefly, and structural queries over them.
[<RequireQualifiedAccess>]
module Fn =
    let identity = Chain []
    let linear weight = Linear { Weight = weight; Bias = None }
    let affine weight bias = Linear { Weight = weight; Bias = Some bias }
    let custom name (apply: Tensor -> Tensor) = Custom { Name = name; Apply = apply }

    /// The node of `f`: a primitive's rule or a combinator (see `Fn.Node`).
    let node (f: Fn) : FnNode = f.Node

    /// Every parameter name the function refers to, in first-use order.
    let rec parameterNames (f: Fn) : string list =
        match node f with
        | FnNode.Primitive rule -> rule.Parameters
        | FnNode.Sum fs
        | FnNode.Chain fs -> fs |> List.collect parameterNames
        | FnNode.Scale(_, inner) -> parameterNames inner
        | FnNode.Custom _ -> []
        |> List.distinct

    /// The first result of `chooser` over `f` and the functions inside it, depth first, outer before inner.
    /// Example: `Fn.tryPick (function Attention a -> Some a | _ -> None) gamma` finds γ's first attention spec.
    let rec tryPick (chooser: Fn -> 'T option) (f: Fn) : 'T option =
        match chooser f with
        | Some found -> Some found
        | None ->
            match node f with
            | FnNode.Primitive _
            | FnNode.Custom _ -> None
            | FnNode.Sum fs
            | FnNode.Chain fs -> fs |> List.tryPick (tryPick chooser)
            | FnNode.Scale(_, inner) -> tryPick chooser inner
