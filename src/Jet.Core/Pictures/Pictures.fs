namespace Jet.Core.Pictures

open System.IO
open Jet.Core

/// The file formats pictures can be written in.
[<RequireQualifiedAccess>]
type PictureFormat =
    | Png
    | Svg

/// Writing scenes to files.
[<RequireQualifiedAccess>]
module Pictures =
    /// PNG pixels per scene unit: 2 keeps text crisp on high-density screens.
    [<Literal>]
    let PngScale = 2.0

    /// The format a file name asks for, by its extension (.png or .svg).
    [<CompiledName("FormatOf")>]
    let formatOf (path: string) =
        match Path.GetExtension(path: string).ToLowerInvariant() with
        | ".png" -> PictureFormat.Png
        | ".svg" -> PictureFormat.Svg
        | other ->
            let shown = if other = "" then "no extension" else other
            raise (
                InvalidPlanException(
                    sprintf "Cannot write a picture to %s (%s); the file name must end in .png or .svg." path shown
                )
            )

    /// The bytes of a scene in a format (PNG at `PngScale` pixels per unit, or UTF-8 SVG).
    [<CompiledName("Encode")>]
    let encode (format: PictureFormat) (scene: Scene) : byte[] =
        match format with
        | PictureFormat.Png -> Png.render PngScale scene
        | PictureFormat.Svg -> System.Text.Encoding.UTF8.GetBytes(Svg.render scene)

    /// Writes a scene to `path`, PNG or SVG by the extension; creates the folder if needed.
    [<CompiledName("Save")>]
    let save (path: string) (scene: Scene) =
        let format = formatOf path
        let folder = Path.GetDirectoryName(Path.GetFullPath path)
        if not (Directory.Exists folder) then
            Directory.CreateDirectory folder |> ignore
        File.WriteAllBytes(path, encode format scene)
