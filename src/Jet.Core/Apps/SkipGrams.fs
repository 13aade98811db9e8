namespace Jet.Core.Apps

open System
open TorchSharp
open Jet.Core

/// The k best next tokens of one head's skip-gram table: the head, and ids and scores [vocab, k] (see `RowTopK`).
type HeadRowTopK =
    {
        Layer: int
        Head: int
        Best: RowTopK
    }

    interface IDisposable with
        member r.Dispose() = (r.Best :> IDisposable).Dispose()

/// The k best (z₁, z₃) pairs of one head's skip-gram table, best first.
type HeadPairs = { Layer: int; Head: int; Pairs: ScoredPair[] }

/// One head's global top-k candidates (`PairCandidates`, flat indices z₁·vocab + z₃).
type HeadCandidates = { Layer: int; Head: int; Candidates: PairCandidates }

/// How much one head copies and promotes a token set S: `Copying` is the mean over z ∈ S of P(z | z) (the head
/// predicts the token it attends to), `SetMass` the mean over z₁ ∈ S of Σ_{z₃∈S} P(z₃ | z₁) (it promotes the set).
type HeadScore = { Layer: int; Head: int; Copying: float; SetMass: float }

/// Where sweeps over first tokens get their batches: one function for skip-grams and trigrams, so a row range (a
/// shard) is honoured in one place.
module internal FirstTokens =

    /// Calls `body start ids` for consecutive batches of at most `batch` first tokens, `ids` [n] int64 on the network's
    /// device and `start` the place of the first of them in the list swept: the tokens `only` when given, else the
    /// whole vocabulary, restricted to the places `options.Rows` when given (a shard). Runs each batch in its own
    /// dispose scope, with the options' progress (first tokens done) and cancellation.
    let sweep (net: Net) (options: SweepOptions) (batch: int) (only: int64[] option) (body: int64 -> Tensor -> unit) =
        let total =
            match only with
            | Some ids -> ids.Length
            | None -> net.Vocab
        let rows = Vocabulary.checkRows total options.Rows
        Vocabulary.sweepRows rows batch options.Progress options.Cancellation (fun start count ->
            let ids =
                match only with
                | Some ids ->
                    torch.tensor (ids.[int start .. int (start + count) - 1], dtype = torch.int64, device = net.Device)
                | None -> torch.arange (start, start + count, dtype = torch.int64, device = net.Device)
            body start ids)

