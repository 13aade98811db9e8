namespace Jet.Core.Pictures

open System
open System.Collections.Generic
open SkiaSharp
open Jet.Core

/// The typeface pictures are drawn and measured with: DejaVu Sans, embedded in Jet.Core, so pictures look
/// the same on machines without any system font.
[<RequireQualifiedAccess>]
module Fonts =
    /// The family name SVG files ask for (with fallbacks for viewers that lack it).
    let svgFamily = "'DejaVu Sans', Verdana, 'Bitstream Vera Sans', sans-serif"

    // Capital letters' vertical middle sits about 0.36 em above the baseline in DejaVu Sans.
    let private middleToBaseline = 0.36

    let private embedded =
        lazy
            (let assembly = typeof<Colour>.Assembly
             use stream = assembly.GetManifestResourceStream "Jet.Core.Pictures.DejaVuSans.ttf"
             if isNull stream then
                 raise (
                     JetException
                         "The embedded font Jet.Core.Pictures.DejaVuSans.ttf is missing from Jet.Core.dll; rebuild the library."
                 )
             use copy = new IO.MemoryStream()
             stream.CopyTo copy
             use data = SKData.CreateCopy(copy.ToArray())
             let typeface = SKTypeface.FromData data
             if isNull typeface then
                 raise (
                     JetException
                         "SkiaSharp could not read the embedded DejaVu Sans font; PNG pictures need it to draw text."
                 )
             typeface)

    /// The embedded typeface.
    let typeface () = embedded.Force()

    /// A Skia text paint of a typeface (bold is synthesised).
    let paintOf (face: SKTypeface) (size: float) (bold: bool) =
        new SKPaint(
            Typeface = face,
            TextSize = float32 size,
            FakeBoldText = bold,
            IsAntialias = true,
            SubpixelText = true
        )

    let private fallbacks = Dictionary<int, SKTypeface>()

    // The typeface for one character: the embedded one when it covers the character, else a system font that
    // does (when the machine has one), else the embedded one (which draws its missing-glyph box).
    let private typefaceFor (codepoint: int) =
        let primary = typeface ()
        if primary.ContainsGlyph codepoint then
            primary
        else
            lock fallbacks (fun () ->
                match fallbacks.TryGetValue codepoint with
                | true, t -> t
                | _ ->
                    let matched =
                        try
                            SKFontManager.Default.MatchCharacter codepoint
                        with _ ->
                            null
                    let chosen = if isNull matched then primary else matched
                    fallbacks.[codepoint] <- chosen
                    chosen)

    /// `text` cut into runs of consecutive characters that share a typeface.
    let runs (text: string) : (SKTypeface * string) list =
        let result = ResizeArray<SKTypeface * string>()
        let current = Text.StringBuilder()
        let mutable face: SKTypeface = null
        for rune in text.EnumerateRunes() do
            let t = typefaceFor rune.Value
            if not (obj.ReferenceEquals(t, face)) && current.Length > 0 then
                result.Add((face, current.ToString()))
                current.Clear() |> ignore
            face <- t
            current.Append(rune.ToString()) |> ignore
        if current.Length > 0 then
            result.Add((face, current.ToString()))
        List.ofSeq result

    /// The baseline of text whose capital letters are centred at y.
    let baseline (y: float) (size: float) = y + middleToBaseline * size

    /// The advance width of `text` in picture units.
    let measure (text: string) (size: float) (bold: bool) =
        runs text
        |> List.sumBy (fun (face, s) ->
            use paint = paintOf face size bold
            float (paint.MeasureText s))

    /// `text` shortened with "…" so it is at most `width` wide.
    let fit (text: string) (size: float) (bold: bool) (width: float) =
        if measure text size bold <= width then
            text
        else
            let runes = text.EnumerateRunes() |> Seq.map string |> Array.ofSeq
            let rec shorten n =
                let candidate = String.Join("", runes.[.. n - 1]) + "…"
                if n <= 1 || measure candidate size bold <= width then
                    candidate
                else
                    shorten (n - 1)
            shorten (runes.Length - 1)
