namespace Jet.Core.Pictures

open System.Globalization
open System.Text

/// Writes scenes as SVG text, by hand.
[<RequireQualifiedAccess>]
module Svg =
    let private num (x: float) = x.ToString("0.##", CultureInfo.InvariantCulture)

    let private escape (text: string) =
        text.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&quot;")

    /// The SVG document of a scene (width and height in user units).
    let render (scene: Scene) : string =
        let sb = StringBuilder()
        let line (s: string) = sb.Append(s).Append('\n') |> ignore
        line "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
        line (
            sprintf
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%s\" height=\"%s\" viewBox=\"0 0 %s %s\" font-family=\"%s\">"
                (num scene.Width)
                (num scene.Height)
                (num scene.Width)
                (num scene.Height)
                (escape Fonts.svgFamily)
        )
        line (
            sprintf
                "<rect x=\"0\" y=\"0\" width=\"%s\" height=\"%s\" fill=\"#ffffff\"/>"
                (num scene.Width)
                (num scene.Height)
        )
        for shape in scene.Shapes do
            match shape with
            | Shape.Rect(x, y, w, h, fill, stroke) ->
                let strokeText =
                    match stroke with
                    | Some c -> sprintf " stroke=\"%s\" stroke-width=\"1\"" c.Hex
                    | None -> ""
                line (
                    sprintf
                        "<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"%s\"%s/>"
                        (num x)
                        (num y)
                        (num w)
                        (num h)
                        fill.Hex
                        strokeText
                )
            | Shape.Text(x, y, text, size, colour, anchor, bold) ->
                let anchorText =
                    match anchor with
                    | Anchor.Start -> "start"
                    | Anchor.Middle -> "middle"
                    | Anchor.End -> "end"
                line (
                    sprintf
                        "<text x=\"%s\" y=\"%s\" font-size=\"%s\" fill=\"%s\" text-anchor=\"%s\"%s xml:space=\"preserve\">%s</text>"
                        (num x)
                        (num (Fonts.baseline y size))
                        (num size)
                        colour.Hex
                        anchorText
                        (if bold then " font-weight=\"bold\"" else "")
                        (escape text)
                )
            | Shape.Line(x1, y1, x2, y2, colour, width) ->
                line (
                    sprintf
                        "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"%s\" stroke-width=\"%s\"/>"
                        (num x1)
                        (num y1)
                        (num x2)
                        (num y2)
                        colour.Hex
                        (num width)
                )
            | Shape.Polyline(points, colour, width) ->
                let coords = points |> List.map (fun (x, y) -> num x + "," + num y) |> String.concat " "
                line (
                    sprintf
                        "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" stroke-linejoin=\"round\"/>"
                        coords
                        colour.Hex
                        (num width)
                )
            | Shape.Circle(cx, cy, r, fill) ->
                line (sprintf "<circle cx=\"%s\" cy=\"%s\" r=\"%s\" fill=\"%s\"/>" (num cx) (num cy) (num r) fill.Hex)
        line "</svg>"
        sb.ToString()
