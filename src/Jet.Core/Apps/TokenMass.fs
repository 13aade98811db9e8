namespace Jet.Core.Apps

open System
open TorchSharp
open Jet.Core
open Jet.Core.Models

/// A word of a word list as one model's tokenizer reads it: scored by its first token.
type ListedWord =
    {
        /// The 1-based line of the list.
        Line: int
        Word: string
        /// The tokens the word encodes to (one when the word is a token); the first is the one scored.
        Tokens: int[]
    }

    /// The token the word is scored by.
    member w.Scored = w.Tokens.[0]

/// The n-gram mass of a word list under one model.
type ModelMass =
    {
        /// The model's source ("toy", or the checkpoint directory).
        Model: string
        /// How many distinct tokens the list resolved to in this model's vocabulary.
        Tokens: int
        /// The mean over first tokens z₁ of Σ_{z₂ ∈ S} P(z₂ | z₁).
        Mass: float
        /// With a top-k asked for: the same mean counting only the z₂ ∈ S inside each row's k best next tokens.
        TopKMass: float option
        /// The words that span several tokens in this tokenizer, each scored by its first token.
        SplitWords: ListedWord[]
    }

/// N-gram mass of a word list: how much next-token probability a readout puts on a set of tokens (for example refusal
/// words), in the whole row or only within its top k, for one model or several side by side.
[<RequireQualifiedAccess>]
module TokenMass =

    /// The words of `lines` (one per line; empty lines skipped) as `tokenizer` reads them: a line that names one token
    /// (as `Vocabulary.tokenSet` reads it: its printed piece, or text that encodes to that token alone) is that token;
    /// any other line is encoded and scored by its first token; what the tokenizer adds in front of every text (a BOS
    /// token: the common prefix of unrelated probe texts) is left out. `source` names the lines in errors.
    [<CompiledName("Words")>]
    let words (tokenizer: ITokenizer) (vocab: int) (source: string) (lines: string seq) : ListedWord[] =
        let numbered =
            lines
            |> Seq.mapi (fun i line -> i + 1, (if isNull line then "" else line.TrimEnd('\r')))
            |> Seq.filter (fun (_, line) -> line <> "")
            |> Array.ofSeq
        if numbered.Length = 0 then
            raise (MissingArgumentException(sprintf "%s names no words; write one word per line." source))
        let added =
            let probes =
                [ "a"; "0"; "."; "Z" ]
                |> List.map (fun t ->
                    try
                        tokenizer.Encode t
                    with :? JetException ->
                        [||])
            let shortest = probes |> List.map Array.length |> List.min
            let common =
                Seq.initInfinite id
                |> Seq.takeWhile (fun i -> i < shortest && probes |> List.forall (fun p -> p.[i] = probes.Head.[i]))
                |> Seq.length
            probes.Head.[.. common - 1]
        let withoutAdded (ids: int[]) =
            if added.Length > 0 && ids.Length > added.Length && ids.[.. added.Length - 1] = added then
                ids.[added.Length ..]
            else
                ids
        numbered
        |> Array.map (fun (number, line) ->
            let single =
                try
                    Some(Vocabulary.tokenSet tokenizer vocab source [ line ])
                with :? UnknownTokenException ->
                    None
            match single with
            | Some ids -> { Line = number; Word = line; Tokens = ids }
            | None ->
                let encoded =
                    try
                        tokenizer.Encode line
                    with :? JetException as e ->
                        raise (
                            UnknownTokenException(
                                sprintf "Line %d of %s, %A, cannot be tokenized: %s" number source line e.Message
                            )
                        )
                match withoutAdded encoded |> Array.filter (fun id -> id >= 0 && id < vocab) with
                | [||] ->
                    raise (
                        UnknownTokenException(
                            sprintf "Line %d of %s, %A, encodes to no token of this vocabulary." number source line
                        )
                    )
                | ids ->
                    // A word with characters the vocabulary lacks encodes to unknown tokens: refuse it rather than
                    // score an <unk>.
                    let decoded =
                        try
                            tokenizer.Decode ids
                        with :? JetException ->
                            ""
                    if decoded.Trim() <> line.Trim() then
                        raise (
                            UnknownTokenException(
                                sprintf
                                    "Line %d of %s, %A, cannot be tokenized faithfully: its tokens decode to %A; use words this vocabulary can spell."
                                    number
                                    source
                                    line
                                    decoded
                            )
                        )
                    { Line = number; Word = line; Tokens = ids })

    /// Per batch of first tokens swept (`options.Rows`, or all), in order: Σ_{z₁ in the batch} Σ_{z₂ ∈ S ∩ top_k(z₁)}
    /// P(z₂ | z₁) (float64), the sums `inTopK` adds up with `Vocabulary.total`.
    [<CompiledName("InTopKSums")>]
    let inTopKSums (net: Net) (readout: Readout) (tokenSet: int[]) (k: int) (options: SweepOptions) : float[] =
        Readouts.check net readout
        let rows = Vocabulary.checkRows net.Vocab options.Rows
        Vocabulary.checkTokenSet net.Vocab tokenSet
        let columns = net.Vocab - (if options.DropDiagonal then 1 else 0)
        if k < 1 || k > columns then
            raise (IndexRangeException(sprintf "The top-k of the mass must be 1..%d; got %d." columns k))
        use _ = torch.no_grad ()
        use _ = torch.NewDisposeScope()
        let inSet = torch.zeros ([| int64 net.Vocab |], dtype = net.DType, device = net.Device)
        inSet.index_fill_ (0L, torch.tensor (tokenSet |> Array.map int64, device = net.Device), scalar 1.0)
        |> ignore
        let sums = ResizeArray<float>()
        Vocabulary.sweepRows rows options.BatchSize options.Progress options.Cancellation (fun start count ->
            let first = torch.arange (start, start + count, dtype = torch.int64, device = net.Device)
            let logits = Readouts.logits net readout first
            if options.DropDiagonal then
                Vocabulary.dropDiagonal first logits |> ignore
            // The k best by logit are the k best by probability; one logsumexp per row normalises them.
            let struct (best, ids) = logits.topk (k, dim = 1)
            let probabilities = (best - logits.logsumexp (1L, keepdim = true)).exp ()
            let inTop = probabilities * inSet.index_select(0L, ids.flatten ()).view_as ids
            sums.Add(inTop.sum().to_type(torch.float64).item<float> ()))
        sums.ToArray()

    /// The mean over first tokens z₁ of Σ_{z₂ ∈ S ∩ top_k(z₁)} P(z₂ | z₁): the mass of the set counted only inside each
    /// row's k best next tokens (probabilities; `DropDiagonal` renormalises each row over z₂ ≠ z₁ as for `mass`); over
    /// the first tokens of `options.Rows` when given.
    [<CompiledName("InTopK")>]
    let inTopK (net: Net) (readout: Readout) (tokenSet: int[]) (k: int) (options: SweepOptions) : float =
        let range = Vocabulary.checkRows net.Vocab options.Rows
        if range.Count = 0 then
            raise (InvalidPlanException "The first-token range is empty; a mass is a mean over at least one row.")
        Vocabulary.total (inTopKSums net readout tokenSet k options) / float range.Count

    let private shifted (progress: IProgress<int64> option) (offset: int64) =
        progress
        |> Option.map (fun p ->
            { new IProgress<int64> with
                member _.Report v = p.Report(offset + v)
            })

    /// The per-batch sums of a token set's mass over the first tokens of `options.Rows` (or all), and with `topK` those
    /// of its mass inside each row's top k: what `ofModels` adds up, and what a shard of the mass sweep writes.
    /// `options.Progress` counts first tokens over both sweeps.
    [<CompiledName("Sums")>]
    let sums
        (net: Net)
        (readout: Readout)
        (tokenSet: int[])
        (topK: int option)
        (options: SweepOptions)
        : float[] * float[] option =
        let rows = Vocabulary.checkRows net.Vocab options.Rows
        let mass = Bigrams.massSums net readout tokenSet options
        let inTop =
            topK
            |> Option.map (fun k ->
                inTopKSums
                    net
                    readout
                    tokenSet
                    k
                    { options with Progress = shifted options.Progress (int64 rows.Count) })
        mass, inTop

    /// The mass of the word list `lines` (see `words`; `source` names them in errors) under each model, each list read
    /// with that model's tokenizer, and with `topK` also the mass inside each row's top k: for example a base model
    /// beside its fine-tune. Every readout and list is checked before the first sweep; `options.Progress` counts first
    /// tokens across all sweeps, up to the sum of the models' vocabularies (twice with `topK`).
    [<CompiledName("OfModels")>]
    let ofModels
        (readout: Readout)
        (source: string)
        (lines: string seq)
        (topK: int option)
        (options: SweepOptions)
        (models: Model seq)
        : ModelMass[] =
        let lines = Array.ofSeq lines
        let models = Array.ofSeq models
        for m in models do
            Readouts.check m.Net readout
        let lists = models |> Array.map (fun m -> words m.Tokenizer m.Net.Vocab source lines)
        let passes = if topK.IsSome then 2L else 1L
        // Each model's sweeps' progress starts where the sweeps before them ended.
        let offsets = models |> Array.scan (fun start m -> start + passes * int64 m.Net.Vocab) 0L
        Array.init models.Length (fun i ->
            let m, list, offset = models.[i], lists.[i], offsets.[i]
            let set = list |> Array.map (fun w -> w.Scored) |> Array.distinct
            let count = float (Vocabulary.checkRows m.Net.Vocab options.Rows).Count
            let mass, inTop =
                sums m.Net readout set topK { options with Progress = shifted options.Progress offset }
            {
                Model = m.Source
                Tokens = set.Length
                Mass = Vocabulary.total mass / count
                TopKMass = inTop |> Option.map (fun s -> Vocabulary.total s / count)
                SplitWords = list |> Array.filter (fun w -> w.Tokens.Length > 1)
            })
