namespace Jet.Core.Pictures

open System
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps

/// One cell of a token table: the text it shows and the value that colours it.
type TokenCell = { Text: string; Value: float }

/// One row of a token table, with a label on the left and a note on the right.
type TokenRow = { Label: string; Cells: TokenCell[]; Note: string }

/// A table of tokens coloured on a diverging scale centred at 0 (the lens pictures).
type TokenTable =
    {
        Title: string
        Subtitle: string
        /// Column headers (the input tokens).
        Columns: string[]
        Rows: TokenRow list
        /// Rows drawn below a gap (the model's own output).
        Footer: TokenRow list
        /// What the colour bar measures.
        ScaleLabel: string
    }

/// Builds the pictures of lenses and bigrams as scenes (see `Pictures.save` to write them).
[<RequireQualifiedAccess>]
module Figures =
    let private margin = 16.0
    let private titleSize = 15.0
    let private textSize = 11.0
    let private rowHeight = 24.0
    let private maxCellWidth = 150.0

    let private subscript = Notation.subscript

    let private superscript = Notation.superscript

    /// "h₃" for stream 3, "h₀ (Enc)" for the encoder output.
    [<CompiledName("StreamLabel")>]
    let streamLabel (l: int) = if l = 0 then "h₀ (Enc)" else "h" + subscript l

    let private finiteOr0 (x: float) = if Double.IsFinite x then x else 0.0

    let private text x y s size colour anchor bold = Shape.Text(x, y, s, size, colour, anchor, bold)

    // Title and subtitle; returns the shapes and the y below them.
    let private heading (title: string) (subtitle: string) =
        let shapes =
            [
                text margin (margin + 8.0) title titleSize Colour.ink Anchor.Start true
                if subtitle <> "" then
                    text margin (margin + 28.0) subtitle textSize Colour.grey Anchor.Start false
            ]
        shapes, margin + (if subtitle <> "" then 46.0 else 26.0)

    // A horizontal colour bar with ticks at its ends (and at 0 in the middle for a diverging scale, whose two
    // halves cover low..0 and 0..high as the cells' two slopes do).
    let private colourBar
        (x: float)
        (y: float)
        (label: string)
        (colourOf: float -> Colour)
        (low: float)
        (high: float)
        (diverging: bool)
        =
        let width, height, steps = 220.0, 10.0, 88
        let valueAt (f: float) =
            if diverging then
                (if f < 0.5 then
                     low * (1.0 - 2.0 * f)
                 else
                     high * (2.0 * f - 1.0))
            else
                low + (high - low) * f
        let barX = x + Fonts.measure label textSize false + 10.0
        let tick (f: float) =
            let tx = barX + width * f
            [
                Shape.Line(tx, y + height, tx, y + height + 3.0, Colour.grey, 1.0)
                text tx (y + height + 10.0) (sprintf "%.3g" (valueAt f)) 9.0 Colour.grey Anchor.Middle false
            ]
        [
            text x (y + height / 2.0) label textSize Colour.grey Anchor.Start false
            for i in 0 .. steps - 1 do
                let f = (float i + 0.5) / float steps
                Shape.Rect(
                    barX + width * float i / float steps,
                    y,
                    width / float steps + 0.5,
                    height,
                    colourOf (valueAt f),
                    None
                )
            yield! tick 0.0
            if diverging then
                yield! tick 0.5
            yield! tick 1.0
        ]

    /// The smallest "nice" number (1, 2, 2.5 or 5 times a power of ten) that is ≥ x, for axis limits.
    [<CompiledName("NiceCeiling")>]
    let niceCeiling (x: float) =
        if not (x > 0.0) || not (Double.IsFinite x) then
            1.0
        else
            let power = 10.0 ** Math.Floor(Math.Log10 x)
            [ 1.0; 2.0; 2.5; 5.0; 10.0 ]
            |> List.map (fun m -> m * power)
            |> List.find (fun v -> v >= x * (1.0 - 1e-12))

    /// A token table: row labels on the left, one column per input token, notes on the right, the footer rows
    /// after a gap, and a colour bar. Cells are coloured by value on a diverging scale centred at 0 whose two
    /// ends are 1.3 × the most negative and most positive values of all rows and the footer.
    [<CompiledName("TokenTable")>]
    let tokenTable (table: TokenTable) : Scene =
        let allRows = table.Rows @ table.Footer
        let values =
            allRows |> List.collect (fun r -> r.Cells |> Array.map (fun c -> finiteOr0 c.Value) |> List.ofArray)
        let low = min ((if values.IsEmpty then 0.0 else List.min values) * 1.3) -0.1
        let high = max ((if values.IsEmpty then 0.0 else List.max values) * 1.3) 0.1
        let colourOf = Colour.diverging low high
        let labelWidth =
            (allRows |> List.map (fun r -> Fonts.measure r.Label textSize false) |> List.fold max 40.0) + 14.0
        let columnWidth i =
            let widths =
                [ Fonts.measure table.Columns.[i] textSize true ]
                @ [ for r in allRows -> Fonts.measure r.Cells.[i].Text textSize false ]
            min maxCellWidth (max 40.0 (List.max widths + 14.0))
        let widths = Array.init table.Columns.Length columnWidth
        let lefts = Array.scan (+) (margin + labelWidth) widths
        let tableRight = lefts.[lefts.Length - 1]
        let noteWidth =
            (allRows |> List.map (fun r -> Fonts.measure r.Note textSize false) |> List.fold max 0.0)
        let headShapes, top = heading table.Title table.Subtitle
        let headerY = top
        let firstRowY = headerY + rowHeight
        let footerY = firstRowY + rowHeight * float table.Rows.Length + 8.0
        let barY = footerY + rowHeight * float table.Footer.Length + 14.0
        let rowShapes (y: float) (row: TokenRow) =
            [
                text (margin + labelWidth - 8.0) (y + rowHeight / 2.0) row.Label textSize Colour.ink Anchor.End false
                for i in 0 .. widths.Length - 1 do
                    let cell = row.Cells.[i]
                    let fill = colourOf (finiteOr0 cell.Value)
                    Shape.Rect(lefts.[i], y, widths.[i], rowHeight, fill, Some Colour.white)
                    let ink = if fill.Luminance < 0.5 then Colour.white else Colour.ink
                    text
                        (lefts.[i] + widths.[i] / 2.0)
                        (y + rowHeight / 2.0)
                        (Fonts.fit cell.Text textSize false (widths.[i] - 6.0))
                        textSize
                        ink
                        Anchor.Middle
                        false
                if row.Note <> "" then
                    text (tableRight + 10.0) (y + rowHeight / 2.0) row.Note textSize Colour.grey Anchor.Start false
            ]
        let shapes =
            [
                yield! headShapes
                for i in 0 .. widths.Length - 1 do
                    Shape.Rect(lefts.[i], headerY, widths.[i], rowHeight, Colour.faint, Some Colour.white)
                    text
                        (lefts.[i] + widths.[i] / 2.0)
                        (headerY + rowHeight / 2.0)
                        (Fonts.fit table.Columns.[i] textSize true (widths.[i] - 6.0))
                        textSize
                        Colour.ink
                        Anchor.Middle
                        true
                for j, row in List.indexed table.Rows do
                    yield! rowShapes (firstRowY + rowHeight * float j) row
                for j, row in List.indexed table.Footer do
                    yield! rowShapes (footerY + rowHeight * float j) row
                yield! colourBar (margin + labelWidth) barY table.ScaleLabel colourOf low high true
            ]
        let width =
            max
                (tableRight + (if noteWidth > 0.0 then noteWidth + 20.0 else 0.0) + margin)
                (margin * 2.0 + Fonts.measure table.Title titleSize true)
        let width = max width (margin * 2.0 + Fonts.measure table.Subtitle textSize false)
        let width = max width (margin + labelWidth + 360.0)
        { Width = Math.Ceiling width; Height = Math.Ceiling(barY + 30.0 + margin); Shapes = shapes }

    // The cell of a position's best token: the token, coloured by its score.
    let private cellOf (top: RankedToken[]) = { Text = top.[0].Token; Value = top.[0].Score }

    let private checkRow (inputs: InputToken[][]) (row: int) =
        if row < 0 || row >= inputs.Length then
            raise (
                IndexRangeException(
                    sprintf "Batch row %d does not exist; the batch has rows 0..%d." row (inputs.Length - 1)
                )
            )

    // The positions of batch row `row` in a row-major reading.
    let private inRow (row: int) (positions: 'T[]) (rowOf: 'T -> int) =
        positions |> Array.filter (fun p -> rowOf p = row)

    let private columnsOf (inputs: InputToken[][]) (row: int) = inputs.[row] |> Array.map (fun t -> t.Piece)

    let private predictionCells (predictions: PositionTokens[]) (row: int) =
        inRow row predictions (fun p -> p.Row) |> Array.map (fun p -> cellOf p.Top)

    /// The iterative lens table of batch row `row` of a lens reading (`Readings.lens`, at least one top token): one
    /// row per stream, one column per input token, each cell the lens's top-1 token coloured by its logit; the
    /// model's own top-1 tokens in the bottom row.
    [<CompiledName("Lens")>]
    let lens (reading: LensReadout) (row: int) : Scene =
        checkRow reading.Inputs row
        let name =
            if reading.Order = 0 then
                "Logit lens (jet lens of order 0)"
            else
                sprintf "Jet lens of order %d" reading.Order
        tokenTable
            {
                Title = name
                Subtitle =
                    sprintf
                        "cell: top-1 token of U·J%s LN_f(h_l)(h_L), coloured by its logit · right: mean over positions"
                        (superscript reading.Order)
                Columns = columnsOf reading.Inputs row
                Rows =
                    [
                        for stream in reading.Streams ->
                            let positions = inRow row stream.Positions (fun p -> p.Row)
                            let mean = Readings.mean [ for p in positions -> p.Agreement ]
                            {
                                Label = streamLabel stream.Stream
                                Cells = positions |> Array.map (fun p -> cellOf p.Top)
                                Note = sprintf "KL %.3f · top-1 %.0f%%" mean.Kl (100.0 * mean.Top1)
                            }
                    ]
                Footer = [ { Label = "model"; Cells = predictionCells reading.Predictions row; Note = "" } ]
                ScaleLabel = "top-1 logit"
            }

    /// The joint lens table of batch row `row`: one row per centre (label with its mean weight), each cell the top-1
    /// token of that centre's weighted logits with the centre's weight at that position; below, the model's
    /// output and the combined lens.
    [<CompiledName("JointLens")>]
    let jointLens (reading: JointLensReadout) (row: int) : Scene =
        checkRow reading.Inputs row
        let rows =
            [
                for centre in reading.Centres ->
                    let positions = inRow row centre.Positions (fun p -> p.Row)
                    {
                        Label =
                            sprintf
                                "%s  w̄ %.1f%%"
                                centre.Centre
                                (100.0 * Array.averageBy (fun p -> p.Weight) positions)
                        Cells =
                            positions
                            |> Array.map (fun p ->
                                { cellOf p.Top with Text = sprintf "%s %.0f%%" p.Top.[0].Token (100.0 * p.Weight) })
                        Note = ""
                    }
            ]
        let combined = inRow row reading.Positions (fun p -> p.Row)
        let mean = Readings.mean [ for p in combined -> p.Agreement ]
        let losses = reading.Losses
        tokenTable
            {
                Title = sprintf "Joint jet lens of order %d" reading.Order
                Subtitle =
                    sprintf
                        "cell: top-1 token of w_i·U·J%s LN_f(c_i)(h_L) and the weight w_i · Adam, %d steps: loss %.4g → %.4g"
                        (superscript reading.Order)
                        (losses.Length - 1)
                        losses.[0]
                        losses.[losses.Length - 1]
                Columns = columnsOf reading.Inputs row
                Rows = rows
                Footer =
                    [
                        { Label = "model"; Cells = predictionCells reading.Predictions row; Note = "" }
                        {
                            Label = "joint lens"
                            Cells = combined |> Array.map (fun p -> cellOf p.Top)
                            Note = sprintf "cos %.3f · KL %.3f · top-1 %.0f%%" mean.Cosine mean.Kl (100.0 * mean.Top1)
                        }
                    ]
                ScaleLabel = "top-1 logit"
            }

    // One line-plot panel: series of (name, colour, values) over the x labels, y from 0 to yMax.
    let private panel
        (x0: float)
        (y0: float)
        (width: float)
        (height: float)
        (title: string)
        (xLabels: string[])
        (yMax: float)
        (series: (string * Colour * float[]) list)
        =
        let n = xLabels.Length
        let px i =
            if n = 1 then
                x0 + width / 2.0
            else
                x0 + width * float i / float (n - 1)
        let py v = y0 + height - height * (finiteOr0 v / yMax)
        [
            text x0 (y0 - 14.0) title 12.0 Colour.ink Anchor.Start true
            for k in 0..4 do
                let v = yMax * float k / 4.0
                Shape.Line(x0, py v, x0 + width, py v, Colour.lightGrey, 1.0)
                text (x0 - 6.0) (py v) (sprintf "%.3g" v) 9.0 Colour.grey Anchor.End false
            Shape.Line(x0, y0 + height, x0 + width, y0 + height, Colour.grey, 1.0)
            let every = max 1 (int (Math.Ceiling(float n / 14.0)))
            for i in 0 .. n - 1 do
                if i % every = 0 || i = n - 1 then
                    Shape.Line(px i, y0 + height, px i, y0 + height + 3.0, Colour.grey, 1.0)
                    text (px i) (y0 + height + 12.0) xLabels.[i] 9.0 Colour.grey Anchor.Middle false
            for _, colour, values in series do
                Shape.Polyline([ for i in 0 .. n - 1 -> px i, py values.[i] ], colour, 2.0)
                for i in 0 .. n - 1 do
                    Shape.Circle(px i, py values.[i], 2.8, colour)
            for j, (name, colour, _) in List.indexed series do
                let ly = y0 + height + 30.0 + 14.0 * float j
                Shape.Line(x0, ly, x0 + 16.0, ly, colour, 2.5)
                text (x0 + 22.0) ly name 10.0 Colour.ink Anchor.Start false
        ]

    /// The per-layer metrics of a lens for batch row `row`, averaged over positions: cosine, top-1 agreement and
    /// top-k overlap on the left (0..1), KL(model‖lens) on the right.
    [<CompiledName("LensMetrics")>]
    let lensMetrics (reading: LensReadout) (row: int) : Scene =
        checkRow reading.Inputs row
        let streams = reading.Streams |> Array.map (fun s -> "h" + subscript s.Stream)
        let means =
            reading.Streams
            |> Array.map (fun s -> Readings.mean [ for p in inRow row s.Positions (fun p -> p.Row) -> p.Agreement ])
        let perLayer (pick: AgreementValues -> float) = means |> Array.map pick
        let k = reading.TopK
        let kl = perLayer (fun a -> a.Kl)
        let klMax =
            kl
            |> Array.map finiteOr0
            |> Array.fold max 0.0
            |> fun m -> if m <= 0.0 then 1.0 else niceCeiling (m * 1.05)
        let headShapes, top =
            heading (sprintf "Lens metrics per layer (order %d)" reading.Order) "mean over the prompt's positions"
        let panelWidth, panelHeight = 300.0, 200.0
        let y0 = top + 22.0
        let left =
            panel
                (margin + 34.0)
                y0
                panelWidth
                panelHeight
                "agreement with the model"
                streams
                1.0
                [
                    "cosine of logits", Colour.series.[0], perLayer (fun a -> a.Cosine)
                    "top-1 agreement", Colour.series.[1], perLayer (fun a -> a.Top1)
                    sprintf "top-%d overlap" k, Colour.series.[2], perLayer (fun a -> a.TopKOverlap)
                ]
        let right =
            panel
                (margin + 34.0 + panelWidth + 70.0)
                y0
                panelWidth
                panelHeight
                "KL(model ‖ lens), nats"
                streams
                klMax
                [ "KL divergence", Colour.series.[3], kl ]
        {
            Width = Math.Ceiling(margin * 2.0 + 34.0 + panelWidth * 2.0 + 70.0 + 10.0)
            Height = Math.Ceiling(y0 + panelHeight + 30.0 + 14.0 * 3.0 + margin)
            Shapes = headShapes @ left @ right
        }

    /// A bigram table: rank, token, next token and score, at most `maxRows` rows (a note says how many were left
    /// out). Probabilities are coloured white to blue, logits on the diverging scale.
    [<CompiledName("Bigrams")>]
    let bigrams (title: string) (subtitle: string) (space: ScoreSpace) (maxRows: int) (rows: BigramRow seq) : Scene =
        let rows = List.ofSeq rows
        let shown = List.truncate (max 1 maxRows) rows
        let scores = shown |> List.map (fun r -> finiteOr0 r.Score)
        let high = if scores.IsEmpty then 1.0 else max (List.max scores) 1e-12
        let low = if scores.IsEmpty then 0.0 else List.min scores
        let colourOf =
            match space with
            | ScoreSpace.Probability -> Colour.sequential high
            | ScoreSpace.Logit -> Colour.diverging (min (low * 1.3) -0.1) (max (high * 1.3) 0.1)
        let format (s: float) =
            match space with
            | ScoreSpace.Probability -> sprintf "%.2f%%" (100.0 * s)
            | ScoreSpace.Logit -> sprintf "%.3f" s
        let headers =
            [|
                "#"
                "token"
                "next token"
                (match space with
                 | ScoreSpace.Probability -> "P(next | token)"
                 | ScoreSpace.Logit -> "logit")
            |]
        let cellsOf (i: int) (r: BigramRow) = [| string (i + 1); r.FromToken; r.ToToken; format r.Score |]
        let widthOf c =
            let texts = headers.[c] :: (shown |> List.mapi (fun i r -> (cellsOf i r).[c]))
            min maxCellWidth ((texts |> List.map (fun t -> Fonts.measure t textSize (c = 0)) |> List.max) + 18.0)
        let widths = Array.init 4 widthOf
        let widths = widths |> Array.mapi (fun c w -> if c = 3 then max w 110.0 else w)
        let lefts = Array.scan (+) margin widths
        let headShapes, top = heading title subtitle
        let y0 = top
        let shapes =
            [
                yield! headShapes
                for c in 0..3 do
                    Shape.Rect(lefts.[c], y0, widths.[c], rowHeight, Colour.faint, Some Colour.white)
                    text
                        (lefts.[c] + widths.[c] / 2.0)
                        (y0 + rowHeight / 2.0)
                        headers.[c]
                        textSize
                        Colour.ink
                        Anchor.Middle
                        true
                for i, r in List.indexed shown do
                    let y = y0 + rowHeight * float (i + 1)
                    let cells = cellsOf i r
                    for c in 0..2 do
                        Shape.Rect(
                            lefts.[c],
                            y,
                            widths.[c],
                            rowHeight,
                            (if i % 2 = 0 then Colour.white else Colour.faint),
                            None
                        )
                        text
                            (lefts.[c] + widths.[c] / 2.0)
                            (y + rowHeight / 2.0)
                            (Fonts.fit cells.[c] textSize false (widths.[c] - 6.0))
                            textSize
                            (if c = 0 then Colour.grey else Colour.ink)
                            Anchor.Middle
                            false
                    let fill = colourOf (finiteOr0 r.Score)
                    Shape.Rect(lefts.[3], y, widths.[3], rowHeight, fill, Some Colour.white)
                    text
                        (lefts.[3] + widths.[3] / 2.0)
                        (y + rowHeight / 2.0)
                        cells.[3]
                        textSize
                        (if fill.Luminance < 0.5 then Colour.white else Colour.ink)
                        Anchor.Middle
                        false
                if rows.Length > shown.Length then
                    text
                        margin
                        (y0 + rowHeight * float (shown.Length + 1) + 14.0)
                        (sprintf "… %d more rows not shown" (rows.Length - shown.Length))
                        textSize
                        Colour.grey
                        Anchor.Start
                        false
            ]
        let tableRight = lefts.[4]
        let width =
            max
                (tableRight + margin)
                (margin * 2.0 + max (Fonts.measure title titleSize true) (Fonts.measure subtitle textSize false))
        let height =
            y0
            + rowHeight * float (shown.Length + 1)
            + (if rows.Length > shown.Length then 28.0 else 0.0)
            + margin
        { Width = Math.Ceiling width; Height = Math.Ceiling height; Shapes = shapes }

    /// The picture of a bigram table: `bigrams` titled "Jet bigrams: " and the readout swept, in words
    /// (`Readouts.describe`), the subtitle saying how the rows were ranked (global or per first token, k, score space,
    /// diagonal dropped).
    [<CompiledName("BigramTable")>]
    let bigramTable
        (readout: string)
        (isGlobal: bool)
        (k: int)
        (space: ScoreSpace)
        (dropDiagonal: bool)
        (maxRows: int)
        (rows: BigramRow seq)
        : Scene =
        bigrams ("Jet bigrams: " + readout) (Readings.describeTable isGlobal k space dropDiagonal) space maxRows rows

    /// Two models' tables side by side as a two-column chart: on the left the pairs whose score fell most, on the
    /// right those that rose most (at most `maxRows` each), each a bar as long as its change with the pair and the
    /// change written beside it (percentage points for probabilities, nats for log-probabilities).
    [<CompiledName("BigramChanges")>]
    let bigramChanges
        (title: string)
        (subtitle: string)
        (space: ChangeSpace)
        (maxRows: int)
        (rises: PairChangeRow seq)
        (falls: PairChangeRow seq)
        : Scene =
        let rises = rises |> Seq.truncate (max 1 maxRows) |> List.ofSeq
        let falls = falls |> Seq.truncate (max 1 maxRows) |> List.ofSeq
        let format (c: float) =
            match space with
            | ChangeSpace.Probability -> sprintf "%+.2f pp" (100.0 * c)
            | ChangeSpace.LogProbability -> sprintf "%+.2f nats" c
        let largest = (rises @ falls) |> List.map (fun r -> abs (finiteOr0 r.Change)) |> List.fold max 1e-12
        let label (r: PairChangeRow) = sprintf "%s → %s" r.FromToken r.ToToken
        let labelWidth =
            (rises @ falls)
            |> List.map (fun r -> Fonts.measure (label r) textSize false)
            |> List.fold max 60.0
            |> min (2.0 * maxCellWidth)
        let barWidth, valueWidth = 160.0, 78.0
        let columnWidth = labelWidth + barWidth + valueWidth + 24.0
        let headShapes, top = heading title subtitle
        let column (x0: float) (caption: string) (colour: Colour) (rows: PairChangeRow list) =
            [
                text x0 (top + rowHeight / 2.0) caption textSize Colour.ink Anchor.Start true
                for i, r in List.indexed rows do
                    let y = top + rowHeight * float (i + 1)
                    let length = barWidth * abs (finiteOr0 r.Change) / largest
                    if i % 2 = 1 then
                        Shape.Rect(x0, y, columnWidth - 12.0, rowHeight, Colour.faint, None)
                    text
                        (x0 + 4.0)
                        (y + rowHeight / 2.0)
                        (Fonts.fit (label r) textSize false labelWidth)
                        textSize
                        Colour.ink
                        Anchor.Start
                        false
                    let barX = x0 + labelWidth + 12.0
                    Shape.Rect(barX, y + 5.0, max 1.0 length, rowHeight - 10.0, colour, None)
                    text
                        (barX + barWidth + 6.0)
                        (y + rowHeight / 2.0)
                        (format r.Change)
                        textSize
                        Colour.ink
                        Anchor.Start
                        false
                if rows.IsEmpty then
                    text x0 (top + rowHeight * 1.5) "(none)" textSize Colour.grey Anchor.Start false
            ]
        let shapes =
            [
                yield! headShapes
                yield! column margin "fell most" (Colour.rgb 33 102 172) falls
                yield! column (margin + columnWidth) "rose most" (Colour.rgb 178 24 43) rises
            ]
        let rows = max (max rises.Length falls.Length) 1
        let width =
            max
                (margin * 2.0 + 2.0 * columnWidth)
                (margin * 2.0 + max (Fonts.measure title titleSize true) (Fonts.measure subtitle textSize false))
        {
            Width = Math.Ceiling width
            Height = Math.Ceiling(top + rowHeight * float (rows + 1) + margin)
            Shapes = shapes
        }
