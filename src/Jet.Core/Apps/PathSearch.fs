namespace Jet.Core.Apps

open System
open TorchSharp
open Jet.Core

/// What a path search explains: one number computed from the model's logits at the chosen position.
[<RequireQualifiedAccess>]
type PathTarget =
    /// The logit of one token id.
    | Token of int
    /// logit(A) − logit(B) for token ids A and B.
    | Difference of int * int
    /// The log-probability of the model's own top token at the position.
    | TopLogProb
    /// A user function of the logits [vocab] (soft-capped where the model caps them) to a scalar tensor; it must be
    /// differentiable by TorchSharp's autograd.
    | Custom of NamedFn

/// Which residual layers a path may step through.
[<RequireQualifiedAccess>]
type PathLayers =
    /// Every residual layer (its whole update γ_l).
    | All
    /// Attention layers only.
    | Attention
    /// MLP layers only (the MLP branch of a parallel layer).
    | Mlp

/// Options of a path search; start from `PathSearchOptions.Default`.
type PathSearchOptions =
    {
        /// The position read (0-based; None: the last token of the prompt).
        Position: int option
        /// How many paths to return, ≥ 1.
        Top: int
        /// How many prefixes the beam keeps between layers, ≥ 1.
        Beam: int
        /// Which layers paths may use.
        Layers: PathLayers
        /// The most steps a path may take (None: no limit).
        MaxLength: int option
    }

    /// Last position, top 10, beam 64, every layer, any length.
    static member Default = { Position = None; Top = 10; Beam = 64; Layers = PathLayers.All; MaxLength = None }

/// One path p_S = γ_{s_m}(…γ_{s_1}(Enc)…) with its contribution to the target.
type PathContribution =
    {
        /// The steps s_1 < … < s_m (empty: the encoder output read straight through the decoder).
        Steps: PathStep list
        /// The path in path notation, for example `U·LN(γ₆(γ₃(Enc)))`.
        Notation: string
        /// The layer names along the path, for example "enc > attn2 > mlp3".
        Names: string
        /// w·p_S at the position: the path read through the frozen-scale decoder (see `PathSearch`).
        Contribution: float
        /// Contribution / Carried.
        Share: float
        /// The shares of this path and every path listed before it, added.
        CumulativeShare: float
    }

/// The result of a path search at one position.
type PathSearchResult =
    {
        /// The target in words, for example "logit of ' the' (id 262)".
        TargetName: string
        /// The position read (0-based).
        Position: int
        /// The target's value on the model's logits.
        Target: float
        /// The part of the target no path carries: the biases of LN_f and U read through the target's gradient, and,
        /// for a target that is not linear in the logits, f(z) − ∇f(z)·z.
        Constant: float
        /// Target − Constant = w·h_L: what the paths of all 2^L subsets and their interactions carry together.
        Carried: float
        /// The paths found, largest |contribution| first, at most `Top`.
        Paths: PathContribution list
        /// Carried − Σ contributions of the listed paths: every other path plus the interaction remainder.
        Remainder: float
        /// The names of the residual layers 1..L, for pictures.
        LayerNames: string list
        /// Prefixes evaluated: one γ application each (scored at the read position alone where γ is position-wise).
        Evaluated: int64
        /// How many paths the options allow (2^L with no restriction).
        TotalPaths: float
        /// Prefixes with extensions left that the beam dropped.
        Pruned: int64
        /// True when nothing was pruned: the paths are then exactly the brute-force top paths.
        Exact: bool
    }

/// Every path of a small network with its contribution, and the exact remainder: the bookkeeping
/// Σ Contribution + Interaction + Constant = Target holds to rounding.
type PathDecomposition =
    {
        Target: float
        Constant: float
        /// Every path the options allow with its contribution, in depth-first order from Enc.
        Paths: (PathStep list * float) list
        /// w·(h_L − Σ_S p_S) at the position: what the γ's nonlinearity adds beyond the paths.
        Interaction: float
    }

