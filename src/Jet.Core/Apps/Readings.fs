namespace Jet.Core.Apps

open System
open TorchSharp
open Jet.Core
open Jet.Core.Models

/// One input token at one position of a token batch.
type InputToken =
    {
        /// The token id.
        Id: int
        /// Its readable piece as tables print it (`LogitMetrics.piece`: "␣" for the toy's space, "<id N>" for an id
        /// the tokenizer cannot print).
        Piece: string
        /// The text it adds to its decoded row, so the texts of a row concatenate to the decoded row (SentencePiece
        /// drops a token's leading space when it is decoded alone, so this is not the token decoded on its own).
        Text: string
    }

/// A token id with its readable piece.
type TokenPiece = { Id: int; Piece: string }

/// How close approximate logits are to the model's at one position, or the mean over positions: the values of a
/// `LogitAgreement` (cosine of the raw logits, KL(model ‖ approximation) in nats, top-1 agreement 1 or 0 — a fraction
/// in a mean — and top-k overlap |top-k ∩ top-k| / k).
type AgreementValues = { Cosine: float; Kl: float; Top1: float; TopKOverlap: float }

/// The best tokens of some logits at one position of a token batch.
type PositionTokens =
    {
        /// The batch row.
        Row: int
        /// The position in the sequence.
        Position: int
        /// The input token there.
        Input: InputToken
        /// The best tokens with their logits, best first.
        Top: RankedToken[]
    }

/// A lens at one position: its best tokens and its agreement with the model there.
type PositionLens =
    {
        Row: int
        Position: int
        Input: InputToken
        /// The lens's best tokens with their logits, best first.
        Top: RankedToken[]
        /// The lens against the model's logits at this position.
        Agreement: AgreementValues
    }

/// One centre of a joint lens at one position: its weight there and the best tokens of its weighted logits.
type PositionWeight =
    {
        Row: int
        Position: int
        Input: InputToken
        /// The centre's softmax weight at this position (the weights of all centres sum to 1).
        Weight: float
        /// The best tokens of w_i U J^k LN_f(c_i)(h_L) with their logits, best first.
        Top: RankedToken[]
    }

/// The iterative lens read at one stream h_l, in plain values.
type StreamReading =
    {
        /// The stream index l.
        Stream: int
        /// The term's path, for example "U·J¹LN(h₁)".
        Path: string
        /// The agreement with the model, averaged over every position of every row.
        Mean: AgreementValues
        /// Top tokens and agreement at every position, row-major ([batch · seq] entries).
        Positions: PositionLens[]
    }

/// The iterative jet lens of a token batch in plain values (nothing to dispose).
type LensReadout =
    {
        Order: int
        /// The k of the agreements' top-k overlap.
        TopK: int
        /// The input tokens, Inputs.[row].[position] ([batch][seq]).
        Inputs: InputToken[][]
        /// One entry per stream read, in the requested order.
        Streams: StreamReading[]
        /// The model's own best tokens at every position, row-major.
        Predictions: PositionTokens[]
    }

/// One centre of a joint lens in plain values.
type CentreReading =
    {
        /// The centre, for example "Enc" (h₀) or "(h₂ − h₁)".
        Centre: string
        /// Its path, for example "U·LN((h₂ − h₁))".
        Path: string
        /// The centre's weight averaged over every position of every row.
        MeanWeight: float
        /// Weight and best tokens at every position, row-major.
        Positions: PositionWeight[]
    }

/// The fitted joint lens of a token batch in plain values (nothing to dispose).
type JointLensReadout =
    {
        Order: int
        /// The stream indices l₁ < l₂ < … that define the centres.
        Streams: int[]
        /// The mean squared logit error: entry 0 with uniform weights, entry i after i Adam steps.
        Losses: float[]
        /// The input tokens, Inputs.[row].[position].
        Inputs: InputToken[][]
        /// The centres h_{l₁}, h_{l₂} − h_{l₁}, …
        Centres: CentreReading[]
        /// The combined lens Σ_i w_i U J^k LN_f(c_i)(h_L) + bias at every position, row-major.
        Positions: PositionLens[]
        /// The combined lens's agreement with the model, averaged over every position.
        Mean: AgreementValues
        /// The model's own best tokens at every position, row-major.
        Predictions: PositionTokens[]
    }

/// One path of a decoder carving (batch row 0) in plain values; see `PathSummary`.
type CarvingPath =
    {
        Name: string
        /// ‖path‖ / ‖logits‖.
        NormRatio: float
        /// Mean over positions of the cosine between the path's logits and the model's.
        MeanCosine: float
        /// The path's top-1 token at every position.
        Top1: TokenPiece[]
        /// At how many positions the path's top-1 token is the model's.
        Top1Agreement: int
        /// The path's logit for the model's top-1 token at every position.
        Contribution: float[]
    }

