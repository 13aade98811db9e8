namespace Jet.Core.Pictures

open System
open SkiaSharp

/// Renders scenes to PNG with SkiaSharp. Text uses the embedded DejaVu Sans; characters it lacks come from a
/// system font when the machine has one that covers them, else they show as DejaVu's missing-glyph box.
[<RequireQualifiedAccess>]
module Png =
    let private colour (c: Colour) = SKColor(c.R, c.G, c.B)

    let private drawText
        (canvas: SKCanvas)
        (x: float)
        (y: float)
        (text: string)
        (size: float)
        (fill: Colour)
        (anchor: Anchor)
        (bold: bool)
        =
        let pieces =
            Fonts.runs text
            |> List.map (fun (face, s) ->
                let paint = Fonts.paintOf face size bold
                paint.Color <- colour fill
                paint, s, paint.MeasureText s)
        let width = pieces |> List.sumBy (fun (_, _, w) -> float w)
        let start =
            match anchor with
            | Anchor.Start -> x
            | Anchor.Middle -> x - width / 2.0
            | Anchor.End -> x - width
        let baseline = float32 (Fonts.baseline y size)
        let mutable pen = float32 start
        for paint, s, w in pieces do
            canvas.DrawText(s, pen, baseline, paint)
            pen <- pen + w
            paint.Dispose()

    /// The PNG bytes of a scene drawn at `scale` pixels per unit (2 gives crisp text on high-density screens).
    let render (scale: float) (scene: Scene) : byte[] =
        if not (scale > 0.0) then
            invalidArg (nameof scale) "The PNG scale must be > 0."
        let width, height = int (Math.Ceiling(scene.Width * scale)), int (Math.Ceiling(scene.Height * scale))
        use surface = SKSurface.Create(SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul))
        let canvas = surface.Canvas
        canvas.Clear SKColors.White
        canvas.Scale(float32 scale)
        for shape in scene.Shapes do
            match shape with
            | Shape.Rect(x, y, w, h, fill, stroke) ->
                let rect = SKRect.Create(float32 x, float32 y, float32 w, float32 h)
                use paint = new SKPaint(Color = colour fill, Style = SKPaintStyle.Fill, IsAntialias = false)
                canvas.DrawRect(rect, paint)
                match stroke with
                | Some c ->
                    use border =
                        new SKPaint(
                            Color = colour c,
                            Style = SKPaintStyle.Stroke,
                            StrokeWidth = 1.0f,
                            IsAntialias = true
                        )
                    canvas.DrawRect(rect, border)
                | None -> ()
            | Shape.Text(x, y, text, size, fill, anchor, bold) -> drawText canvas x y text size fill anchor bold
            | Shape.Line(x1, y1, x2, y2, c, w) ->
                use paint =
                    new SKPaint(
                        Color = colour c,
                        Style = SKPaintStyle.Stroke,
                        StrokeWidth = float32 w,
                        IsAntialias = true
                    )
                canvas.DrawLine(float32 x1, float32 y1, float32 x2, float32 y2, paint)
            | Shape.Polyline(points, c, w) ->
                use paint =
                    new SKPaint(
                        Color = colour c,
                        Style = SKPaintStyle.Stroke,
                        StrokeWidth = float32 w,
                        IsAntialias = true,
                        StrokeJoin = SKStrokeJoin.Round
                    )
                use path = new SKPath()
                points
                |> List.iteri (fun i (px, py) ->
                    if i = 0 then
                        path.MoveTo(float32 px, float32 py)
                    else
                        path.LineTo(float32 px, float32 py))
                canvas.DrawPath(path, paint)
            | Shape.Circle(cx, cy, r, fill) ->
                use paint = new SKPaint(Color = colour fill, Style = SKPaintStyle.Fill, IsAntialias = true)
                canvas.DrawCircle(float32 cx, float32 cy, float32 r, paint)
        use image = surface.Snapshot()
        use data = image.Encode(SKEncodedImageFormat.Png, 100)
        data.ToArray()
