namespace Jet.Core.Pictures

open System
open Jet.Core.Apps

/// The picture of a carving: at every position, each path's logit for the model's top-1 token, stacked (positive
/// parts up, negative parts down), with the remainder and a dot at the model's own logit. The bars add up exactly to
/// the dot, because paths and remainder sum to the logits.
[<RequireQualifiedAccess>]
module CarvingFigure =
    let private margin = 16.0
    let private textSize = 11.0
    let private remainderColour = Colour.rgb 158 158 158
    let private text x y s size colour anchor bold = Shape.Text(x, y, s, size, colour, anchor, bold)

    /// A scene of the carving. `inputPieces` are the prompt's tokens and `predictedPieces` the model's top-1 next
    /// tokens, one per position, for the axis labels.
    [<CompiledName("Scene")>]
    let scene (title: string) (summary: CarvingSummary) (inputPieces: string[]) (predictedPieces: string[]) : Scene =
        let series =
            [
                for i, p in List.indexed summary.Paths ->
                    p.Name, Colour.series.[i % Colour.series.Length], p.Contribution
            ]
            @ [ "remainder", remainderColour, summary.Remainder.Contribution ]
        let positions = summary.ModelTop1Logit.Length
        let stackTotal sign pos =
            series |> List.sumBy (fun (_, _, c: float[]) -> if sign * c.[pos] > 0.0 then c.[pos] else 0.0)
        let top =
            [ for p in 0 .. positions - 1 -> max (stackTotal 1.0 p) summary.ModelTop1Logit.[p] ]
            |> List.fold max 0.0
        let bottom =
            [ for p in 0 .. positions - 1 -> min (stackTotal -1.0 p) summary.ModelTop1Logit.[p] ]
            |> List.fold min 0.0
        let step =
            let raw = max ((top - bottom) / 6.0) 1e-9
            let magnitude = 10.0 ** floor (log10 raw)
            [ 1.0; 2.0; 5.0; 10.0 ] |> List.map (fun m -> m * magnitude) |> List.find (fun s -> s >= raw)
        let top, bottom = ceil (top / step) * step, floor (bottom / step) * step
        let span = if top - bottom < 1e-9 then 1.0 else top - bottom
        let left, plotTop, plotHeight, slot = margin + 58.0, margin + 56.0, 300.0, 60.0
        let plotWidth = slot * float positions
        let y (v: float) = plotTop + (top - v) / span * plotHeight
        let labelY = plotTop + plotHeight + 14.0
        let legendTop = labelY + 52.0
        let ticks = [ for i in 0 .. int (Math.Round(span / step)) -> bottom + float i * step ]
        let bars =
            [
                for pos in 0 .. positions - 1 do
                    let x0 = left + slot * float pos + 10.0
                    let width = slot - 20.0
                    let mutable up, down = 0.0, 0.0
                    for _, colour, c in series do
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
                        Shape.Rect(x0, y1, width, max 0.5 (y2 - y1), colour, Some Colour.white)
                    Shape.Circle(x0 + width / 2.0, y summary.ModelTop1Logit.[pos], 4.5, Colour.black)
                    let centre = x0 + width / 2.0
                    text
                        centre
                        labelY
                        (Fonts.fit inputPieces.[pos] textSize true (slot - 6.0))
                        textSize
                        Colour.ink
                        Anchor.Middle
                        true
                    text
                        centre
                        (labelY + 16.0)
                        ("→ " + Fonts.fit predictedPieces.[pos] textSize false (slot - 18.0))
                        textSize
                        Colour.grey
                        Anchor.Middle
                        false
            ]
        let shapes =
            [
                text margin (margin + 8.0) title 15.0 Colour.ink Anchor.Start true
                text
                    margin
                    (margin + 28.0)
                    "bars: each path's logit for the model's top-1 token, stacked · dot: the model's logit = Σ paths + remainder"
                    textSize
                    Colour.grey
                    Anchor.Start
                    false
                for t in ticks do
                    Shape.Line(left, y t, left + plotWidth, y t, Colour.lightGrey, 1.0)
                    text (left - 6.0) (y t) (sprintf "%g" (Math.Round(t, 6))) 9.0 Colour.grey Anchor.End false
                yield! bars
                Shape.Line(left, y 0.0, left + plotWidth, y 0.0, Colour.ink, 1.0)
                text
                    margin
                    (labelY + 34.0)
                    "input token, → the model's top-1 next token"
                    9.0
                    Colour.grey
                    Anchor.Start
                    false
                for i, (name, colour, _) in List.indexed series do
                    let ly = legendTop + 20.0 * float i
                    Shape.Rect(left, ly - 6.0, 12.0, 12.0, colour, None)
                    text (left + 20.0) ly name textSize Colour.ink Anchor.Start false
            ]
        let subtitleWidth =
            Fonts.measure
                "bars: each path's logit for the model's top-1 token, stacked · dot: the model's logit = Σ paths + remainder"
                textSize
                false
        {
            Width = Math.Ceiling(max (left + plotWidth + margin) (margin * 2.0 + subtitleWidth))
            Height = Math.Ceiling(legendTop + 20.0 * float series.Length + margin)
            Shapes = shapes
        }
