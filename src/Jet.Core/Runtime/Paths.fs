namespace Jet.Core

open System
open System.IO

/// What a path argument must name.
[<RequireQualifiedAccess>]
type PathKind =
    | File
    | Directory

/// Saying what is actually wrong with a path argument: missing, the other kind (a file where a folder was asked for),
/// a symbolic link that loops or points nowhere.
[<RequireQualifiedAccess>]
module Paths =

    /// Why a symbolic link at `path` cannot be followed (a loop, or a target that does not exist), if it is one.
    /// (.NET's File.Exists is true for such a link.)
    [<CompiledName("BrokenLink")>]
    let brokenLink (path: string) : string option =
        let info = FileInfo path
        if isNull info.LinkTarget then
            None
        else
            try
                match info.ResolveLinkTarget true with
                | null -> None
                | target when not target.Exists ->
                    Some(sprintf "is a symbolic link to %s, which does not exist" target.FullName)
                | _ -> None
            with :? IOException as e ->
                Some(
                    sprintf "is a symbolic link that cannot be followed (%s; a loop of links?)" (e.Message.TrimEnd '.')
                )

    /// What is wrong with `path` as a `kind`, as the end of a sentence ("is a file, not a directory"), or None when
    /// it is one.
    [<CompiledName("Problem")>]
    let problem (kind: PathKind) (path: string) : string option =
        match brokenLink path, kind with
        | Some why, _ -> Some why
        | None, PathKind.Directory when Directory.Exists path -> None
        | None, PathKind.File when File.Exists path -> None
        | None, PathKind.Directory when File.Exists path -> Some "is a file, not a directory"
        | None, PathKind.File when Directory.Exists path -> Some "is a directory, not a file"
        | None, _ -> Some "does not exist"
