namespace Jet.Core.Apps

open System
open TorchSharp
open Jet.Core

/// One step a readout path of a network may take, as `jet info` lists it and the path grammar reads it.
type PathStepInfo =
    {
        Step: PathStep
        /// The name the path grammar reads, for example "attn2", "mlp3", "block1".
        Name: string
        /// The step in path notation, for example "γ₃" or "γ₃[mlp]".
        Notation: string
        /// What the step computes, for example "attention of block 2".
        Description: string
    }

/// Vocabulary readouts (`Readout`): built from a network's parts, checked against it, read from text, and evaluated
/// on one-token inputs. Every vocabulary sweep (bigram tables, n-gram mass, model comparisons) reads rows through
/// `Readouts.normedRows`, so any path of any network is a readout.
[<RequireQualifiedAccess>]
module Readouts =

    /// U·LN_f(Emb): the token embedding read straight through the decoder.
    [<CompiledName("Embedding")>]
    let embedding = Readout.Path(PathSource.Embedding, [])

    /// U·LN_f(Enc): the encoder output at position 0 (the embedding plus the first absolute position).
    [<CompiledName("Encoder")>]
    let encoder = Readout.Path(PathSource.Encoder, [])

    /// The order-0 path from `source` through `steps`, in order.
    [<CompiledName("OfSteps")>]
    let ofSteps (source: PathSource) (steps: PathStep seq) = Readout.Path(source, List.ofSeq steps)

    /// The order-0 path from `source` through residual layers `layers` (1-based, increasing).
    [<CompiledName("OfLayers")>]
    let ofLayers (source: PathSource) (layers: int seq) = ofSteps source (layers |> Seq.map PathStep.Layer)

    /// A decoder expansion evaluated on one-token inputs (checked against a network when swept).
    [<CompiledName("OfExpansion")>]
    let ofExpansion (plan: Expansion) = Readout.Expansion plan

    let private layerOfStep (step: PathStep) =
        match step with
        | PathStep.Layer l
        | PathStep.MlpBranch l
        | PathStep.Head(l, _) -> l

    let private describeKind (layer: ResidualLayer) =
        match layer.Kind with
        | LayerKind.Attention -> sprintf "attention of block %d" layer.Block
        | LayerKind.Mlp -> sprintf "MLP of block %d" layer.Block
        | LayerKind.Parallel -> sprintf "block %d, attention and MLP in parallel" layer.Block
        | LayerKind.Block -> sprintf "block %d" layer.Block
        | LayerKind.Other kind -> sprintf "%s of block %d" kind layer.Block

    /// The steps a path through `net` may take, in order: every residual layer (by its name, for example "attn2"),
    /// and the MLP branch of each parallel layer (as "mlpB").
    [<CompiledName("StepsOf")>]
    let stepsOf (net: Net) : PathStepInfo list =
        net.Spec.Layers
        |> List.mapi (fun i layer ->
            let l = i + 1
            [
                {
                    Step = PathStep.Layer l
                    Name = layer.Name
                    Notation = Print.step (PathStep.Layer l)
                    Description = describeKind layer
                }
                if layer.Kind = LayerKind.Parallel && (NetParts.mlpOfLayer layer).IsSome then
                    {
                        Step = PathStep.MlpBranch l
                        Name = sprintf "mlp%d" layer.Block
                        Notation = Print.step (PathStep.MlpBranch l)
                        Description = sprintf "the MLP branch of block %d" layer.Block
                    }
            ])
        |> List.concat

    /// The valid step names of a network in order, shortened in the middle for deep networks
    /// ("attn1, mlp1, attn2, …, attn12, mlp12"), for error messages.
    let private validSteps (net: Net) =
        let names = stepsOf net |> List.map (fun s -> s.Name)
        if names.Length <= 8 then
            String.Join(", ", names)
        else
            let shown = List.truncate 3 names @ [ "…" ] @ List.skip (names.Length - 2) names
            sprintf "%s (or γ1..γ%d by residual layer)" (String.Join(", ", shown)) net.Depth

    let private fail (message: string) = raise (InvalidPlanException message)

    /// The function of the stream one step applies, [batch, seq, d] → [batch, seq, d].
    let private stepFunction (net: Net) (step: PathStep) : Fn =
        match step with
        | PathStep.Layer l -> net.Spec.Layers.[l - 1].Gamma
        | PathStep.MlpBranch l -> (NetParts.mlpOfLayer net.Spec.Layers.[l - 1]).Value
        | PathStep.Head(l, h) -> AttentionHeads.branch net l [| h |]

    /// The names of the layers that have attention ("attn1, attn2, …"), for error messages.
    let private attentionLayers (net: Net) =
        let names =
            net.Spec.Layers
            |> List.filter (AttentionHeads.branchOf >> Option.isSome)
            |> List.map (fun l -> l.Name)
        if names.IsEmpty then "none" else String.Join(", ", names)

    /// Applies one step of a path to a stream [batch, seq, d]: a head step returns [batch, seq, d] as well (one
    /// head), the other steps their layer's update or branch.
    [<CompiledName("ApplyStep")>]
    let applyStep (net: Net) (step: PathStep) (h: Tensor) : Tensor =
        Forward.apply net.Parameters (stepFunction net step) h

    let private checkStep (net: Net) (step: PathStep) =
        if isNull (box step) then
            raise (
                MissingArgumentException
                    "A path step is null; use PathStep.Layer l, PathStep.MlpBranch l or PathStep.Head(l, h)."
            )
        let l = layerOfStep step
        if l < 1 || l > net.Depth then
            raise (
                IndexRangeException(
                    sprintf
                        "Residual layer %d does not exist; this network has layers 1..%d. Valid steps: %s."
                        l
                        net.Depth
                        (validSteps net)
                )
            )
        match step with
        | PathStep.MlpBranch l ->
            let layer = net.Spec.Layers.[l - 1]
            if layer.Kind <> LayerKind.Parallel || (NetParts.mlpOfLayer layer).IsNone then
                fail (
                    sprintf
                        "%s is not a parallel layer with an MLP branch (it is %s); use PathStep.Layer %d for its whole update."
                        (Print.step (PathStep.Layer l))
                        (describeKind layer)
                        l
                )
        | PathStep.Head(l, h) ->
            let layer = net.Spec.Layers.[l - 1]
            match AttentionHeads.branchOf layer with
            | None ->
                fail (
                    sprintf
                        "%s (%s) has no attention, so it has no heads; layers with attention: %s."
                        (Print.step (PathStep.Layer l))
                        (describeKind layer)
                        (attentionLayers net)
                )
            | Some(_, a) when h < 1 || h > a.Heads ->
                raise (
                    IndexRangeException(
                        sprintf "Head %d does not exist in %s; its heads are 1..%d." h layer.Name a.Heads
                    )
                )
            | Some _ -> ()
        | PathStep.Layer _ -> ()

    /// Fails unless `readout` is valid for `net`: every step a residual layer of the network, the layers strictly in
    /// order (each at most once); an expansion must be of the decoder, and it is evaluated once on token 0, so that
    /// what only a network can check (streams, layers and terms its centres name) fails before any sweep starts.
    [<CompiledName("Check")>]
    let check (net: Net) (readout: Readout) =
        if isNull (box readout) then
            raise (MissingArgumentException "The readout is null; build one with Readouts.Embedding or Readouts.Parse.")
        match readout with
        | Readout.Path(_, steps) ->
            if isNull (box steps) then
                raise (MissingArgumentException "The path's steps are null; give an empty list for none.")
            steps |> List.iter (checkStep net)
            steps
            |> List.pairwise
            |> List.iter (fun (a, b) ->
                if layerOfStep b <= layerOfStep a then
                    let name s =
                        let layer = net.Spec.Layers.[layerOfStep s - 1]
                        sprintf "%s (%s)" (Print.step s) layer.Name
                    fail (
                        sprintf
                            "A path goes forward through the network, each layer at most once: %s cannot follow %s. Valid steps, in order: %s."
                            (name b)
                            (name a)
                            (validSteps net)
                    ))
        | Readout.Expansion plan ->
            if isNull (box plan) then
                raise (MissingArgumentException "The readout's expansion plan is null.")
            if plan.Site <> Site.Decoder then
                fail (
                    sprintf
                        "A readout evaluates a decoder expansion on one-token inputs, but this plan expands %s; use Site.Decoder."
                        (Print.site plan.Site)
                )
            Native.ensure ()
            use _ = torch.NewDisposeScope()
            use session = Expand.session net (torch.zeros ([| 1L; 1L |], dtype = torch.int64, device = net.Device))
            session.Expand plan |> ignore

    /// The decoder inputs, already through LN_f, of first tokens `first` [B] (validated int64 ids on the network's
    /// device): [B, d]. A path applies its steps to the embedded tokens as one-token sequences [B, 1, d] (attention
    /// on one token attends to itself); an expansion sums its decoder terms (LN_f-space) on the same inputs.
    /// U·x + b of these rows gives the readout's logits.
    [<CompiledName("NormedRows")>]
    let normedRows (net: Net) (readout: Readout) (first: Tensor) : Tensor =
        let tokens = first.unsqueeze 1L
        match readout with
        | Readout.Path(source, steps) ->
            let embedded = Trace.embed net tokens
            let start =
                match source with
                | PathSource.Embedding -> embedded
                | PathSource.Encoder -> Trace.encode net embedded
            let h = steps |> List.fold (fun h step -> applyStep net step h) start
            (Decoder.normalize net h).squeeze 1L
        | Readout.Expansion plan ->
            use session = Expand.session net tokens
            let terms = (session.Expand plan).Terms
            // A copy: the session frees its terms when disposed.
            let total = terms.Head.Value.clone ()
            for t in terms.Tail do
                total.add_ t.Value |> ignore
            total.squeeze 1L

    /// The logits of the readout for first tokens `first` [B]: [B, vocab], contiguous, bias included.
    [<CompiledName("Logits")>]
    let logits (net: Net) (readout: Readout) (first: Tensor) : Tensor =
        Decoder.logits net (normedRows net readout first)

    let rec private parseStep (net: Net) (word: string) : PathStep =
        match word.LastIndexOf ".h" with
        | at when at > 0 ->
            match Int32.TryParse(word.Substring(at + 2)) with
            | true, head ->
                match parseStep net (word.Substring(0, at)) with
                | PathStep.Layer l -> PathStep.Head(l, head)
                | PathStep.MlpBranch _
                | PathStep.Head _ ->
                    fail (
                        sprintf
                            "%A names no head: .hH follows a layer with attention (attn1.h2, or block1.h2 in a parallel block)."
                            word
                    )
            | _ ->
                fail (sprintf "%A names no head; write LAYER.hH with a head number from 1, for example attn1.h2." word)
        | _ -> parseLayerStep net word

    and private parseLayerStep (net: Net) (word: string) : PathStep =
        let layers = net.Spec.Layers
        let byName = stepsOf net |> List.tryFind (fun s -> s.Name.ToLowerInvariant() = word)
        let number (prefix: string) =
            if word.StartsWith prefix then
                match Int32.TryParse(word.Substring prefix.Length) with
                | true, n -> Some n
                | _ -> None
            else
                None
        let layerNumber =
            [ "γ"; "g"; "layer" ] |> List.tryPick (fun p -> if word.StartsWith p then number p else None)
        match byName, layerNumber with
        | Some s, _ -> s.Step
        | None, Some l -> PathStep.Layer l
        | None, None ->
            // Block-and-part names the network's own layer names do not cover (the toy's blocks are MLPs).
            let inBlock (b: int) =
                layers
                |> List.indexed
                |> List.filter (fun (_, l) -> l.Block = b)
                |> List.map (fun (i, l) -> i + 1, l)
            let described (b: int) = inBlock b |> List.map (fun (_, l) -> l.Name) |> String.concat ", "
            match number "mlp", number "attn" with
            | Some b, _ when not (inBlock b).IsEmpty ->
                match inBlock b |> List.tryFind (fun (_, l) -> (NetParts.mlpOfLayer l).IsSome) with
                | Some(l, _) -> PathStep.Layer l
                | None ->
                    fail (
                        sprintf
                            "There is no step %A: block %d has no MLP (its layers: %s). Valid steps: %s."
                            word
                            b
                            (described b)
                            (validSteps net)
                    )
            | _, Some b when not (inBlock b).IsEmpty ->
                let isParallel = inBlock b |> List.exists (fun (_, l) -> l.Kind = LayerKind.Parallel)
                fail (
                    sprintf
                        "There is no step %A: block %d has no attention layer of its own (its layers: %s)%s; write %s for its whole update. Valid steps: %s."
                        word
                        b
                        (described b)
                        (if isParallel then
                             ", as a parallel block is one residual layer"
                         else
                             "")
                        (described b)
                        (validSteps net)
                )
            | _ ->
                fail (
                    sprintf
                        "Unknown path step %A; valid steps: %s. A path reads emb>attn1>mlp2 (see docs/lenses-and-ngrams.md)."
                        word
                        (validSteps net)
                )

    /// Reads a path in the CLI's grammar: `SOURCE>STEP>…>STEP`, for example `emb>attn2>mlp3`. SOURCE is `emb`
    /// (the token embedding; also `embed`, `embedding`) or `enc` (plus position 0; also `encoder`), and may be left
    /// out (a path that starts with a step starts at `emb`); a STEP is a residual layer by name as `jet info` lists it
    /// (`attn2`, `mlp3`, `block1`; `mlpB` of a parallel block is its MLP branch) or by number (`γ4`, `g4`, `layer4`),
    /// and `.hH` after a layer with attention picks its head H alone (1-based; `attn2.h5`, `block3.h1`, `γ4.h2`);
    /// a final `U` may close the path. `,` or `→` may stand for `>`. The older forms `embed` and `mlp:B` (and
    /// `attn:B`) still read as before. Case and spaces do not matter. The result is checked against `net`.
    [<CompiledName("Parse")>]
    let parse (net: Net) (text: string) : Readout =
        let text =
            if isNull text then
                ""
            else
                text.Trim().ToLowerInvariant().Replace(" ", "")
        if text = "" then
            fail (
                sprintf
                    "The path is empty; write for example emb>%s. Valid steps: %s."
                    (stepsOf net).Head.Name
                    (validSteps net)
            )
        let text =
            match text.Split(':') with
            | [| "mlp"; b |] -> "emb>mlp" + b
            | [| "attn"; b |] -> "emb>attn" + b
            | _ -> text
        let parts = text.Replace("→", ">").Replace(",", ">").Split('>')
        if parts |> Array.exists ((=) "") then
            fail (
                sprintf
                    "The path %A has an empty step; separate steps with a single >, for example emb>attn1>mlp1."
                    text
            )
        let parts =
            if parts.Length > 1 && parts.[parts.Length - 1] = "u" then
                parts.[.. parts.Length - 2]
            else
                parts
        let source, steps =
            match parts.[0] with
            | "emb"
            | "embed"
            | "embedding" -> PathSource.Embedding, parts.[1..]
            | "enc"
            | "encoder" -> PathSource.Encoder, parts.[1..]
            | _ -> PathSource.Embedding, parts
        let readout = Readout.Path(source, steps |> Array.map (parseStep net) |> List.ofArray)
        check net readout
        readout

    /// Emb → the MLP of block `block` (1-based) → U, what `mlp:B` reads: the block's MLP layer, or the MLP branch of a
    /// parallel block (checked against `net`).
    [<CompiledName("MlpPath")>]
    let mlpPath (net: Net) (block: int) = parse net (sprintf "mlp:%d" block)

    /// A readout in words for tables and captions: the notation, and for paths the layer names, for example
    /// "U·LN(γ₄(γ₃(Emb))) (emb > attn2 > mlp2)".
    [<CompiledName("Describe")>]
    let describe (net: Net) (readout: Readout) =
        match readout with
        | Readout.Path(source, steps) ->
            let start =
                match source with
                | PathSource.Embedding -> "emb"
                | PathSource.Encoder -> "enc"
            let names =
                steps
                |> List.map (fun s ->
                    match s with
                    | PathStep.Layer l when l >= 1 && l <= net.Depth -> net.Spec.Layers.[l - 1].Name
                    | PathStep.MlpBranch l when l >= 1 && l <= net.Depth ->
                        sprintf "mlp%d" net.Spec.Layers.[l - 1].Block
                    | PathStep.Head(l, h) when l >= 1 && l <= net.Depth ->
                        sprintf "%s.h%d" net.Spec.Layers.[l - 1].Name h
                    | s -> Print.step s)
            sprintf "%s (%s)" (Print.readout readout) (String.concat " > " (start :: names))
        | Readout.Expansion _ -> Print.readout readout