/// Jet skip-grams: for a token z₁ that a later query attends to fully, head h of attention layer l adds
/// U·LN_f(OV_h(LN_l(E[z₁]))) to the logits, a V×V table per head ("z₁ anywhere earlier promotes z₃"). The path is
/// `Emb → OVₗ,ₕ → U` (`PathStep.Head`); positions do not enter the OV circuit (rotary turns queries and keys only,
/// absolute positions are left out as for bigrams). All heads of a layer share the per-token work (embedding,
/// pre-norm, value projection) and stream through the bigram sweep kernel (`Sweeps`).
[<RequireQualifiedAccess>]
module SkipGrams =

    /// The skip-gram path of head `head` (1-based) of residual layer `layer`: U·LN(OVₗ,ₕ(Emb)).
    [<CompiledName("Readout")>]
    let readout (layer: int) (head: int) = Readout.Path(PathSource.Embedding, [ PathStep.Head(layer, head) ])

    /// The head's path step in notation: `OVₗ,ₕ`.
    [<CompiledName("Notation")>]
    let notation (layer: int) (head: int) = Print.step (PathStep.Head(layer, head))

    /// The layers of `net` that have attention heads (1-based residual layers).
    [<CompiledName("AttentionLayers")>]
    let attentionLayers (net: Net) : int[] =
        [|
            for l in 1 .. net.Depth do
                if AttentionHeads.headCount net l > 0 then
                    l
        |]

    /// The heads to sweep: `heads` (1-based), or every head of the layer when empty; checked against `net`.
    let private headsOf (net: Net) (layer: int) (heads: int[]) =
        if isNull heads then
            raise (MissingArgumentException "The heads are null; give an empty array for every head of the layer.")
        let heads =
            if heads.Length = 0 then
                [|
                    1 .. max
                        1
                        (if layer >= 1 && layer <= net.Depth then
                             AttentionHeads.headCount net layer
                         else
                             1)
                |]
            else
                Array.distinct heads
        // The path check names valid layers and heads in its messages.
        for h in heads do
            Readouts.check net (readout layer h)
        heads

    /// The normed rows of heads `heads` (valid, 1-based) of layer `layer` for first tokens `first` [B]: [heads, B, d],
    /// LN_f(OVₗ,ₕ(E[z₁])) for each head h, from one pass of the layer's attention branch.
    let private rows (net: Net) (layer: int) (heads: int[]) (first: Tensor) =
        let embedded = Trace.embed net (first.unsqueeze 1L)
        let outputs = Forward.apply net.Parameters (AttentionHeads.branch net layer heads) embedded
        (Decoder.normalize net outputs).view (int64 heads.Length, first.shape.[0], -1L)

    /// Sweeps first tokens (`only`, or the vocabulary) in batches: `body head batch` per head of each batch.
    let private sweep
        (net: Net)
        (layer: int)
        (heads: int[])
        (options: SweepOptions)
        (only: int64[] option)
        (body: int -> int64 -> SweepBatch -> unit)
        =
        use workspace = Sweeps.workspace net options.BatchSize
        FirstTokens.sweep net options options.BatchSize only (fun start first ->
            let x = rows net layer heads first
            heads
            |> Array.iteri (fun i _ ->
                use _ = torch.NewDisposeScope()
                body i start (Sweeps.batch workspace options.DropDiagonal x.[int64 i] first)))

    /// The normed rows of one head's path for first tokens `first` [B] (int64 ids): LN_f(OVₗ,ₕ(E[z₁])) [B, d], as
    /// `Readouts.normedRows` gives for `readout layer head`.
    [<CompiledName("NormedRows")>]
    let normedRows (net: Net) (layer: int) (head: int) (first: Tensor) : Tensor =
        let heads = headsOf net layer [| head |]
        use _ = torch.no_grad ()
        (rows net layer heads first).[0L]

    /// The k best next tokens z₃ of every z₁ (of `options.Rows` when given) for heads `heads` of layer `layer`
    /// (1-based; empty: all heads), one `HeadRowTopK` per head in the order given, each [rows, k]. The caller disposes
    /// them.
    [<CompiledName("RowTopK")>]
    let rowTopK (net: Net) (layer: int) (heads: int[]) (k: int) (options: SweepOptions) : HeadRowTopK[] =
        Bigrams.checkOptions net options
        Bigrams.checkK net options k (int64 net.Vocab - (if options.DropDiagonal then 1L else 0L))
        let heads = headsOf net layer heads
        use _ = torch.no_grad ()
        let range = Vocabulary.checkRows net.Vocab options.Rows
        let r = int64 range.Count
        let results =
            heads
            |> Array.map (fun h ->
                {
                    Layer = layer
                    Head = h
                    Best =
                        {
                            Ids = torch.empty ([| r; int64 k |], dtype = torch.int64, device = net.Device)
                            Scores = torch.empty ([| r; int64 k |], dtype = net.DType, device = net.Device)
                            First = range.Start
                        }
                })
        try
            sweep net layer heads options None (fun i start batch ->
                let values, ids = Sweeps.rowTopK (options.Space = ScoreSpace.Probability) k batch
                let at = start - int64 range.Start
                results.[i].Best.Scores.narrow(0L, at, batch.Count).copy_ values |> ignore
                results.[i].Best.Ids.narrow(0L, at, batch.Count).copy_ ids |> ignore)
            results
        with _ ->
            for r in results do
                (r :> IDisposable).Dispose()
            reraise ()

    /// `rowTopK` as pairs, grouped by first token ascending (best first within a group), one `HeadPairs` per head; the
    /// tensors are freed.
    [<CompiledName("RowTopKPairs")>]
    let rowTopKPairs (net: Net) (layer: int) (heads: int[]) (k: int) (options: SweepOptions) : HeadPairs[] =
        rowTopK net layer heads k options
        |> Array.map (fun best ->
            use best = best
            { Layer = best.Layer; Head = best.Head; Pairs = Bigrams.pairsOf best.Best })

    /// The global top-k candidates of each head (heads `heads` of layer `layer`, empty: all) over the first tokens
    /// swept (`options.Rows`, or all), in `PairCandidates.best` order, flat indices z₁·vocab + z₃: what shards of a
    /// skip-gram sweep hand to their merge. Memory is a few [batch, vocab] tensors per head.
    [<CompiledName("GlobalCandidates")>]
    let globalCandidates (net: Net) (layer: int) (heads: int[]) (k: int) (options: SweepOptions) : HeadCandidates[] =
        Bigrams.checkOptions net options
        let v = int64 net.Vocab
        Bigrams.checkK net options k (v * (if options.DropDiagonal then v - 1L else v))
        let heads = headsOf net layer heads
        use _ = torch.no_grad ()
        use scope = torch.NewDisposeScope()
        let best = heads |> Array.map (fun _ -> Bigrams.emptyBest net)
        let perRow = min k (net.Vocab - (if options.DropDiagonal then 1 else 0))
        let probability = options.Space = ScoreSpace.Probability
        try
            sweep net layer heads options None (fun i _ batch -> Bigrams.offer probability k perRow best.[i] batch)
            Array.map2
                (fun h b -> { Layer = layer; Head = h; Candidates = Bigrams.candidatesOf options.Space k b })
                heads
                best
        finally
            best |> Array.iter Bigrams.freeBest

    /// The k best (z₁, z₃) pairs of each head's whole table (of the first tokens of `options.Rows` when given), best
    /// first with ties by (z₁, z₃), for heads `heads` of layer `layer` (empty: all heads); memory is a few
    /// [batch, vocab] tensors per head, as for `Bigrams.globalTopK`.
    [<CompiledName("GlobalTopK")>]
    let globalTopK (net: Net) (layer: int) (heads: int[]) (k: int) (options: SweepOptions) : HeadPairs[] =
        globalCandidates net layer heads k options
        |> Array.map (fun c ->
            { Layer = c.Layer; Head = c.Head; Pairs = Bigrams.pairsOfCandidates net.Vocab c.Candidates })

    /// Ranks every head of layers `layers` (empty: every layer with attention) by how much it copies and promotes the
    /// token set `tokenSet` (null or empty: the whole vocabulary, where `SetMass` is 1): one `HeadScore` per head,
    /// layer by layer, head by head. Probabilities with the diagonal kept (copying reads it).
    [<CompiledName("Rank")>]
    let rank (net: Net) (layers: int[]) (tokenSet: int[]) (options: SweepOptions) : HeadScore[] =
        Bigrams.checkOptions net options
        if options.DropDiagonal then
            raise (
                InvalidPlanException
                    "The head ranking measures copying, P(z | z), so it keeps the diagonal; leave out drop-diagonal."
            )
        let layers =
            if isNull layers || layers.Length = 0 then
                attentionLayers net
            else
                layers
        if layers.Length = 0 then
            raise (InvalidPlanException(sprintf "This network (%s) has no attention layers to rank." net.Spec.Name))
        let only =
            if isNull tokenSet || tokenSet.Length = 0 then
                None
            else
                Vocabulary.checkTokenSet net.Vocab tokenSet
                Some(tokenSet |> Array.distinct |> Array.map int64)
        let count =
            match only with
            | Some ids -> float ids.Length
            | None -> float net.Vocab
        use _ = torch.no_grad ()
        [|
            for layer in layers do
                let heads = headsOf net layer [||]
                use _ = torch.NewDisposeScope()
                let columns = only |> Option.map (fun ids -> torch.tensor (ids, device = net.Device))
                let copying = torch.zeros ([| int64 heads.Length |], dtype = torch.float64, device = net.Device)
                let mass = torch.zeros ([| int64 heads.Length |], dtype = torch.float64, device = net.Device)
                sweep net layer heads { options with Space = ScoreSpace.Probability } only (fun i _ batch ->
                    let sums = Sweeps.exponentiate batch
                    let diagonal = batch.Columns.gather(0L, batch.First.unsqueeze 0L).squeeze(0L).div (sums)
                    copying.[int64 i].add_ (diagonal.sum().to_type torch.float64) |> ignore
                    match columns with
                    | Some c -> mass.[int64 i].add_ ((Sweeps.massSums c batch).sum ()) |> ignore
                    | None -> mass.[int64 i].add_ (scalar (float batch.Count)) |> ignore)
                let copying = copying.cpu().data<float>().ToArray()
                let mass = mass.cpu().data<float>().ToArray()
                for i in 0 .. heads.Length - 1 ->
                    { Layer = layer; Head = heads.[i]; Copying = copying.[i] / count; SetMass = mass.[i] / count }
        |]
