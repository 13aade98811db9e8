namespace Jet.Core

open System
open System.Collections.Generic
open TorchSharp

/// One term of an expansion: where it comes from and its value ([batch, seq, d], or [batch, seq, vocab] once unembedded).
type Term =
    {
        Path: Path
        Value: Tensor
    }

    override t.ToString() = sprintf "%O: %s" t.Path (Tensors.describe t.Value)

/// The result of Algorithm 1: Σ Terms + Remainder = Target exactly (to rounding).
/// At a residual layer l the target is h_l; at the decoder it is LN_f(h_L).
type ExpansionResult = { Plan: Expansion; Terms: Term list; Remainder: Tensor; Target: Tensor }

/// A decoder expansion in logit space: Σ Paths + Remainder + Bias = the pre-cap logits z, with U applied to every
/// term; Logits is z, or c·tanh(z / c) when the network soft-caps its logits (`Decoder.capLogits SoftCap`).
type LogitPaths =
    {
        Paths: Term list
        Remainder: Tensor
        /// The unembedding bias, when the network has one (a constant, not a path).
        Bias: Tensor option
        /// The final logit soft-cap, when the network has one (Gemma 2).
        SoftCap: float option
        Logits: Tensor
    }

/// Evaluates expansion plans against one forward pass of a network on one token batch. Plans are memoised,
/// so composed plans reuse earlier results; nothing recomputes the forward pass. Results belong to the
/// session: dispose the session to free them.
[<Sealed>]
type Session(net: Net, trace: Trace) =
    let results = Dictionary<Expansion, ExpansionResult>(HashIdentity.Structural)
    let owned = ResizeArray<Tensor>()

    let own (t: Tensor) =
        let t = t.DetachFromDisposeScope()
        owned.Add t
        t

    /// One multiplier per centre. The plan checked its weights when it was made; only the number of centres a
    /// `Terms` centre stands for is known here, so the same check runs again with the count.
    let weightMultipliers (plan: Expansion) (count: int) : (Tensor -> Tensor)[] =
        Expansion.checkWeights (Some count) plan.Weights
        match plan.Weights with
        | Weights.Uniform -> Array.init count (fun _ -> fun t -> t / float count)
        | Weights.Fixed ws -> ws |> List.map (fun w -> fun (t: Tensor) -> t * w) |> Array.ofList
        | Weights.Tensor r ->
            let w = r.Tensor
            Array.init count (fun i ->
                fun (t: Tensor) ->
                    let wi = w.[int64 i]
                    let wi = if wi.dim () = 0L then wi else wi.unsqueeze -1
                    t * wi.to_type (t.dtype))

    member _.Net = net
    member _.Trace = trace

    /// Evaluates a plan (and, once, every plan it is composed from).
    member this.Expand(plan: Expansion) : ExpansionResult =
        match results.TryGetValue plan with
        | true, r -> r
        | _ ->
            let r = this.Evaluate plan
            results.[plan] <- r
            r

    /// The centres of a plan as (path, value) pairs, Terms expanded.
    member private this.Centres(centre: Centre) : (Path * Tensor) list =
        let single (c: Centre) =
            match this.Centres c with
            | [ one ] -> snd one
            | many ->
                raise (
                    InvalidPlanException(
                        sprintf
                            "A difference needs single centres, but %s stands for %d centres."
                            (Print.centre c)
                            many.Length
                    )
                )
        let streamTermsOf (e: Expansion) =
            if e.Site = Site.Decoder then
                raise (
                    InvalidPlanException(
                        "Terms of a decoder expansion live after the final norm, not in the residual stream, so they cannot be centres; compose residual-layer expansions and expand the decoder last."
                    )
                )
            (this.Expand e).Terms
        match centre with
        | Centre.Stream l -> [ Path.Origin centre, trace.Stream l ]
        | Centre.Gamma l -> [ Path.Origin centre, trace.Gamma l ]
        | Centre.Embedding -> [ Path.Origin centre, trace.Embedding ]
        | Centre.Encoder -> [ Path.Origin centre, trace.Stream 0 ]
        | Centre.Difference(a, b) -> [ Path.Origin centre, own (single a - single b) ]
        | Centre.Term(e, i) ->
            let terms = streamTermsOf e
            if i < 0 || i >= terms.Length then
                raise (
                    IndexRangeException(
                        sprintf "Term %d does not exist; %s has terms 0..%d." i (Print.describe e) (terms.Length - 1)
                    )
                )
            let t = terms.[i]
            [ t.Path, t.Value ]
        | Centre.Terms e -> streamTermsOf e |> List.map (fun t -> t.Path, t.Value)
        | Centre.Custom f ->
            let value = f.Apply trace.Tokens
            let expected = Array.append trace.Tokens.shape [| int64 net.Width |]
            if isNull (box value) || value.shape <> expected then
                raise (
                    ShapeMismatchException(
                        sprintf
                            "The centre function '%s' returned %s; it must return [batch, seq, d] = %s."
                            f.Name
                            (if isNull (box value) then
                                 "null"
                             else
                                 Tensors.shapeText value.shape)
                            (Tensors.shapeText expected)
                    )
                )
            [ Path.Origin centre, own value ]

    member private this.Evaluate(plan: Expansion) : ExpansionResult =
        let target, point, fn, jetTarget =
            match plan.Site with
            | Site.Layer l when l = net.Depth + 1 ->
                raise (
                    IndexRangeException(
                        sprintf
                            "Residual layer %d does not exist; valid layers are 1..%d. Expand the final norm with the decoder site (Site.Decoder)."
                            l
                            net.Depth
                    )
                )
            | Site.Layer l ->
                Net.checkLayer l net
                trace.Stream l, trace.Stream(l - 1), net.Spec.Layers.[l - 1].Gamma, JetTarget.Gamma l
            | Site.Decoder -> trace.Normed, trace.Stream net.Depth, net.Spec.FinalNorm, JetTarget.FinalNorm
        let centres = plan.Centres |> List.collect this.Centres
        let count = centres.Length
        let tokens = trace.Tokens
        MemoryEstimate.requireExpansion
            net
            tokens.shape.[0]
            tokens.shape.[1]
            plan.Order
            count
            (plan.Site = Site.Decoder)
        let weigh = weightMultipliers plan count
        use scope = torch.NewDisposeScope()
        // All centres go through one jet call, stacked along the batch dimension.
        let stacked = torch.stack (centres |> List.map snd, 0L)
        let batch = stacked.shape.[1]
        let flat = stacked.flatten (0L, 1L)
        let values =
            if plan.Order = 0 then
                Forward.apply net.Parameters fn flat
            else
                let points = point.unsqueeze(0).expand(stacked.shape).flatten (0L, 1L)
                Engines.jet plan.Engine net.Parameters fn plan.Order flat points
        let values = values.unflatten (0L, [| int64 count; batch |])
        let jetTerms =
            centres
            |> List.mapi (fun i (path, _) ->
                { Path = Path.Jet(jetTarget, plan.Order, path); Value = own (weigh.[i] values.[int64 i]) })
        let skipTerms =
            match plan.Site with
            | Site.Decoder -> []
            | Site.Layer _ ->
                // J^k id(c)(y) is c at order 0 and exactly y at every higher order.
                centres
                |> List.mapi (fun i (path, c) ->
                    let jetOfIdentity = if plan.Order = 0 then c else point
                    { Path = Path.Jet(JetTarget.Identity, plan.Order, path); Value = own (weigh.[i] jetOfIdentity) })
        let terms = jetTerms @ skipTerms
        let remainder = own (target - (terms |> List.map (fun t -> t.Value) |> List.reduce (+)))
        { Plan = plan; Terms = terms; Remainder = remainder; Target = target }

    /// U applied to every term and the remainder of a decoder expansion.
    member this.Unembed(result: ExpansionResult) : LogitPaths =
        if result.Plan.Site <> Site.Decoder then
            raise (
                InvalidPlanException(
                    sprintf
                        "Only decoder expansions can be unembedded; this is %s. Expand the decoder around its terms first."
                        (Print.describe result.Plan)
                )
            )
        use scope = torch.NewDisposeScope()
        let values = (result.Terms |> List.map (fun t -> t.Value)) @ [ result.Remainder ]
        // One product for all terms and the remainder: with a few rows per term, a product per term is bound by
        // reading U (V × d) from memory once per term; stacked, U is read once.
        let logits =
            if values |> List.forall (fun v -> v.shape = result.Remainder.shape) then
                use all = Decoder.unembed net (torch.stack (values, 0L))
                [ for i in 0 .. values.Length - 1 -> own (all.select (0L, int64 i)) ]
            else
                [ for v in values -> own (Decoder.unembed net v) ]
        {
            Paths =
                List.zip result.Terms (List.take result.Terms.Length logits)
                |> List.map (fun (t, value) -> { Path = Path.Unembedded t.Path; Value = value })
            Remainder = List.last logits
            Bias = Decoder.bias net
            SoftCap = Decoder.softCap net
            Logits = own (Trace.logits trace)
        }

    /// The model's logits [batch, seq, vocab] for this token batch.
    member _.Logits() =
        use scope = torch.NewDisposeScope()
        own (Trace.logits trace)

    interface IDisposable with
        member _.Dispose() =
            for t in owned do
                t.Dispose()
            owned.Clear()
            results.Clear()
            (trace :> IDisposable).Dispose()