/// A decoder carving of batch row 0 in plain values.
type CarvingReadout =
    {
        /// The input tokens of row 0.
        Inputs: InputToken[]
        Paths: CarvingPath[]
        Remainder: CarvingPath
        /// The model's top-1 token at every position.
        ModelTop1: TokenPiece[]
        /// The model's logit for its own top-1 token at every position.
        ModelTop1Logit: float[]
        /// ‖remainder‖ in logit space.
        RemainderNorm: float
        /// max |Σ paths + remainder (+ bias) − logits|.
        ReconstructionError: float
    }

/// Turns the tensors of lens, joint-lens, carving and n-gram results into plain .NET records (arrays, numbers,
/// strings) that the C# facade and the `jet` command only translate. Every function frees the temporary tensors it
/// reads through.
[<RequireQualifiedAccess>]
module Readings =

    /// The token ids of a [batch, seq] batch, ids.[row].[position].
    [<CompiledName("Ids")>]
    let ids (tokens: Tensor) : int[][] =
        use _ = torch.NewDisposeScope()
        Array.init (int tokens.shape.[0]) (fun b ->
            tokens.[int64 b].contiguous().cpu().data<int64>().ToArray() |> Array.map int)

    /// The text each token of one row adds to the decoded row (the texts concatenate to the decoded row). A row the
    /// tokenizer cannot decode (ids beyond its vocabulary) falls back to the tokens' pieces.
    [<CompiledName("TokenTexts")>]
    let tokenTexts (tokenizer: ITokenizer) (ids: int[]) : string[] =
        try
            let prefixes =
                Array.init (ids.Length + 1) (fun n -> if n = 0 then "" else tokenizer.Decode(Array.sub ids 0 n))
            Array.init ids.Length (fun i ->
                let before, after = prefixes.[i], prefixes.[i + 1]
                if after.StartsWith(before, StringComparison.Ordinal) then
                    after.Substring before.Length
                else
                    tokenizer.Decode [| ids.[i] |])
        with _ ->
            ids |> Array.map (LogitMetrics.piece tokenizer)

    /// The input tokens of a [batch, seq] batch: id, piece and text at every position, inputs.[row].[position].
    [<CompiledName("Inputs")>]
    let inputs (tokenizer: ITokenizer) (tokens: Tensor) : InputToken[][] =
        ids tokens
        |> Array.map (fun row ->
            Array.map2
                (fun id text -> { Id = id; Piece = LogitMetrics.piece tokenizer id; Text = text })
                row
                (tokenTexts tokenizer row))

    /// The n best tokens of logits [batch, seq, vocab] at every position, top.[row].[position].[rank].
    [<CompiledName("Top")>]
    let top (tokenizer: ITokenizer) (n: int) (logits: Tensor) : RankedToken[][][] =
        use _ = torch.NewDisposeScope()
        Array.init (int logits.shape.[0]) (fun b -> LogitMetrics.top tokenizer n logits.[int64 b])

    /// The values of a `LogitAgreement` ([batch, seq] tensors), agreement.[row].[position].
    [<CompiledName("Agreements")>]
    let agreements (agreement: LogitAgreement) : AgreementValues[][] =
        Array.init (int agreement.Cosine.shape.[0]) (fun b ->
            let cosine, kl = LogitMetrics.row agreement.Cosine b, LogitMetrics.row agreement.Kl b
            let top1, overlap = LogitMetrics.row agreement.Top1 b, LogitMetrics.row agreement.TopKOverlap b
            Array.init cosine.Length (fun p ->
                { Cosine = cosine.[p]; Kl = kl.[p]; Top1 = top1.[p]; TopKOverlap = overlap.[p] }))

    /// The mean of each metric over some positions (NaN for none).
    [<CompiledName("Mean")>]
    let mean (values: AgreementValues seq) : AgreementValues =
        let values = Array.ofSeq values
        let average (pick: AgreementValues -> float) =
            if values.Length = 0 then
                nan
            else
                Array.averageBy pick values
        {
            Cosine = average (fun a -> a.Cosine)
            Kl = average (fun a -> a.Kl)
            Top1 = average (fun a -> a.Top1)
            TopKOverlap = average (fun a -> a.TopKOverlap)
        }

    /// One record per (row, position) of the inputs, row-major.
    let private perPosition (inputs: InputToken[][]) (at: int -> int -> InputToken -> 'T) : 'T[] =
        inputs |> Array.mapi (fun b row -> row |> Array.mapi (fun p input -> at b p input)) |> Array.concat

    /// The n best tokens of logits [batch, seq, vocab] at every position of the inputs, row-major.
    [<CompiledName("Predictions")>]
    let predictions (tokenizer: ITokenizer) (inputs: InputToken[][]) (logits: Tensor) (n: int) : PositionTokens[] =
        let best = top tokenizer n logits
        perPosition inputs (fun b p input -> { Row = b; Position = p; Input = input; Top = best.[b].[p] })

    /// Approximate logits [batch, seq, vocab] at every position: their n best tokens and their agreement with the model.
    let private lensPositions
        (tokenizer: ITokenizer)
        (inputs: InputToken[][])
        (logits: Tensor)
        (agreement: LogitAgreement)
        (n: int)
        =
        let best = top tokenizer n logits
        let metrics = agreements agreement
        perPosition inputs (fun b p input ->
            { Row = b; Position = p; Input = input; Top = best.[b].[p]; Agreement = metrics.[b].[p] })

    /// An iterative lens in plain values, with the `n` best tokens per position (1..vocabulary).
    [<CompiledName("Lens")>]
    let lens (tokenizer: ITokenizer) (result: LensResult) (n: int) : LensReadout =
        let inputs = inputs tokenizer result.Tokens
        let streams =
            [|
                for s in result.Streams ->
                    let positions = lensPositions tokenizer inputs s.Logits s.Agreement n
                    {
                        Stream = s.Stream
                        Path = string s.Path
                        Mean = mean [ for p in positions -> p.Agreement ]
                        Positions = positions
                    }
            |]
        {
            Order = result.Order
            TopK =
                match result.Streams with
                | s :: _ -> s.Agreement.K
                | [] -> 0
            Inputs = inputs
            Streams = streams
            Predictions = predictions tokenizer inputs result.Logits n
        }

    /// A fitted joint lens in plain values, with the `n` best tokens per position (1..vocabulary).
    [<CompiledName("JointLens")>]
    let jointLens (tokenizer: ITokenizer) (result: JointLensResult) (n: int) : JointLensReadout =
        let inputs = inputs tokenizer result.Tokens
        let centres =
            [|
                for i, centre in List.indexed result.Centres ->
                    let weights =
                        use _ = torch.NewDisposeScope()
                        let perRow = result.Weights.[int64 i]
                        Array.init inputs.Length (LogitMetrics.row perRow)
                    let best = top tokenizer n result.PerCentre.[i]
                    {
                        Centre = Print.centre centre
                        Path = string result.Paths.[i]
                        MeanWeight = Array.average (Array.concat weights)
                        Positions =
                            perPosition inputs (fun b p input ->
                                { Row = b; Position = p; Input = input; Weight = weights.[b].[p]; Top = best.[b].[p] })
                    }
            |]
        let positions = lensPositions tokenizer inputs result.Combined result.Agreement n
        {
            Order = result.Order
            Streams = Array.ofList result.Streams
            Losses = Array.copy result.Losses
            Inputs = inputs
            Centres = centres
            Positions = positions
            Mean = mean [ for p in positions -> p.Agreement ]
            Predictions = predictions tokenizer inputs result.Logits n
        }

    /// A decoder carving's summary (batch row 0) in plain values, with the pieces of every top-1 token and of the
    /// input tokens of row 0 of `tokens` [batch, seq].
    [<CompiledName("Carving")>]
    let carving (tokenizer: ITokenizer) (tokens: Tensor) (summary: CarvingSummary) : CarvingReadout =
        let piece (id: int64) = { Id = int id; Piece = LogitMetrics.piece tokenizer (int id) }
        let path (p: PathSummary) =
            {
                Name = p.Name
                NormRatio = p.NormRatio
                MeanCosine = p.MeanCosine
                Top1 = Array.map piece p.Top1
                Top1Agreement = p.Top1Agreement
                Contribution = p.Contribution
            }
        {
            Inputs = (inputs tokenizer tokens).[0]
            Paths = summary.Paths |> List.map path |> Array.ofList
            Remainder = path summary.Remainder
            ModelTop1 = Array.map piece summary.ModelTop1
            ModelTop1Logit = summary.ModelTop1Logit
            RemainderNorm = summary.RemainderNorm
            ReconstructionError = summary.ReconstructionError
        }

    /// A [rows, cols] tensor as float32 rows, matrix.[row].[col] (for JSON).
    [<CompiledName("Matrix")>]
    let matrix (t: Tensor) : float32[][] =
        if t.dim () <> 2L then
            raise (
                ShapeMismatchException(
                    sprintf "A matrix reading needs a [rows, cols] tensor; got %s." (Tensors.describe t)
                )
            )
        use _ = torch.NewDisposeScope()
        let data = t.detach().cpu().to_type(torch.float32).contiguous ()
        let rows, cols = int data.shape.[0], int data.shape.[1]
        let values = data.data<float32>().ToArray()
        Array.init rows (fun r -> Array.sub values (r * cols) cols)

    /// What a bigram table holds, for example "global top 10, probability, diagonal dropped" or "top 3 per token, logit".
    [<CompiledName("DescribeTable")>]
    let describeTable (isGlobal: bool) (k: int) (space: ScoreSpace) (dropDiagonal: bool) =
        let ranking =
            if isGlobal then
                sprintf "global top %d" k
            else
                sprintf "top %d per token" k
        let spaceName =
            match space with
            | ScoreSpace.Probability -> "probability"
            | ScoreSpace.Logit -> "logit"
        sprintf "%s, %s%s" ranking spaceName (if dropDiagonal then ", diagonal dropped" else "")
