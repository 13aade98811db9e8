/// Pictures: valid PNG and SVG files of the expected size that show what the lens and bigram tables hold.
module Jet.Core.Tests.PictureTests

open System
open System.IO
open System.Xml.Linq
open Expecto
open SkiaSharp
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps
open Jet.Core.Pictures
open Jet.Core.Tests.TestKit

let private model = lazy (Model.toy 0 16 torch.float32)
let private prompt = "jet lens!"

let private pngSignature = [| 137uy; 80uy; 78uy; 71uy; 13uy; 10uy; 26uy; 10uy |]

let private decode (bytes: byte[]) =
    Expect.equal bytes.[0..7] pngSignature "PNG signature"
    let bitmap = SKBitmap.Decode bytes
    Expect.isNotNull bitmap "SkiaSharp decodes the PNG"
    bitmap

// Dark pixels inside a box of scene units (text and dark cells draw them; a blank area has none).
let private darkPixels (bitmap: SKBitmap) (x0: float) (y0: float) (x1: float) (y1: float) =
    let s = Pictures.PngScale
    seq {
        for y in int (y0 * s) .. int (y1 * s) - 1 do
            for x in int (x0 * s) .. int (x1 * s) - 1 do
                let c = bitmap.GetPixel(x, y)
                if int c.Red + int c.Green + int c.Blue < 200 then
                    yield 1
    }
    |> Seq.length

let private checkPng (scene: Scene) =
    let bitmap = decode (Pictures.encode PictureFormat.Png scene)
    Expect.equal bitmap.Width (int (Math.Ceiling(scene.Width * Pictures.PngScale))) "width = scene width × scale"
    Expect.equal bitmap.Height (int (Math.Ceiling(scene.Height * Pictures.PngScale))) "height = scene height × scale"
    bitmap

let private checkSvg (scene: Scene) =
    let svg = XDocument.Parse(Text.Encoding.UTF8.GetString(Pictures.encode PictureFormat.Svg scene))
    let root = svg.Root
    Expect.equal root.Name.LocalName "svg" "root element"
    Expect.equal (float (root.Attribute(XName.Get "width").Value)) scene.Width "width"
    Expect.equal (float (root.Attribute(XName.Get "height").Value)) scene.Height "height"
    [ for t in root.Descendants(XName.Get("text", "http://www.w3.org/2000/svg")) -> t.Value ]

let private lensResult () =
    let m = model.Force()
    IterativeLens.run m.Net (Model.encode m prompt) { LensOptions.Default with Order = 1 }