/// The result of a generic expansion: Σ Terms + Remainder = Target = f(variate(z)).
type GenericResult = { Terms: Term list; Remainder: Tensor; Target: Tensor }

/// A generic expansion of any function f around centres that are functions of the input (nested-JVP engine).
type GenericExpansion = { Function: NamedFn; Centres: NamedFn list; Variate: NamedFn; Order: int; Weights: Weights }

/// Running expansions.
[<RequireQualifiedAccess>]
module Expand =
    /// Opens a session: one forward pass of `net` on `tokens` ([batch, seq] or [seq]).
    [<CompiledName("Session")>]
    let session (net: Net) (tokens: Tensor) = new Session(net, Trace.run net tokens)

    /// Evaluates one plan in a fresh session and returns the session with the result (dispose the session).
    let run (net: Net) (tokens: Tensor) (plan: Expansion) =
        let s = session net tokens
        s, s.Expand plan

    /// f(variate(z)) = Σ_i w_i J^k f(c_i(z))(variate(z)) + remainder, for any functions of the input z.
    let generic (plan: GenericExpansion) (input: Tensor) : GenericResult =
        // The same checks, and messages, as plans of networks.
        Expansion.checkOrder "The expansion order" plan.Order
        if isNull (box plan.Centres) || List.isEmpty plan.Centres then
            raise (InvalidPlanException "A generic expansion needs at least one centre function.")
        let count = plan.Centres.Length
        Expansion.checkWeights (Some count) plan.Weights
        let weightOf i : Tensor -> Tensor =
            match plan.Weights with
            | Weights.Uniform -> fun t -> t / float count
            | Weights.Fixed ws -> fun t -> t * ws.[i]
            | Weights.Tensor r -> fun t -> t * r.Tensor.[int64 i]
        // The variate is computed once and shared by every term.
        let y = plan.Variate.Apply input
        let options = JetOptions.OfOrder plan.Order
        let terms =
            plan.Centres
            |> List.mapi (fun i c ->
                let centre = c.Apply input
                let value = Jet.value options plan.Function.Apply centre (if plan.Order = 0 then None else Some y)
                {
                    Path = Path.Jet(JetTarget.Named plan.Function.Name, plan.Order, Path.Origin(Centre.Custom c))
                    Value = weightOf i value
                })
        let target = plan.Function.Apply y
        let remainder = target - (terms |> List.map (fun t -> t.Value) |> List.reduce (+))
        { Terms = terms; Remainder = remainder; Target = target }
