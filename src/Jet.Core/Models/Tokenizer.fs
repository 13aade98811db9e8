namespace Jet.Core.Models

open System
open System.Text
open Jet.Core

/// Turns text into token ids and back. Implementations: the toy's character tokenizer here, and the
/// Hugging Face tokenizers of real checkpoints (through Microsoft.ML.Tokenizers).
type ITokenizer =
    /// The token ids of a text (with the model's beginning-of-sequence token where it adds one).
    abstract Encode: text: string -> int[]
    /// The text of a sequence of ids.
    abstract Decode: ids: int[] -> string
    /// A readable rendering of one token, for tables (for example "␣world" or "<bos>").
    abstract Piece: id: int -> string
    /// The number of ids the tokenizer knows.
    abstract VocabSize: int

/// Rendering token text for terminals and tables: every character that would move the cursor, ring the bell, start
/// an escape sequence or reorder text is written visibly, the same way everywhere.
[<RequireQualifiedAccess>]
module Printable =
    /// The visible form of one control or format character: \n, \r, \t; <0xNN> (the byte-token notation of
    /// tokenizers) for the other C0 controls and DEL; <U+NNNN> for C1 controls, bidirectional overrides and other
    /// invisible format characters.
    let private escapeChar (c: char) =
        match c with
        | '\n' -> "\\n"
        | '\r' -> "\\r"
        | '\t' -> "\\t"
        | c when c < ' ' || c = '\u007F' -> sprintf "<0x%02X>" (int c)
        | c -> sprintf "<U+%04X>" (int c)

    /// True for a character `escape` rewrites.
    let private needsEscape (c: char) =
        Char.IsControl c
        || (Globalization.CharUnicodeInfo.GetUnicodeCategory c = Globalization.UnicodeCategory.Format
            && c <> '\u200D') // the zero-width joiner holds emoji sequences together

    /// `text` with its control and format characters written visibly (see `escapeChar`); other text unchanged.
    /// Idempotent: the result has no character it would rewrite.
    [<CompiledName("Escape")>]
    let escape (text: string) =
        if isNull text || not (text |> Seq.exists needsEscape) then
            text
        else
            let sb = StringBuilder()
            for c in text do
                if needsEscape c then
                    sb.Append(escapeChar c) |> ignore
                else
                    sb.Append c |> ignore
            sb.ToString()

    /// A token's text as a piece: spaces as ␣, then `escape`.
    [<CompiledName("Piece")>]
    let piece (text: string) = escape (text.Replace(" ", "␣"))

/// The toy network's tokenizer: one token per character. Ids 0..94 are the printable ASCII characters
/// ' '..'~', 95 is a newline, 96 <bos>, 97 <eos>, 98 <pad>, 99 <unk> (any other character).
[<Sealed>]
type CharTokenizer() =
    static let specials = [| "\n"; "<bos>"; "<eos>"; "<pad>"; "<unk>" |]

    static member Instance = CharTokenizer()

    interface ITokenizer with
        member _.Encode(text) =
            if isNull text then
                raise (MissingArgumentException "The text is null.")
            text
            |> Seq.map (fun c ->
                if c >= ' ' && c <= '~' then int c - 32
                elif c = '\n' then 95
                else 99)
            |> Array.ofSeq

        member this.Decode(ids) =
            let sb = StringBuilder()
            for id in ids do
                if id >= 0 && id < 95 then
                    sb.Append(char (id + 32)) |> ignore
                elif id = 95 then
                    sb.Append('\n') |> ignore
                elif id > 95 && id < 100 then
                    sb.Append(specials.[id - 95]) |> ignore
                else
                    raise (IndexRangeException(sprintf "Token id %d is outside the toy vocabulary 0..99." id))
            sb.ToString()

        member _.Piece(id) =
            if id = 0 then
                "␣"
            elif id > 0 && id < 95 then
                string (char (id + 32))
            elif id = 95 then
                "\\n"
            elif id > 95 && id < 100 then
                specials.[id - 95]
            else
                raise (IndexRangeException(sprintf "Token id %d is outside the toy vocabulary 0..99." id))

        member _.VocabSize = 100