/// Path search (issue 13): the few input→output paths p_S = γ_{s_m}(…γ_{s_1}(Enc)…) that carry a prediction.
///
/// How a path's contribution is measured: every path is a stream tensor [seq, d] computed on the whole prompt (each γ
/// applied to the path's own stream at all positions, attention included), read at one position P through the linear
/// readout ℓ(x) = w·x, where w is the target's gradient in the pre-cap logits pulled back through U and through LN_f
/// with its normalising scale frozen at its value on h_L[P] (direct logit attribution). Then w·h_L[P] plus the
/// constant (biases, and the target's curvature term) is exactly the target, and contributions add:
/// target = Σ_S w·p_S + w·(h_L − Σ_S p_S) + constant, the middle term being the interaction remainder of the
/// nonlinear γ's. `decompose` checks this on networks small enough to enumerate.
///
/// The search sweeps the layers in order holding a beam of prefixes: at layer l every prefix in the beam (that may
/// still grow) is extended by γ_l as one batch; each extension is a complete path, scored at once. The beam keeps the
/// `Beam` prefixes of largest |contribution|; a prefix it drops loses its whole subtree. When nothing is dropped the
/// result is exact (the brute-force top paths); otherwise it is a heuristic, with `Pruned` saying how much was cut.
[<RequireQualifiedAccess>]
module PathSearch =

    /// The linear readout at one position: w [d] (float64) and the target pieces.
    type private Readout = { W: Tensor; Target: float; Constant: float; Name: string }

    let private scalarOf (t: Tensor) = t.to_type(torch.float64).cpu().item<float> ()

    let private checkToken (net: Net) (what: string) (id: int) =
        if id < 0 || id >= net.Vocab then
            raise (
                IndexRangeException(
                    sprintf "%s token id %d is outside the vocabulary; valid ids are 0..%d." what id (net.Vocab - 1)
                )
            )

    /// The target as a function of soft-capped logits [vocab] (a scalar tensor), and its name.
    let private targetFunction (net: Net) (target: PathTarget) (logits: Tensor) : Tensor * string =
        match target with
        | PathTarget.Token id ->
            checkToken net "The target" id
            logits.[int64 id], sprintf "logit of token %d" id
        | PathTarget.Difference(a, b) ->
            checkToken net "The first" a
            checkToken net "The second" b
            logits.[int64 a] - logits.[int64 b], sprintf "logit(%d) − logit(%d)" a b
        | PathTarget.TopLogProb ->
            let top = logits.detach().argmax().item<int64> ()
            (logits.log_softmax 0L).[top], sprintf "log P(top token %d)" top
        | PathTarget.Custom named ->
            if isNull (box named) || isNull (box named.Apply) then
                raise (MissingArgumentException "The custom target is null; give a function of the logits [vocab].")
            let value = named.Apply logits
            if isNull value || value.numel () <> 1L then
                raise (
                    ShapeMismatchException(
                        sprintf
                            "The custom target %s must return one number (a scalar tensor); it returned %s."
                            named.Name
                            (if isNull value then
                                 "null"
                             else
                                 sprintf "shape %A" value.shape)
                    )
                )
            value.reshape [||], named.Name

    /// Builds the frozen-scale readout at the final stream h [d] (float64 maths, network dtype for U).
    let private readoutAt (net: Net) (h: Tensor) (target: PathTarget) : Readout =
        let u = net.Parameters.[net.Spec.Unembedding.Weight]
        let normed = (Decoder.normalize net (h.reshape (1L, 1L, -1L))).reshape -1L
        let preCap = Decoder.addBias (Decoder.bias net) (Decoder.unembed net normed)
        let z = preCap.detach().clone().requires_grad_ true
        let value, name, g =
            use _ = torch.enable_grad ()
            let value, name = targetFunction net target (Decoder.capLogits (Decoder.softCap net) z)
            // A target that ignores the logits has no graph to differentiate: its gradient is zero.
            let g =
                if value.requires_grad then
                    (torch.autograd.grad ([| value |], [| z |], allow_unused = true)).[0]
                else
                    torch.zeros_like z
            value.detach (), name, g.detach ()
        let target = scalarOf value
        let g64 = g.to_type torch.float64
        // uᵀ = gᵀU: the target's gradient in LN_f space.
        let pulled = g.matmul(u.to_type g.dtype).to_type torch.float64
        let h64 = h.to_type torch.float64
        let parameter (name: string) = net.Parameters.[name].to_type torch.float64
        let w, normBias =
            match net.Spec.FinalNorm with
            | LayerNorm spec ->
                let centred = h64 - h64.mean ()
                let scale = torch.sqrt ((centred * centred).mean () + spec.Eps)
                let v =
                    match spec.Weight with
                    | Some wt -> pulled * parameter wt
                    | None -> pulled
                let beta =
                    match spec.Bias with
                    | Some b -> scalarOf (pulled.dot (parameter b))
                    | None -> 0.0
                (v - v.mean ()) / scale, beta
            | RmsNorm spec ->
                let scale = torch.sqrt ((h64 * h64).mean () + spec.Eps)
                let v =
                    match spec.Weight with
                    | Some wt when spec.PlusOne -> pulled * (parameter wt + 1.0)
                    | Some wt -> pulled * parameter wt
                    | None -> pulled
                v / scale, 0.0
            | Chain [] -> pulled, 0.0
            | other ->
                raise (
                    InvalidPlanException(
                        sprintf
                            "Path search reads paths through a LayerNorm or RMSNorm final norm with its scale frozen; this network's final norm is %O."
                            other
                    )
                )
        let unembedBias =
            match Decoder.bias net with
            | Some b -> scalarOf (g64.dot (b.to_type torch.float64))
            | None -> 0.0
        // target = w·h + uᵀβ + gᵀb + (f(z) − gᵀz): the frozen scale makes LN_f exact at h itself.
        let curvature = target - scalarOf (g64.dot (preCap.to_type torch.float64))
        { W = w; Target = target; Constant = normBias + unembedBias + curvature; Name = name }

    /// The steps paths may take, in layer order, with the function each applies.
    let private allowedSteps (net: Net) (layers: PathLayers) : (PathStep * Fn) list =
        let steps =
            net.Spec.Layers
            |> List.indexed
            |> List.choose (fun (i, layer) ->
                let l = i + 1
                match layers with
                | PathLayers.All -> Some(PathStep.Layer l, layer.Gamma)
                | PathLayers.Attention when layer.Kind = LayerKind.Attention -> Some(PathStep.Layer l, layer.Gamma)
                | PathLayers.Attention -> None
                | PathLayers.Mlp ->
                    match layer.Kind, NetParts.mlpOfLayer layer with
                    | LayerKind.Parallel, Some mlp -> Some(PathStep.MlpBranch l, mlp)
                    | _, Some mlp -> Some(PathStep.Layer l, mlp)
                    | _, None -> None)
        if steps.IsEmpty then
            let kinds = net.Spec.Layers |> List.map (fun l -> sprintf "%s (%A)" l.Name l.Kind) |> String.concat ", "
            raise (
                InvalidPlanException(
                    sprintf
                        "This network has no %s layer a path could step through (its layers: %s); search all layers instead."
                        (match layers with
                         | PathLayers.Mlp -> "MLP"
                         | _ -> "attention")
                        kinds
                )
            )
        steps

    let private checkOptions (options: PathSearchOptions) =
        if isNull (box options) then
            raise (MissingArgumentException "The path search options are null; start from PathSearchOptions.Default.")
        if options.Top < 1 then
            raise (IndexRangeException(sprintf "The number of paths to return must be ≥ 1; got %d." options.Top))
        if options.Beam < 1 then
            raise (IndexRangeException(sprintf "The beam width must be ≥ 1; got %d." options.Beam))
        match options.MaxLength with
        | Some n when n < 0 -> raise (IndexRangeException(sprintf "The maximum path length must be ≥ 0; got %d." n))
        | _ -> ()

    /// The prompt [1, seq] or [seq] up to the read position (attention is causal, so later tokens cannot matter),
    /// and that position.
    let private promptUpTo (tokens: Tensor) (position: int option) =
        if isNull tokens then
            raise (MissingArgumentException "The prompt's tokens are null; give token ids [1, seq].")
        let tokens =
            match tokens.dim () with
            | 1L -> tokens.unsqueeze 0L
            | 2L when tokens.shape.[0] = 1L -> tokens.alias ()
            | _ ->
                raise (
                    ShapeMismatchException(
                        sprintf "Path search reads one prompt, token ids [1, seq] or [seq]; got shape %A." tokens.shape
                    )
                )
        let length = int tokens.shape.[1]
        let p = defaultArg position (length - 1)
        if p < 0 || p >= length then
            raise (
                IndexRangeException(
                    sprintf "The position must be 0..%d (the prompt has %d tokens); got %d." (length - 1) length p
                )
            )
        tokens.narrow (1L, 0L, int64 (p + 1)), p

    /// Σ_{k ≤ maxLength} C(n, k): the number of paths through n allowed steps.
    let private countPaths (n: int) (maxLength: int option) =
        let limit = min n (defaultArg maxLength n)
        let mutable total, binomial = 0.0, 1.0
        for k in 0..limit do
            total <- total + binomial
            binomial <- binomial * float (n - k) / float (k + 1)
        total

    let private notation (steps: PathStep list) = Print.readout (Readout.Path(PathSource.Encoder, steps))

    /// "enc > attn2 > mlp3": the words `Readouts.describe` puts after the notation.
    let private names (net: Net) (steps: PathStep list) =
        let described = Readouts.describe net (Readout.Path(PathSource.Encoder, steps))
        let at = described.IndexOf " ("
        described.Substring(at + 2).TrimEnd(')')

    /// The trace of the prompt up to the position and the readout there.
    let private prepare (net: Net) (tokens: Tensor) (target: PathTarget) (position: int option) =
        if isNull (box net) then
            raise (MissingArgumentException "The network is null.")
        if isNull (box target) then
            raise (MissingArgumentException "The target is null; use PathTarget.Token, Difference or TopLogProb.")
        let prompt, p = promptUpTo tokens position
        let trace = Trace.run net prompt
        let readout = readoutAt net (trace.Stream net.Depth).[0, int64 p] target
        trace, readout, p

    /// Contributions w·x[P] of a batch of streams [b, seq, d], as floats.
    let private contributions (w: Tensor) (position: int) (values: Tensor) : float[] =
        values.select(1L, int64 position).to_type(torch.float64).matmul(w).cpu().data<float>().ToArray()

    /// Every path the layer restriction and length allow, enumerated depth first, with its contribution, the
    /// interaction remainder and the constant, for networks small enough to enumerate (at most 2^20 paths). Checks the
    /// search and proves the bookkeeping; tokens [1, seq]. Shapes as `search`.
    [<CompiledName("Decompose")>]
    let decompose
        (net: Net)
        (tokens: Tensor)
        (target: PathTarget)
        (layers: PathLayers)
        (position: int option)
        : PathDecomposition =
        Native.ensure ()
        use _ = torch.NewDisposeScope()
        use _ = torch.no_grad ()
        let trace, readout, p = prepare net tokens target position
        use _ = trace
        let steps = allowedSteps net layers |> Array.ofList
        if steps.Length > 20 then
            raise (
                MemoryLimitException(
                    sprintf
                        "Enumerating all 2^%d paths is out of reach; enumerate networks of at most 20 steps, or use PathSearch.search."
                        steps.Length
                )
            )
        let found = ResizeArray()
        let total = torch.zeros_like ((trace.Stream 0).[0, int64 p])
        let rec visit (value: Tensor) (taken: PathStep list) (next: int) =
            use _ = torch.NewDisposeScope()
            total.add_ value.[0, int64 p] |> ignore
            found.Add(List.rev taken, (contributions readout.W p value).[0])
            for j in next .. steps.Length - 1 do
                let step, f = steps.[j]
                visit (Forward.apply net.Parameters f value) (step :: taken) (j + 1)
        visit (trace.Stream 0) [] 0
        let rest = ((trace.Stream net.Depth).[0, int64 p] - total).unsqueeze(0L).unsqueeze 0L
        {
            Target = readout.Target
            Constant = readout.Constant
            Paths = List.ofSeq found
            Interaction = (contributions readout.W 0 rest).[0]
        }

    /// Searches the top paths for `target` on a prompt `tokens` [1, seq] (or [seq]) of `net`, as `PathSearch` (the
    /// module summary) describes: a layer-by-layer beam over prefixes, exact when nothing is pruned.
    [<CompiledName("Search")>]
    let search (net: Net) (tokens: Tensor) (target: PathTarget) (options: PathSearchOptions) : PathSearchResult =
        Native.ensure ()
        checkOptions options
        use _ = torch.NewDisposeScope()
        use _ = torch.no_grad ()
        let trace, readout, p = prepare net tokens target options.Position
        use _ = trace
        let steps = allowedSteps net options.Layers
        let maxLength = defaultArg options.MaxLength Int32.MaxValue
        // The beam: prefix values [B, seq, d] beside their steps (reversed) and contributions.
        let mutable beam = (trace.Stream 0).alias ()
        // The read position inside `beam`: p, or 0 once the beam holds that position alone.
        let mutable at = p
        let mutable meta = [| [], (contributions readout.W at beam).[0] |]
        let found = ResizeArray(meta)
        let mutable evaluated, pruned = 0L, 0L
        let mixes = steps |> List.map (snd >> NetParts.mixesPositions) |> Array.ofList
        let replace (next: Tensor) =
            next.MoveToOuterDisposeScope() |> ignore
            beam.Dispose()
            beam <- next
        steps
        |> List.iteri (fun i (step, f) ->
            let remaining = steps.Length - i
            use scope = torch.NewDisposeScope()
            // Once no layer left mixes positions, every prefix is only ever read at the position: keep it alone.
            if beam.shape.[1] > 1L && not (Array.exists id mixes.[i..]) then
                replace (beam.narrow(1L, int64 at, 1L).contiguous ())
                at <- 0
            let growing = meta |> Array.indexed |> Array.filter (fun (_, (s, _)) -> List.length s < maxLength)
            if growing.Length > 0 then
                let rowsOf (from: Tensor) (rows: int64[]) =
                    from.index_select (0L, torch.tensor (rows, dtype = torch.int64, device = from.device))
                let input = rowsOf beam (growing |> Array.map (fst >> int64))
                // A position-wise layer is scored at the read position alone; whole streams are computed below for the
                // children the beam keeps.
                let whole = mixes.[i] || beam.shape.[1] = 1L
                let scored =
                    if whole then
                        Forward.apply net.Parameters f input
                    else
                        Forward.apply net.Parameters f (input.narrow (1L, int64 at, 1L))
                let scores = contributions readout.W (if whole then at else 0) scored
                evaluated <- evaluated + int64 growing.Length
                let childMeta = Array.map2 (fun (_, (s, _)) c -> step :: s, c) growing scores
                found.AddRange childMeta
                // Candidates for the next layers: prefixes that can still grow (another step left and room for it).
                let candidates =
                    Array.append
                        (meta |> Array.mapi (fun j m -> 0, j, m))
                        (childMeta |> Array.mapi (fun j m -> 1, j, m))
                    |> Array.filter (fun (_, _, (s, _)) -> remaining > 1 && List.length s < maxLength)
                let kept =
                    if candidates.Length <= options.Beam then
                        candidates
                    else
                        pruned <- pruned + int64 (candidates.Length - options.Beam)
                        candidates |> Array.sortByDescending (fun (_, _, (_, c)) -> abs c) |> Array.take options.Beam
                let keptOf (which: int) = kept |> Array.filter (fun (w, _, _) -> w = which)
                let rows (which: int) = keptOf which |> Array.map (fun (_, j, _) -> int64 j)
                let next =
                    [
                        if (rows 0).Length > 0 then
                            rowsOf beam (rows 0)
                        if (rows 1).Length > 0 then
                            if whole then
                                rowsOf scored (rows 1)
                            else
                                Forward.apply net.Parameters f (rowsOf input (rows 1))
                    ]
                if next.IsEmpty then
                    meta <- [||]
                else
                    replace (torch.cat (Array.ofList next, 0L))
                    meta <- Array.append (keptOf 0) (keptOf 1) |> Array.map (fun (_, _, m) -> m))
        beam.Dispose()
        let carried = readout.Target - readout.Constant
        let ranked =
            found |> Seq.sortByDescending (fun (_, c) -> abs c) |> Seq.truncate options.Top |> List.ofSeq
        let share c = if carried = 0.0 then nan else c / carried
        let paths =
            ranked
            |> List.scan (fun (_, cumulative) (s, c) -> Some(s, c), cumulative + c) (None, 0.0)
            |> List.choose (fun (entry, cumulative) ->
                entry
                |> Option.map (fun (s, c) ->
                    let steps = List.rev s
                    {
                        Steps = steps
                        Notation = notation steps
                        Names = names net steps
                        Contribution = c
                        Share = share c
                        CumulativeShare = share cumulative
                    }))
        {
            TargetName = readout.Name
            Position = p
            Target = readout.Target
            Constant = readout.Constant
            Carried = carried
            Paths = paths
            Remainder = carried - (paths |> List.sumBy (fun q -> q.Contribution))
            LayerNames = net.Spec.Layers |> List.map (fun l -> l.Name)
            Evaluated = evaluated
            TotalPaths = countPaths steps.Length options.MaxLength
            Pruned = pruned
            Exact = pruned = 0L
        }
