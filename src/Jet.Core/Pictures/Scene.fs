namespace Jet.Core.Pictures

open System

/// An opaque RGB colour.
type Colour =
    {
        R: byte
        G: byte
        B: byte
    }

    /// "#rrggbb".
    member c.Hex = sprintf "#%02x%02x%02x" c.R c.G c.B

    /// Relative luminance in 0..1 (sRGB weights), to pick readable text on a fill.
    member c.Luminance = (0.2126 * float c.R + 0.7152 * float c.G + 0.0722 * float c.B) / 255.0

/// Colours and colour scales.
[<RequireQualifiedAccess>]
module Colour =
    /// A colour from 0..255 components.
    let rgb r g b = { R = byte r; G = byte g; B = byte b }
    /// Backgrounds and cell borders.
    let white = rgb 255 255 255
    /// Pure black.
    let black = rgb 0 0 0
    /// Body text.
    let ink = rgb 33 33 33
    /// Secondary text and axes.
    let grey = rgb 120 120 120
    /// Grid lines.
    let lightGrey = rgb 225 225 225
    /// Header cells and alternate rows.
    let faint = rgb 245 245 245

    /// Colours for lines in plots, distinguishable in print and for the common colour-vision deficiencies.
    let series = [| rgb 0 114 178; rgb 230 159 0; rgb 0 158 115; rgb 204 121 167; rgb 86 180 233 |]

    let private lerp (a: Colour) (b: Colour) (t: float) =
        let mix (x: byte) (y: byte) = byte (Math.Round(float x + (float y - float x) * t))
        { R = mix a.R b.R; G = mix a.G b.G; B = mix a.B b.B }

    let private alongStops (stops: Colour[]) (t: float) =
        let t = if Double.IsNaN t then 0.5 else Math.Clamp(t, 0.0, 1.0)
        let scaled = t * float (stops.Length - 1)
        let i = min (int scaled) (stops.Length - 2)
        lerp stops.[i] stops.[i + 1] (scaled - float i)

    // ColorBrewer RdBu, reversed: blue for negative, red for positive.
    let private redBlue =
        [|
            "053061"
            "2166ac"
            "4393c3"
            "92c5de"
            "d1e5f0"
            "f7f7f7"
            "fddbc7"
            "f4a582"
            "d6604d"
            "b2182b"
            "67001f"
        |]
        |> Array.map (fun h ->
            rgb
                (Convert.ToInt32(h.Substring(0, 2), 16))
                (Convert.ToInt32(h.Substring(2, 2), 16))
                (Convert.ToInt32(h.Substring(4, 2), 16)))

    // ColorBrewer Blues, for scores that are never negative.
    let private blues =
        [| "f7fbff"; "deebf7"; "c6dbef"; "9ecae1"; "6baed6"; "4292c6"; "2171b5"; "084594" |]
        |> Array.map (fun h ->
            rgb
                (Convert.ToInt32(h.Substring(0, 2), 16))
                (Convert.ToInt32(h.Substring(2, 2), 16))
                (Convert.ToInt32(h.Substring(4, 2), 16)))

    /// A diverging blue–white–red colour for `value`, white at 0, with separate slopes for the two signs:
    /// `low` (< 0) maps to full blue and `high` (> 0) to full red.
    let diverging (low: float) (high: float) (value: float) =
        let t =
            if value >= 0.0 then
                0.5 + 0.5 * (if high > 0.0 then value / high else 0.0)
            else
                0.5 - 0.5 * (if low < 0.0 then value / low else 0.0)
        alongStops redBlue t

    /// A sequential white-to-blue colour for `value` in 0..`high`.
    let sequential (high: float) (value: float) = alongStops blues (if high > 0.0 then value / high else 0.0)

/// Horizontal alignment of text at its anchor point.
[<RequireQualifiedAccess>]
type Anchor =
    | Start
    | Middle
    | End

/// One drawing instruction. Coordinates are in picture units (SVG user units; PNG pixels at scale 1), y down.
[<RequireQualifiedAccess>]
type Shape =
    | Rect of x: float * y: float * width: float * height: float * fill: Colour * stroke: Colour option
    /// Text whose vertical middle (of capital letters) sits at y.
    | Text of x: float * y: float * text: string * size: float * colour: Colour * anchor: Anchor * bold: bool
    | Line of x1: float * y1: float * x2: float * y2: float * colour: Colour * width: float
    | Polyline of points: (float * float) list * colour: Colour * width: float
    | Circle of cx: float * cy: float * r: float * fill: Colour

/// A picture as data, drawn in order on a white background; rendered to SVG by hand and to PNG by SkiaSharp.
type Scene = { Width: float; Height: float; Shapes: Shape list }