let tests =
    testList
        "pictures"
        [
            test "the embedded font is DejaVu Sans and measures text" {
                Expect.equal (Fonts.typeface().FamilyName) "DejaVu Sans" "embedded typeface"
                Expect.isGreaterThan
                    (Fonts.measure "wide text" 11.0 false)
                    (Fonts.measure "w" 11.0 false)
                    "longer text is wider"
                Expect.isLessThanOrEqual
                    (Fonts.measure (Fonts.fit "a very long token indeed" 11.0 false 40.0) 11.0 false)
                    40.0
                    "fit shortens to the width"
            }

            test "lens table: PNG of the scene's size with text drawn in the header; SVG lists tokens and the model row" {
                use result = lensResult ()
                let m = model.Force()
                let scene = Figures.lens (Readings.lens m.Tokenizer result 1) 0
                let bitmap = checkPng scene
                // The title occupies the top-left corner; text must have been drawn there without system fonts.
                Expect.isGreaterThan (darkPixels bitmap 16.0 10.0 200.0 34.0) 50 "the title is drawn"
                let texts = checkSvg scene
                for piece in [ "j"; "e"; "t"; "␣"; "l"; "n"; "s"; "!" ] do
                    Expect.contains texts piece (sprintf "column %s" piece)
                Expect.contains texts "model" "the model's row"
                Expect.contains texts "h₀ (Enc)" "the first stream's row"
                let top1 = LogitMetrics.top m.Tokenizer 1 result.Logits.[0L] |> Array.map (fun r -> r.[0].Token)
                for token in top1 do
                    Expect.contains texts token "the model's top-1 tokens are cells"
            }

            test "joint lens table and metric plot render in both formats" {
                let m = model.Force()
                use joint =
                    JointLens.fit m.Net (Model.encode m prompt) { JointLensOptions.Default with Iterations = 20 }
                let scene = Figures.jointLens (Readings.jointLens m.Tokenizer joint 1) 0
                checkPng scene |> ignore
                let texts = checkSvg scene
                Expect.contains texts "joint lens" "combined row"
                Expect.isTrue
                    (texts |> List.exists (fun t -> t.StartsWith "(h₁ − Enc)"))
                    "centre rows carry their centre"
                use result = lensResult ()
                let plot = Figures.lensMetrics (Readings.lens m.Tokenizer result 1) 0
                checkPng plot |> ignore
                let plotTexts = checkSvg plot
                for label in [ "cosine of logits"; "top-1 agreement"; "top-5 overlap"; "KL divergence"; "h₀"; "h₂" ] do
                    Expect.contains plotTexts label label
            }

            test "bigram table shows every row up to the limit and says how many are left out" {
                let m = model.Force()
                let rows =
                    Bigrams.globalTopK m.Net Readouts.embedding 12 SweepOptions.Default |> Bigrams.decode m.Tokenizer
                let scene = Figures.bigrams "title" "subtitle" ScoreSpace.Probability 10 rows
                checkPng scene |> ignore
                let texts = checkSvg scene
                for r in Array.truncate 10 rows do
                    Expect.contains texts (sprintf "%.2f%%" (100.0 * r.Score)) "score cell"
                Expect.contains texts "… 2 more rows not shown" "truncation note"
                let titled =
                    checkSvg (
                        Figures.bigramTable
                            (Readouts.describe m.Net (Readouts.mlpPath m.Net 1))
                            true
                            12
                            ScoreSpace.Probability
                            true
                            10
                            rows
                    )
                Expect.contains titled "Jet bigrams: U·LN(γ₁(Emb)) (emb > block1)" "title names the path"
                Expect.contains
                    titled
                    "global top 12, probability, diagonal dropped"
                    "subtitle says how the rows were ranked"
            }

            test "files: the extension picks the format; other extensions fail clearly" {
                use result = lensResult ()
                let m = model.Force()
                let dir = Path.Combine(Path.GetTempPath(), "jetdsl-pictures-" + Guid.NewGuid().ToString("N"))
                let scene = Figures.lens (Readings.lens m.Tokenizer result 1) 0
                Pictures.save (Path.Combine(dir, "lens.png")) scene
                Pictures.save (Path.Combine(dir, "lens.SVG")) scene
                Expect.equal (File.ReadAllBytes(Path.Combine(dir, "lens.png")).[0..7]) pngSignature "PNG file"
                Expect.stringStarts (File.ReadAllText(Path.Combine(dir, "lens.SVG"))) "<?xml" "SVG file"
                Expect.throwsWith<InvalidPlanException>
                    [ ".png or .svg"; ".jpg" ]
                    (fun () -> Pictures.save (Path.Combine(dir, "lens.jpg")) scene)
                    "jpg"
                Directory.Delete(dir, true)
            }

            test "the diverging scale is white at 0, blue below and red above, with separate slopes" {
                let at = Colour.diverging -2.0 10.0
                Expect.equal (at 0.0) (Colour.rgb 247 247 247) "white at 0"
                Expect.equal (at -2.0) (Colour.rgb 5 48 97) "darkest blue at the low end"
                Expect.equal (at 10.0) (Colour.rgb 103 0 31) "darkest red at the high end"
                Expect.equal (at -1.0) (at 5.0 |> fun _ -> at -1.0) "stable"
                Expect.isGreaterThan (int (at -1.0).B) (int (at -1.0).R) "negative is blue"
                Expect.isGreaterThan (int (at 5.0).R) (int (at 5.0).B) "positive is red"
                Expect.equal
                    (at -1.0).B
                    (Colour.diverging -4.0 10.0 -2.0).B
                    "half of each side's range maps to the same shade"
            }
        ]

[<Tests>]
let pictureTests = tests
