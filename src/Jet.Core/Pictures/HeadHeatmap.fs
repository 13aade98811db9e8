namespace Jet.Core.Pictures

open System
open Jet.Core.Apps

/// The head ranking as a picture: one row per attention layer, one column per head, each cell coloured by a score.
[<RequireQualifiedAccess>]
module HeadHeatmap =

    let private margin = 16.0
    let private cell = 34.0
    let private textSize = 10.0

    /// A layers × heads heatmap of `scores` read by `measure` (for example copying), white to blue from 0 to the
    /// largest score, each cell labelled with its value; `layerName` labels a row ("attn3").
    [<CompiledName("Of")>]
    let ofScores
        (title: string)
        (subtitle: string)
        (layerName: int -> string)
        (measure: HeadScore -> float)
        (scores: HeadScore seq)
        : Scene =
        let scores = Array.ofSeq scores
        let layers = scores |> Array.map (fun s -> s.Layer) |> Array.distinct |> Array.sort
        let heads =
            if scores.Length = 0 then
                1
            else
                scores |> Array.map (fun s -> s.Head) |> Array.max
        let finite (x: float) = if Double.IsFinite x then x else 0.0
        let high = scores |> Array.fold (fun m s -> max m (finite (measure s))) 1e-12
        let labelWidth =
            (layers |> Array.map (fun l -> Fonts.measure (layerName l) textSize false) |> Array.fold max 20.0)
            + 12.0
        let left, top = margin + labelWidth, margin + 58.0
        let shapes =
            [
                Shape.Text(margin, margin + 8.0, title, 15.0, Colour.ink, Anchor.Start, true)
                Shape.Text(margin, margin + 28.0, subtitle, 11.0, Colour.grey, Anchor.Start, false)
                for h in 1..heads do
                    Shape.Text(
                        left + cell * (float h - 0.5),
                        top - 8.0,
                        sprintf "h%d" h,
                        textSize,
                        Colour.grey,
                        Anchor.Middle,
                        false
                    )
                for row, l in Array.indexed layers do
                    let y = top + cell * float row
                    Shape.Text(margin, y + cell / 2.0, layerName l, textSize, Colour.ink, Anchor.Start, false)
                    for s in scores |> Array.filter (fun s -> s.Layer = l) do
                        let value = finite (measure s)
                        let fill = Colour.sequential high value
                        let x = left + cell * float (s.Head - 1)
                        Shape.Rect(x, y, cell, cell, fill, Some Colour.white)
                        Shape.Text(
                            x + cell / 2.0,
                            y + cell / 2.0,
                            sprintf "%.2g" value,
                            8.0,
                            (if fill.Luminance < 0.5 then Colour.white else Colour.ink),
                            Anchor.Middle,
                            false
                        )
            ]
        let width =
            max
                (left + cell * float heads + margin)
                (2.0 * margin + max (Fonts.measure title 15.0 true) (Fonts.measure subtitle 11.0 false))
        {
            Width = Math.Ceiling width
            Height = Math.Ceiling(top + cell * float layers.Length + margin)
            Shapes = shapes
        }
