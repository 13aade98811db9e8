namespace Jet.Core.Pictures

open System
open Jet.Core
open Jet.Core.Apps

/// The picture of a path search: residual layers as columns (Enc first, the decoder U last), one row per path found,
/// each path a line through the columns of the layers it uses, as thick as its |contribution| (red when it raises
/// the target, blue when it lowers it), with its contribution and cumulative share at the right.
[<RequireQualifiedAccess>]
module PathFigure =
    let private margin = 16.0
    let private textSize = 11.0
    let private subtitle =
        "columns: residual layers · one row per path, a line through the layers it uses (dipping under those it skips) · thickness ∝ |contribution| · red raises the target, blue lowers it"

    let private text x y s size colour anchor bold = Shape.Text(x, y, s, size, colour, anchor, bold)

    let private layerOf (step: PathStep) =
        match step with
        | PathStep.Layer l
        | PathStep.MlpBranch l
        | PathStep.Head(l, _) -> l

    /// A scene of a path search result; `title` heads it (for example the model and the prompt).
    [<CompiledName("Scene")>]
    let scene (title: string) (result: PathSearchResult) : Scene =
        let layers = result.LayerNames.Length
        let column = 44.0
        let left = margin + 8.0
        let x (c: int) = left + column * (float c + 0.5)
        let top = margin + 64.0
        let row = 26.0
        let largest = result.Paths |> List.fold (fun m p -> max m (abs p.Contribution)) 0.0
        let largest = if largest > 0.0 then largest else 1.0
        let tableLeft = x (layers + 1) + column
        let columns =
            [
                for c in 0 .. layers + 1 ->
                    let name =
                        if c = 0 then "Enc"
                        elif c = layers + 1 then "U"
                        else result.LayerNames.[c - 1]
                    c, name
            ]
        let bottom = top + row * float (max 1 result.Paths.Length)
        let footer =
            sprintf
                "%s = %.4g: paths carry %.4g (constant %.4g); the remainder after these %d paths is %.4g. %s"
                result.TargetName
                result.Target
                result.Carried
                result.Constant
                result.Paths.Length
                result.Remainder
                (if result.Exact then
                     "Exact: no prefix was pruned."
                 else
                     sprintf "Beam search: %d prefixes evaluated of %g paths." result.Evaluated result.TotalPaths)
        let shapes =
            [
                text margin (margin + 8.0) title 15.0 Colour.ink Anchor.Start true
                text margin (margin + 28.0) subtitle 9.0 Colour.grey Anchor.Start false
                for c, name in columns do
                    Shape.Line(x c, top - 8.0, x c, bottom - 8.0, Colour.lightGrey, 1.0)
                    text
                        (x c)
                        (top - 20.0)
                        (Fonts.fit name 9.0 (c = 0 || c = layers + 1) (column - 4.0))
                        9.0
                        Colour.ink
                        Anchor.Middle
                        false
                text tableLeft (top - 20.0) "contribution" 9.0 Colour.ink Anchor.Start true
                text (tableLeft + 84.0) (top - 20.0) "cumulative" 9.0 Colour.ink Anchor.Start true
                text (tableLeft + 160.0) (top - 20.0) "path" 9.0 Colour.ink Anchor.Start true
                for i, p in List.indexed result.Paths do
                    let y = top + row * float i
                    let colour = Colour.diverging (-largest) largest (p.Contribution * 0.8)
                    let width = 1.0 + 7.0 * abs p.Contribution / largest
                    let used = 0 :: (p.Steps |> List.map layerOf) @ [ layers + 1 ]
                    // The line runs through the nodes of the layers it uses and dips below the columns it skips.
                    let points =
                        used
                        |> List.pairwise
                        |> List.collect (fun (a, b) ->
                            if b = a + 1 then
                                [ x a, y ]
                            else
                                [ x a, y; x a + 10.0, y + 8.0; x b - 10.0, y + 8.0 ])
                    Shape.Polyline(points @ [ x (layers + 1), y ], colour, width)
                    for c in used do
                        Shape.Circle(x c, y, 2.0 + width / 2.0, colour)
                    text tableLeft y (sprintf "%+.4g" p.Contribution) textSize Colour.ink Anchor.Start false
                    text
                        (tableLeft + 84.0)
                        y
                        (sprintf "%.1f%%" (100.0 * p.CumulativeShare))
                        textSize
                        Colour.grey
                        Anchor.Start
                        false
                    text (tableLeft + 160.0) y p.Notation textSize Colour.ink Anchor.Start false
                text margin (bottom + 8.0) footer 9.0 Colour.grey Anchor.Start false
            ]
        let widest =
            result.Paths
            |> List.fold (fun m p -> max m (Fonts.measure p.Notation textSize false)) (Fonts.measure "path" 9.0 true)
        {
            Width =
                Math.Ceiling(
                    List.max
                        [
                            tableLeft + 160.0 + widest + margin
                            margin * 2.0 + Fonts.measure subtitle 9.0 false
                            margin * 2.0 + Fonts.measure footer 9.0 false
                        ]
                )
            Height = Math.Ceiling(bottom + 28.0)
            Shapes = shapes
        }
