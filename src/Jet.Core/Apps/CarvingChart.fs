namespace Jet.Core.Apps

open System
open System.Globalization
open System.Text

/// An SVG picture of a carving: at every position, each path's logit for the model's top-1 token, stacked
/// (positive parts up, negative parts down), with the remainder and the model's own logit marked. The bars
/// add up exactly to the marker, because paths and remainder sum to the logits.
[<RequireQualifiedAccess>]
module CarvingChart =
    let private palette = [| "#4e79a7"; "#f28e2b"; "#59a14f"; "#e15759"; "#76b7b2"; "#edc948"; "#b07aa1"; "#ff9da7"; "#9c755f" |]
    let private remainderColour = "#9e9e9e"
    let private f (x: float) = x.ToString("0.##", CultureInfo.InvariantCulture)
    /// XML escaping of text content (non-ASCII characters stay as they are: the file is UTF-8).
    let private esc (s: string) = s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&quot;")

    /// The SVG document. `inputPieces` are the prompt's tokens and `predictedPieces` the model's top-1 next tokens,
    /// both one per position, for the axis labels.
    let svg (title: string) (summary: CarvingSummary) (inputPieces: string[]) (predictedPieces: string[]) : string =
        let series =
            [ for i, p in List.indexed summary.Paths -> p.Name, palette.[i % palette.Length], p.Contribution ]
            @ [ "remainder", remainderColour, summary.Remainder.Contribution ]
        let positions = summary.ModelTop1Logit.Length
        let stackTotals sign =
            [| for pos in 0 .. positions - 1 ->
                   series |> List.sumBy (fun (_, _, c) -> if sign * c.[pos] > 0.0 then c.[pos] else 0.0) |]
        let top = max (Array.max (stackTotals 1.0)) (Array.max summary.ModelTop1Logit) |> max 0.0
        let bottom = min (Array.min (stackTotals -1.0)) (Array.min summary.ModelTop1Logit) |> min 0.0
        let span = if top - bottom < 1e-9 then 1.0 else top - bottom
        let left, plotTop, plotHeight, slot = 70.0, 50.0, 320.0, 64.0
        let plotWidth = slot * float positions
        let legendTop = plotTop + plotHeight + 70.0
        let width = left + plotWidth + 30.0 |> max 640.0
        let height = legendTop + 22.0 * float series.Length + 40.0
        let y (v: float) = plotTop + (top - v) / span * plotHeight
        let sb = StringBuilder()
        let add (s: string) = sb.AppendLine s |> ignore
        add (sprintf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%s\" height=\"%s\" viewBox=\"0 0 %s %s\" font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"12\">" (f width) (f height) (f width) (f height))
        add "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>"
        add (sprintf "<text x=\"%s\" y=\"24\" font-size=\"15\" font-weight=\"bold\">%s</text>" (f left) (esc title))
        add (sprintf "<text x=\"%s\" y=\"40\" fill=\"#555\">Stacked: each path's logit for the model's top-1 token. ◆ model's logit = Σ paths + remainder.</text>" (f left))
        // Axis and grid.
        let step =
            let raw = span / 6.0
            let magnitude = 10.0 ** floor (log10 raw)
            [ 1.0; 2.0; 5.0; 10.0 ] |> List.map (fun m -> m * magnitude) |> List.find (fun s -> s >= raw)
        let mutable tick = ceil (bottom / step) * step
        while tick <= top + 1e-9 do
            add (sprintf "<line x1=\"%s\" x2=\"%s\" y1=\"%s\" y2=\"%s\" stroke=\"#e5e5e5\"/>" (f left) (f (left + plotWidth)) (f (y tick)) (f (y tick)))
            add (sprintf "<text x=\"%s\" y=\"%s\" text-anchor=\"end\" fill=\"#555\">%s</text>" (f (left - 6.0)) (f (y tick + 4.0)) (f tick))
            tick <- tick + step
        add (sprintf "<line x1=\"%s\" x2=\"%s\" y1=\"%s\" y2=\"%s\" stroke=\"#333\"/>" (f left) (f (left + plotWidth)) (f (y 0.0)) (f (y 0.0)))
        add (sprintf "<text transform=\"translate(16 %s) rotate(-90)\" text-anchor=\"middle\" fill=\"#333\">logit of the model's top-1 token</text>" (f (plotTop + plotHeight / 2.0)))
        for pos in 0 .. positions - 1 do
            let x0 = left + slot * float pos + 12.0
            let barWidth = slot - 24.0
            let mutable up, down = 0.0, 0.0
            for name, colour, c in series do
                let v = c.[pos]
                let a, b =
                    if v >= 0.0 then
                        let a = up
                        up <- up + v
                        a, up
                    else
                        let a = down
                        down <- down + v
                        a, down
                let y1, y2 = min (y a) (y b), max (y a) (y b)
                add (sprintf "<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"%s\" stroke=\"white\" stroke-width=\"0.5\"><title>%s: %s</title></rect>" (f x0) (f y1) (f barWidth) (f (max 0.5 (y2 - y1))) colour (esc name) (f v))
            let m = summary.ModelTop1Logit.[pos]
            let cx, cy = x0 + barWidth / 2.0, y m
            add (sprintf "<path d=\"M %s %s l 6 6 l -6 6 l -6 -6 z\" fill=\"black\"><title>model logit %s</title></path>" (f cx) (f (cy - 6.0)) (f m))
            let label (s: string) = if s.Length > 8 then s.Substring(0, 7) + "…" else s
            add (sprintf "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s</text>" (f cx) (f (plotTop + plotHeight + 18.0)) (esc (label inputPieces.[pos])))
            add (sprintf "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\" fill=\"#777\">→ %s</text>" (f cx) (f (plotTop + plotHeight + 36.0)) (esc (label predictedPieces.[pos])))
        add (sprintf "<text x=\"%s\" y=\"%s\" fill=\"#555\">position: input token, → model's top-1 next token</text>" (f left) (f (plotTop + plotHeight + 54.0)))
        for i, (name, colour, _) in List.indexed series do
            let ly = legendTop + 22.0 * float i
            add (sprintf "<rect x=\"%s\" y=\"%s\" width=\"14\" height=\"14\" fill=\"%s\"/>" (f left) (f ly) colour)
            add (sprintf "<text x=\"%s\" y=\"%s\">%s</text>" (f (left + 22.0)) (f (ly + 12.0)) (esc name))
        add "</svg>"
        sb.ToString()
