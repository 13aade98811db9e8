namespace Jet.Core.Models

open System
open System.IO
open System.Text.Json
open Jet.Core

/// A Hugging Face `config.json`, read with typed accessors whose errors name the file, the key and what is valid.
/// A key holding JSON null counts as absent (Hugging Face writes `"n_inner": null` for "use the default").
[<Sealed>]
type HfConfig(path: string, root: JsonElement) =
    let fail what = raise (CheckpointException(sprintf "%s: %s" path what))

    let describe (v: JsonElement) =
        let text = v.GetRawText()
        if text.Length > 40 then
            text.Substring(0, 40) + "…"
        else
            text

    /// The config file, for messages.
    member _.Path = path
    /// The parsed JSON object.
    member _.Root = root

    /// The value of a key, unless it is absent or null.
    member _.TryGet(key: string) : JsonElement option =
        match root.TryGetProperty key with
        | true, v when v.ValueKind <> JsonValueKind.Null -> Some v
        | _ -> None

    /// True when the key is present and not null.
    member c.Has(key: string) = (c.TryGet key).IsSome

    /// An integer, if present; fails when the value is not an integer or lies outside the 32-bit range.
    member c.TryInt(key: string) : int option =
        c.TryGet key
        |> Option.map (fun v ->
            let mutable n = 0
            let mutable x = 0.0
            if v.ValueKind = JsonValueKind.Number && v.TryGetInt32(&n) then
                n
            elif v.ValueKind = JsonValueKind.Number && v.TryGetDouble(&x) && Math.Floor x = x then
                fail (
                    sprintf
                        "'%s' is %s, which is out of range; it must be an integer up to %d."
                        key
                        (describe v)
                        HfConfig.MaxSize
                )
            else
                fail (sprintf "'%s' is %s; it must be an integer." key (describe v)))

    /// A required size: an integer in 1..MaxSize.
    member c.Int(key: string) : int =
        match c.TryInt key with
        | Some n when n > 0 && n <= HfConfig.MaxSize -> n
        | Some n when n > 0 ->
            fail (sprintf "'%s' is %d, which is too large; sizes must lie in 1..%d." key n HfConfig.MaxSize)
        | Some n -> fail (sprintf "'%s' is %d; it must be a positive integer." key n)
        | None -> fail (sprintf "'%s' is missing; this architecture needs it." key)

    /// The largest size (width, heads, layers, vocabulary, positions) a config may give: 2^24, beyond any released
    /// model and small enough that products of two sizes stay within 64-bit tensor shapes.
    static member MaxSize = 1 <<< 24

    /// A finite positive number (a norm epsilon, a rotary base), or the fallback when absent.
    member c.PositiveOr(key: string, fallback: float) : float =
        match c.TryFloat key with
        | Some x when Double.IsFinite x && x > 0.0 -> x
        | Some x -> fail (sprintf "'%s' is %g; it must be a finite number > 0 (for example %g)." key x fallback)
        | None -> fallback

    /// An integer, or the fallback when absent.
    member c.IntOr(key: string, fallback: int) = c.TryInt key |> Option.defaultValue fallback

    /// A number, if present; fails when the value is not a number.
    member c.TryFloat(key: string) : float option =
        c.TryGet key
        |> Option.map (fun v ->
            let mutable x = 0.0
            if v.ValueKind = JsonValueKind.Number && v.TryGetDouble(&x) then
                x
            else
                fail (sprintf "'%s' is %s; it must be a number." key (describe v)))

    /// A number, or the fallback when absent.
    member c.FloatOr(key: string, fallback: float) = c.TryFloat key |> Option.defaultValue fallback

    /// A boolean, if present; fails when the value is not true or false.
    member c.TryBool(key: string) : bool option =
        c.TryGet key
        |> Option.map (fun v ->
            match v.ValueKind with
            | JsonValueKind.True -> true
            | JsonValueKind.False -> false
            | _ -> fail (sprintf "'%s' is %s; it must be true or false." key (describe v)))

    /// A boolean, or the fallback when absent.
    member c.BoolOr(key: string, fallback: bool) = c.TryBool key |> Option.defaultValue fallback

    /// A string, if present; fails when the value is not a string.
    member c.TryString(key: string) : string option =
        c.TryGet key
        |> Option.map (fun v ->
            match v.ValueKind with
            | JsonValueKind.String -> v.GetString()
            | _ -> fail (sprintf "'%s' is %s; it must be a string." key (describe v)))

    /// A string, or the fallback when absent.
    member c.StringOr(key: string, fallback: string) = c.TryString key |> Option.defaultValue fallback

    /// The `architectures` list (empty when absent).
    member c.Architectures: string list =
        match c.TryGet "architectures" with
        | Some v when v.ValueKind = JsonValueKind.Array ->
            [
                for a in v.EnumerateArray() do
                    if a.ValueKind = JsonValueKind.String then
                        a.GetString()
            ]
        | Some v -> fail (sprintf "'architectures' is %s; it must be a list of class names." (describe v))
        | None -> []

    /// `model_type`, if given.
    member c.ModelType = c.TryString "model_type"

    /// Fails with a message naming the key and its valid values.
    member _.Invalid(key: string, problem: string) : 'T = fail (sprintf "'%s' %s" key problem)

/// Reading `config.json`.
[<RequireQualifiedAccess>]
module HfConfig =
    /// The config's file name in a checkpoint directory.
    [<Literal>]
    let FileName = "config.json"

    /// Parses `text` as the config found at `path` (for messages).
    let parse (path: string) (text: string) =
        let document =
            try
                JsonDocument.Parse text
            with :? JsonException as e ->
                let message = sprintf "%s: not valid JSON (%s)." path (e.Message.Split('\n').[0].Trim())
                raise (CheckpointException message)
        if document.RootElement.ValueKind <> JsonValueKind.Object then
            raise (CheckpointException(sprintf "%s: the config must be a JSON object." path))
        // Clone so the config outlives the document.
        HfConfig(path, document.RootElement.Clone())

    /// Reads `config.json` from a checkpoint directory.
    let load (directory: string) =
        let path = Path.Combine(directory, FileName)
        if not (File.Exists path) then
            let message =
                sprintf
                    "%s has no %s; a Hugging Face checkpoint directory needs one (it names the architecture and its sizes)."
                    directory
                    FileName
            raise (CheckpointException message)
        parse path (File.ReadAllText path)
