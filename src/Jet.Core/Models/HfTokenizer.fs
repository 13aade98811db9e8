namespace Jet.Core.Models

open System
open System.Collections.Generic
open System.IO
open System.Text
open System.Text.Json
open System.Text.RegularExpressions
open Google.Protobuf
open Microsoft.ML.Tokenizers
open Jet.Core

/// The two tokenizer styles of the supported families.
[<RequireQualifiedAccess>]
type TokenizerStyle =
    /// GPT-2's byte-level BPE (GPT-2, GPT-Neo, Pythia, Llama 3): bytes mapped to printable characters, "Ġ" for space.
    | ByteLevel
    /// SentencePiece BPE with byte fallback (Llama 1/2, Mistral, Gemma): "▁" for space, "<0x0A>" for raw bytes.
    | SentencePiece

/// Hugging Face's `ignore_merges` (Llama 3's tokenizer.json): a pre-token whose byte-level string is a vocabulary
/// entry becomes that entry without running the merges (about 600 Llama 3 tokens cannot be reached by its merges).
/// The normalizer and pre-tokenizer (special tokens included) are the ones the BPE tokenizer was built with.
type WholeWords =
    {
        Normalizer: Normalizer option
        PreTokenizer: PreTokenizer
        Vocab: IReadOnlyDictionary<string, int>
        Specials: IReadOnlyDictionary<string, int>
    }

/// A Hugging Face tokenizer backed by Microsoft.ML.Tokenizers. `tokens` maps every id to its vocabulary string.
[<Sealed>]
type HfTokenizer
    (
        inner: Tokenizer,
        style: TokenizerStyle,
        tokens: string[],
        special: HashSet<int>,
        prefixBos: int option,
        addPrefixSpace: bool,
        sentencePieceModel: byte[] option,
        wholeWords: WholeWords option
    ) =
    // GPT-2's bytes_to_unicode: the printable stand-in character of each byte, and its inverse.
    static let charOfByte =
        let printable = [ yield! [ int '!' .. int '~' ]; yield! [ 0xA1..0xAC ]; yield! [ 0xAE..0xFF ] ]
        let table = Array.zeroCreate<char> 256
        for b in printable do
            table.[b] <- char b
        let mutable extra = 0
        for b in 0..255 do
            if not (List.contains b printable) then
                table.[b] <- char (256 + extra)
                extra <- extra + 1
        table

    static let byteOfChar =
        let map = Dictionary<char, byte>()
        charOfByte |> Array.iteri (fun b c -> map.[c] <- byte b)
        map

    /// The ids of a text under `ignore_merges`: pre-tokens found whole in the vocabulary (or special) are looked
    /// up; the others go through the BPE merges alone (no second normalisation or pre-tokenization).
    static let encodeWholeWords (inner: Tokenizer) (w: WholeWords) (text: string) =
        let text =
            match w.Normalizer with
            | Some n -> n.Normalize text
            | None -> text
        let ids = ResizeArray<int>()
        for struct (offset, length) in w.PreTokenizer.PreTokenize text do
            let piece = text.Substring(offset, length)
            match w.Specials.TryGetValue piece with
            | true, id -> ids.Add id
            | _ ->
                let mapped = String(Encoding.UTF8.GetBytes piece |> Array.map (fun b -> charOfByte.[int b]))
                match w.Vocab.TryGetValue mapped with
                | true, id -> ids.Add id
                | _ -> ids.AddRange(inner.EncodeToIds(piece, false, false))
        ids.ToArray()

    static let byteToken = Regex(@"^<0x([0-9A-Fa-f]{2})>$")

    let checkId (id: int) =
        if id < 0 || id >= tokens.Length then
            raise (
                IndexRangeException(
                    sprintf "Token id %d is outside the tokenizer's vocabulary 0..%d." id (tokens.Length - 1)
                )
            )

    /// The raw bytes a vocabulary string stands for (None for special tokens and unmappable strings).
    let bytesOf (id: int) : byte[] option =
        let raw = tokens.[id]
        if special.Contains id || isNull raw then
            None
        else
            match style with
            | TokenizerStyle.ByteLevel ->
                if raw |> Seq.forall byteOfChar.ContainsKey then
                    Some(raw |> Seq.map (fun c -> byteOfChar.[c]) |> Array.ofSeq)
                else
                    None
            | TokenizerStyle.SentencePiece ->
                let m = byteToken.Match raw
                if m.Success then
                    Some [| Convert.ToByte(m.Groups.[1].Value, 16) |]
                else
                    Some(Encoding.UTF8.GetBytes(raw.Replace('▁', ' ')))

    static let strictUtf8 = UTF8Encoding(false, true)

    static let visible (text: string) = Printable.piece text

    /// Byte-level or SentencePiece.
    member _.Style = style
    /// The Microsoft.ML.Tokenizers tokenizer underneath.
    member _.Inner = inner

    /// The SentencePiece model (sentencepiece_model.proto bytes) converted from a tokenizer.json, if this tokenizer
    /// was built that way; saved as `tokenizer.model` it loads to the same tokenizer.
    member _.SentencePieceModel = sentencePieceModel

    /// The vocabulary string of an id, exactly as in the tokenizer files ("Ġworld", "▁world", "<0x0A>").
    member _.Token(id: int) =
        checkId id
        tokens.[id]

    /// The ids of a text, with the beginning-of-sequence token where the tokenizer adds one.
    member _.Encode(text: string) : int[] =
        if isNull text then
            raise (MissingArgumentException "The text to tokenize is null.")
        let text =
            if addPrefixSpace && not (text.StartsWith " ") then
                " " + text
            else
                text
        let ids =
            match wholeWords with
            | Some w -> encodeWholeWords inner w text
            | None -> inner.EncodeToIds text |> Array.ofSeq
        match prefixBos with
        | Some bos -> Array.append [| bos |] ids
        | None -> ids

    /// The vocabulary strings of a text's tokens, as Hugging Face's `tokenize` lists them.
    member t.Tokens(text: string) = t.Encode text |> Array.map (fun id -> tokens.[id])

    interface ITokenizer with
        member t.Encode(text) = t.Encode text

        member _.Decode(ids) =
            if isNull ids then
                raise (MissingArgumentException "The ids to decode are null.")
            Array.iter checkId ids
            match inner with
            | :? BpeTokenizer as bpe -> bpe.Decode(ids, true)
            | :? SentencePieceTokenizer as sp -> sp.Decode(ids, true)
            | other -> other.Decode ids

        member _.Piece(id) =
            checkId id
            match bytesOf id with
            | None ->
                if isNull tokens.[id] then
                    sprintf "<unused %d>" id
                else
                    tokens.[id]
            | Some bytes ->
                try
                    visible (strictUtf8.GetString bytes)
                with :? DecoderFallbackException ->
                    // Part of a multi-byte character: show the bytes that are not plain ASCII.
                    bytes
                    |> Array.map (fun b ->
                        if b >= 0x20uy && b < 0x7Fuy then
                            string (char b)
                        else
                            sprintf "<0x%02X>" b)
                    |> String.concat ""
                    |> visible

        member _.VocabSize = tokens.Length

/// Unicode normalisation and lower-casing, as a tokenizer.json normalizer asks for (GPT-NeoX's tokenizer uses NFC).
[<Sealed>]
type TextNormalizer(form: NormalizationForm option, lowercase: bool) =
    inherit Normalizer()

    let apply (text: string) =
        let text =
            match form with
            | Some f -> text.Normalize f
            | None -> text
        if lowercase then text.ToLowerInvariant() else text

    override _.Normalize(text: string) = apply text
    override _.Normalize(text: ReadOnlySpan<char>) = apply (String(text))

/// Stands in for the tokenizer of a checkpoint that ships none: the network still loads; encoding fails clearly.
[<Sealed>]
type UnavailableTokenizer(directory: string, vocab: int) =
    let fail () : 'T =
        let message =
            sprintf
                "%s has no tokenizer files (tokenizer.json, vocab.json + merges.txt, or tokenizer.model); copy them from the model's repository."
                directory
        raise (CheckpointException message)

    interface ITokenizer with
        member _.Encode(_) = fail ()
        member _.Decode(_) = fail ()
        member _.Piece(id) = sprintf "#%d" id
        member _.VocabSize = vocab

/// What `tokenizer_config.json` says about special tokens and the beginning-of-sequence token.
type TokenizerSettings =
    {
        AddBos: bool option
        BosToken: string option
        EosToken: string option
        UnkToken: string option
        /// Special tokens declared by `added_tokens_decoder` (content → id).
        Specials: (string * int) list
        AddPrefixSpace: bool option
    }

    static member Empty =
        {
            AddBos = None
            BosToken = None
            EosToken = None
            UnkToken = None
            Specials = []
            AddPrefixSpace = None
        }

/// Loading Hugging Face tokenizers through Microsoft.ML.Tokenizers.
[<RequireQualifiedAccess>]
module HfTokenizer =
    /// GPT-2's pre-tokenization pattern (contractions, letters, digits, other symbols, whitespace runs).
    let gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

    let private fail (path: string) (what: string) : 'T = raise (CheckpointException(sprintf "%s: %s" path what))

    /// A tokenizer JSON file, whose root must be an object (every tokenizer file is one).
    let private parseJson (path: string) =
        let document =
            try
                JsonDocument.Parse(File.ReadAllText path)
            with :? JsonException as e ->
                fail path (sprintf "not valid JSON (%s)." (e.Message.Split('\n').[0].Trim()))
        if document.RootElement.ValueKind <> JsonValueKind.Object then
            let kind = document.RootElement.ValueKind
            document.Dispose()
            fail path (sprintf "the file must hold a JSON object, not %O." kind)
        document

    /// The id of a vocabulary entry "token": id.
    let private integerId (path: string) (p: JsonProperty) =
        let mutable id = 0
        if p.Value.ValueKind = JsonValueKind.Number && p.Value.TryGetInt32(&id) then
            id
        else
            fail path (sprintf "the id of token %A is %s, not an integer." p.Name (p.Value.GetRawText()))

    /// A token given as a string or as {"content": …}.
    let private tokenText (v: JsonElement) =
        match v.ValueKind with
        | JsonValueKind.String -> Some(v.GetString())
        | JsonValueKind.Object ->
            match v.TryGetProperty "content" with
            | true, c when c.ValueKind = JsonValueKind.String -> Some(c.GetString())
            | _ -> None
        | _ -> None

    /// Reads `tokenizer_config.json` (absent: no settings).
    let readSettings (directory: string) : TokenizerSettings =
        let path = Path.Combine(directory, "tokenizer_config.json")
        if not (File.Exists path) then
            TokenizerSettings.Empty
        else
            use document = parseJson path
            let root = document.RootElement
            let get (key: string) =
                match root.TryGetProperty key with
                | true, v when v.ValueKind <> JsonValueKind.Null -> Some v
                | _ -> None
            let flag key =
                get key
                |> Option.bind (fun v ->
                    match v.ValueKind with
                    | JsonValueKind.True -> Some true
                    | JsonValueKind.False -> Some false
                    | _ -> None)
            {
                AddBos = flag "add_bos_token"
                BosToken = get "bos_token" |> Option.bind tokenText
                EosToken = get "eos_token" |> Option.bind tokenText
                UnkToken = get "unk_token" |> Option.bind tokenText
                Specials =
                    match get "added_tokens_decoder" with
                    | Some added when added.ValueKind = JsonValueKind.Object ->
                        [
                            for p in added.EnumerateObject() do
                                match Int32.TryParse p.Name, tokenText p.Value with
                                | (true, id), Some content -> content, id
                                | _ -> ()
                        ]
                    | _ -> []
                AddPrefixSpace = flag "add_prefix_space"
            }

    let private idTable (entries: seq<string * int>) =
        let pairs = Array.ofSeq entries
        let size =
            if pairs.Length = 0 then
                0
            else
                (pairs |> Array.map snd |> Array.max) + 1
        let table: string[] = Array.zeroCreate size
        for token, id in pairs do
            if id >= 0 then
                table.[id] <- token
        table

    /// Byte-level BPE (GPT-2 style) from a vocabulary, merges and special tokens.
    let byteLevel
        (vocab: IReadOnlyDictionary<string, int>)
        (merges: string seq)
        (specials: IReadOnlyDictionary<string, int>)
        (pattern: string)
        (unknown: string option)
        (bos: int option)
        (addPrefixSpace: bool)
        (normalizer: Normalizer option)
        (ignoreMerges: bool)
        =
        let options = BpeOptions(vocab)
        normalizer |> Option.iter (fun n -> options.Normalizer <- n)
        options.Merges <- merges
        options.ByteLevel <- true
        options.SpecialTokens <- specials
        let preTokenizer = RegexPreTokenizer(Regex(pattern, RegexOptions.Compiled), specials)
        options.PreTokenizer <- preTokenizer
        unknown |> Option.filter vocab.ContainsKey |> Option.iter (fun u -> options.UnknownToken <- u)
        let inner = BpeTokenizer.Create options
        let all =
            Seq.append
                (vocab |> Seq.map (fun kv -> kv.Key, kv.Value))
                (specials |> Seq.map (fun kv -> kv.Key, kv.Value))
        let wholeWords =
            if ignoreMerges then
                Some { Normalizer = normalizer; PreTokenizer = preTokenizer; Vocab = vocab; Specials = specials }
            else
                None
        HfTokenizer(
            inner,
            TokenizerStyle.ByteLevel,
            idTable all,
            HashSet(specials.Values),
            bos,
            addPrefixSpace,
            None,
            wholeWords
        )

    let private specialsOf (settings: TokenizerSettings) (vocab: IReadOnlyDictionary<string, int>) =
        let named = [ settings.BosToken; settings.EosToken; settings.UnkToken ] |> List.choose id
        let fromNames =
            named
            |> List.choose (fun n ->
                match vocab.TryGetValue n with
                | true, id -> Some(n, id)
                | _ -> None)
        let defaults =
            if settings = TokenizerSettings.Empty && vocab.ContainsKey "<|endoftext|>" then
                [ "<|endoftext|>", vocab.["<|endoftext|>"] ]
            else
                []
        let d = Dictionary<string, int>()
        for n, id in settings.Specials @ fromNames @ defaults do
            d.[n] <- id
        d :> IReadOnlyDictionary<_, _>

    let private bosId (settings: TokenizerSettings) (vocab: IReadOnlyDictionary<string, int>) (addByDefault: bool) =
        if defaultArg settings.AddBos addByDefault then
            settings.BosToken
            |> Option.bind (fun b ->
                match vocab.TryGetValue b with
                | true, id -> Some id
                | _ -> None)
        else
            None

    /// GPT-2-style `vocab.json` + `merges.txt`.
    let fromVocabAndMerges (vocabPath: string) (mergesPath: string) (settings: TokenizerSettings) =
        let vocab =
            use document = parseJson vocabPath
            if document.RootElement.ValueKind <> JsonValueKind.Object then
                fail vocabPath "the vocabulary must be a JSON object of token → id."
            let d = Dictionary<string, int>()
            for p in document.RootElement.EnumerateObject() do
                d.[p.Name] <- integerId vocabPath p
            d :> IReadOnlyDictionary<_, _>
        let merges =
            File.ReadAllLines mergesPath
            |> Array.filter (fun l -> not (l.StartsWith "#version") && l.Trim() <> "")
        merges
        |> Array.iteri (fun i l ->
            if l.Split(' ').Length <> 2 then
                fail mergesPath (sprintf "line %d (%A) is not a pair of tokens separated by one space." (i + 2) l))
        let specials = specialsOf settings vocab
        byteLevel
            vocab
            merges
            specials
            gpt2Pattern
            settings.UnkToken
            (bosId settings vocab false)
            (defaultArg settings.AddPrefixSpace false)
            None
            false

    // ---- SentencePiece models written from tokenizer.json (Microsoft.ML.Tokenizers reads only the protobuf) ----

    let private message (write: CodedOutputStream -> unit) =
        use stream = new MemoryStream()
        let output = new CodedOutputStream(stream)
        write output
        output.Flush()
        ByteString.CopyFrom(stream.ToArray())

    let private field (o: CodedOutputStream) (number: int) (wire: WireFormat.WireType) = o.WriteTag(number, wire)

    /// A SentencePiece BPE model (sentencepiece_model.proto) equivalent to a Hugging Face BPE tokenizer.json
    /// with byte fallback: each piece's score is minus the rank of the first merge that produces it, so the
    /// highest-scoring merge SentencePiece picks is the lowest-ranked merge Hugging Face picks.
    let sentencePieceModel
        (pieces: string[])
        (mergeRank: IReadOnlyDictionary<string, int>)
        (byteFallback: bool)
        (unk: int)
        (bos: int)
        (eos: int)
        (controls: HashSet<int>)
        (addDummyPrefix: bool)
        : byte[] =
        let mergeCount = mergeRank.Count
        let model =
            message (fun o ->
                pieces
                |> Array.iteri (fun id piece ->
                    let kind, score =
                        if isNull piece then
                            5, 0.0f // UNUSED
                        elif id = unk then
                            2, 0.0f // UNKNOWN
                        elif controls.Contains id then
                            3, 0.0f // CONTROL
                        elif byteFallback && piece.Length = 6 && piece.StartsWith "<0x" && piece.EndsWith ">" then
                            6, 0.0f // BYTE
                        else
                            match mergeRank.TryGetValue piece with
                            | true, rank -> 1, float32 (-rank)
                            | _ -> 1, float32 (-(mergeCount + id))
                    let text = if isNull piece then sprintf "<unused%d>" id else piece
                    let encoded =
                        message (fun p ->
                            field p 1 WireFormat.WireType.LengthDelimited
                            p.WriteString text
                            field p 2 WireFormat.WireType.Fixed32
                            p.WriteFloat score
                            field p 3 WireFormat.WireType.Varint
                            p.WriteEnum kind)
                    field o 1 WireFormat.WireType.LengthDelimited
                    o.WriteBytes encoded)
                let trainer =
                    message (fun t ->
                        field t 3 WireFormat.WireType.Varint
                        t.WriteEnum 2 // model_type = BPE
                        field t 35 WireFormat.WireType.Varint
                        t.WriteBool byteFallback
                        for number, value in [ 40, unk; 41, bos; 42, eos; 43, -1 ] do
                            field t number WireFormat.WireType.Varint
                            t.WriteInt32 value)
                field o 2 WireFormat.WireType.LengthDelimited
                o.WriteBytes trainer
                let normalizer =
                    message (fun n ->
                        field n 1 WireFormat.WireType.LengthDelimited
                        n.WriteString "identity"
                        field n 3 WireFormat.WireType.Varint
                        n.WriteBool addDummyPrefix
                        field n 4 WireFormat.WireType.Varint
                        n.WriteBool false // remove_extra_whitespaces: Hugging Face keeps every space
                        field n 5 WireFormat.WireType.Varint
                        n.WriteBool true)
                field o 3 WireFormat.WireType.LengthDelimited
                o.WriteBytes normalizer)
        model.ToByteArray()

    /// A SentencePiece `tokenizer.model`.
    let fromSentencePieceModel (path: string) (settings: TokenizerSettings) (addBosByDefault: bool) =
        let inner =
            try
                use stream = File.OpenRead path
                SentencePieceTokenizer.Create(stream, defaultArg settings.AddBos addBosByDefault, false, null)
            with
            | :? JetException -> reraise ()
            | e -> fail path (sprintf "not a SentencePiece model Microsoft.ML.Tokenizers can read (%s)." e.Message)
        let vocab = inner.Vocabulary |> Seq.map (fun kv -> kv.Key, kv.Value)
        let specials =
            HashSet([ inner.BeginningOfSentenceId; inner.EndOfSentenceId ] |> List.filter (fun id -> id >= 0))
        HfTokenizer(inner, TokenizerStyle.SentencePiece, idTable vocab, specials, None, false, None, None)

    // ---- tokenizer.json ----

    /// Every object in a (possibly nested Sequence) normalizer / pre-tokenizer / decoder description.
    let rec private components (v: JsonElement) : JsonElement list =
        match v.ValueKind with
        | JsonValueKind.Object ->
            let nested =
                [ "normalizers"; "pretokenizers"; "decoders"; "processors" ]
                |> List.collect (fun k ->
                    match v.TryGetProperty k with
                    | true, a when a.ValueKind = JsonValueKind.Array ->
                        [
                            for x in a.EnumerateArray() do
                                yield! components x
                        ]
                    | _ -> [])
            v :: nested
        | _ -> []

    let private typeOf (v: JsonElement) =
        match v.TryGetProperty "type" with
        | true, t when t.ValueKind = JsonValueKind.String -> t.GetString()
        | _ -> ""

    let private stringProperty (v: JsonElement) (key: string) =
        match v.TryGetProperty key with
        | true, s when s.ValueKind = JsonValueKind.String -> Some(s.GetString())
        | _ -> None

    /// A Hugging Face `tokenizer.json` with a BPE model: byte-level (GPT-2, Pythia, Llama 3) or
    /// SentencePiece-style with byte fallback (Llama 2, Mistral, Gemma).
    let fromTokenizerJson (path: string) (settings: TokenizerSettings) =
        use document = parseJson path
        let root = document.RootElement
        let part (key: string) =
            match root.TryGetProperty key with
            | true, v when v.ValueKind = JsonValueKind.Object -> components v
            | _ -> []
        let model =
            match root.TryGetProperty "model" with
            | true, m when m.ValueKind = JsonValueKind.Object -> m
            | _ -> fail path "it has no \"model\" object."
        if typeOf model <> "BPE" then
            fail
                path
                (sprintf
                    "its model is %s; JetDsl reads BPE tokenizers (GPT-2, Pythia, Llama, Mistral, Gemma)."
                    (match typeOf model with
                     | "" -> "untyped"
                     | t -> t))
        let vocab = Dictionary<string, int>()
        match model.TryGetProperty "vocab" with
        | true, v when v.ValueKind = JsonValueKind.Object ->
            for p in v.EnumerateObject() do
                vocab.[p.Name] <- integerId path p
        | _ -> fail path "its BPE model has no \"vocab\" object."
        let merges =
            match model.TryGetProperty "merges" with
            | true, m when m.ValueKind = JsonValueKind.Array ->
                [|
                    for x in m.EnumerateArray() ->
                        match x.ValueKind with
                        | JsonValueKind.String -> x.GetString()
                        // Newer files write each merge as a pair ["a", "b"].
                        | JsonValueKind.Array when
                            x.GetArrayLength() = 2
                            && x.[0].ValueKind = JsonValueKind.String
                            && x.[1].ValueKind = JsonValueKind.String
                            ->
                            x.[0].GetString() + " " + x.[1].GetString()
                        | _ -> fail path (sprintf "merge %s is neither \"a b\" nor [\"a\", \"b\"]." (x.GetRawText()))
                |]
            | _ -> fail path "its BPE model has no \"merges\" list."
        let added =
            match root.TryGetProperty "added_tokens" with
            | true, a when a.ValueKind = JsonValueKind.Array ->
                [
                    for t in a.EnumerateArray() do
                        match t.TryGetProperty "id", stringProperty t "content" with
                        | (true, id), Some content ->
                            let mutable value = 0
                            if not (id.ValueKind = JsonValueKind.Number && id.TryGetInt32(&value)) then
                                fail
                                    path
                                    (sprintf "added token %A has id %s, not an integer." content (id.GetRawText()))
                            let special =
                                match t.TryGetProperty "special" with
                                | true, s -> s.ValueKind = JsonValueKind.True
                                | _ -> false
                            content, value, special
                        | _ -> ()
                ]
            | _ -> []
        let all = Dictionary<string, int>(vocab)
        for content, id, _ in added do
            all.[content] <- id
        let find (token: string option) =
            token
            |> Option.bind (fun t ->
                match all.TryGetValue t with
                | true, id -> Some id
                | _ -> None)
        // The beginning-of-sequence token the post-processor puts first, if any.
        let templateBos =
            part "post_processor"
            |> List.tryPick (fun p ->
                match typeOf p, p.TryGetProperty "single" with
                | "TemplateProcessing", (true, single) when
                    single.ValueKind = JsonValueKind.Array && single.GetArrayLength() > 0
                    ->
                    match single.[0].TryGetProperty "SpecialToken" with
                    | true, s -> stringProperty s "id"
                    | _ -> None
                | _ -> None)
        let bosToken =
            match settings.BosToken with
            | Some b -> Some b
            | None -> templateBos
        let addBos = defaultArg settings.AddBos templateBos.IsSome
        let byteFallback =
            match model.TryGetProperty "byte_fallback" with
            | true, b -> b.ValueKind = JsonValueKind.True
            | _ -> false
        let unknown = stringProperty model "unk_token"
        let normalizers = part "normalizer"
        let preTokenizers = part "pre_tokenizer"
        let isByteLevel = preTokenizers |> List.exists (fun p -> typeOf p = "ByteLevel")
        let metaspace = preTokenizers |> List.tryFind (fun p -> typeOf p = "Metaspace")
        let prepends =
            normalizers |> List.exists (fun n -> typeOf n = "Prepend" && stringProperty n "prepend" = Some "▁")
        let replacesSpace =
            normalizers |> List.exists (fun n -> typeOf n = "Replace" && stringProperty n "content" = Some "▁")
        if isByteLevel then
            let split =
                preTokenizers
                |> List.tryPick (fun p ->
                    match typeOf p, p.TryGetProperty "pattern" with
                    | "Split", (true, pattern) -> stringProperty pattern "Regex"
                    | _ -> None)
            let byteStep = preTokenizers |> List.find (fun p -> typeOf p = "ByteLevel")
            let prefixSpace =
                match byteStep.TryGetProperty "add_prefix_space" with
                | true, b -> b.ValueKind = JsonValueKind.True
                | _ -> false
            let specials = Dictionary<string, int>()
            for content, id, _ in added do
                specials.[content] <- id
            let bos = if addBos then find bosToken else None
            let form =
                normalizers
                |> List.tryPick (fun n ->
                    match typeOf n with
                    | "NFC" -> Some NormalizationForm.FormC
                    | "NFD" -> Some NormalizationForm.FormD
                    | "NFKC" -> Some NormalizationForm.FormKC
                    | "NFKD" -> Some NormalizationForm.FormKD
                    | _ -> None)
            let lowercase = normalizers |> List.exists (fun n -> typeOf n = "Lowercase")
            let unsupported =
                normalizers
                |> List.map typeOf
                |> List.filter (fun t ->
                    not (List.contains t [ "Sequence"; "NFC"; "NFD"; "NFKC"; "NFKD"; "Lowercase" ]))
            if not unsupported.IsEmpty then
                fail
                    path
                    (sprintf
                        "its normalizer uses %s; byte-level tokenizers may only use NFC, NFD, NFKC, NFKD and Lowercase."
                        (String.concat ", " unsupported))
            let normalizer =
                if form.IsSome || lowercase then
                    Some(TextNormalizer(form, lowercase) :> Normalizer)
                else
                    None
            let ignoreMerges =
                match model.TryGetProperty "ignore_merges" with
                | true, b -> b.ValueKind = JsonValueKind.True
                | _ -> false
            byteLevel
                vocab
                merges
                specials
                (defaultArg split gpt2Pattern)
                unknown
                bos
                prefixSpace
                normalizer
                ignoreMerges
        elif byteFallback || replacesSpace || metaspace.IsSome then
            let dummyPrefix =
                prepends
                || (metaspace
                    |> Option.exists (fun m ->
                        match stringProperty m "prepend_scheme", m.TryGetProperty "add_prefix_space" with
                        | Some scheme, _ -> scheme <> "never"
                        | None, (true, a) -> a.ValueKind = JsonValueKind.True
                        | None, _ -> true))
            let pieces = idTable (all |> Seq.map (fun kv -> kv.Key, kv.Value))
            let rank = Dictionary<string, int>()
            merges
            |> Array.iteri (fun i m ->
                let merged = m.Replace(" ", "")
                if not (rank.ContainsKey merged) then
                    rank.[merged] <- i)
            let bos = defaultArg (find bosToken) -1
            let eos =
                defaultArg
                    (find (
                        match settings.EosToken with
                        | Some e -> Some e
                        | None -> Some "</s>"
                    ))
                    -1
            let unk = defaultArg (find unknown) -1
            let controls =
                HashSet(
                    [
                        for _, id, special in added do
                            if special then
                                id
                    ]
                    @ [ bos; eos ]
                    |> List.filter (fun id -> id >= 0 && id <> unk)
                )
            let model = sentencePieceModel pieces rank byteFallback unk bos eos controls dummyPrefix
            let specials = Dictionary<string, int>()
            for content, id, special in added do
                if special then
                    specials.[content] <- id
            let inner = SentencePieceTokenizer.Create(new MemoryStream(model), addBos && bos >= 0, false, specials)
            HfTokenizer(
                inner,
                TokenizerStyle.SentencePiece,
                pieces,
                HashSet(specials.Values),
                None,
                false,
                Some model,
                None
            )
        else
            fail
                path
                "its pre-tokenizer is neither ByteLevel (GPT-2 style) nor SentencePiece style (Metaspace, or a ▁ normalizer with byte fallback)."

    /// The tokenizer of a checkpoint directory: `tokenizer.json`, else `vocab.json` + `merges.txt`, else
    /// `tokenizer.model`; an UnavailableTokenizer when it has none. `addBosByDefault` applies to
    /// `tokenizer.model` without a tokenizer_config.json (true for the SentencePiece families).
    let load (directory: string) (vocab: int) (addBosByDefault: bool) : ITokenizer =
        let file name = Path.Combine(directory, name)
        let attempt (path: string) (build: unit -> HfTokenizer) =
            try
                build () :> ITokenizer
            with
            | :? JetException -> reraise ()
            // Microsoft.ML.Tokenizers reports inconsistent files (a merge of unknown tokens, …) with its own exceptions.
            | :? ArgumentException
            | :? InvalidOperationException
            | :? FormatException
            | :? KeyNotFoundException as e ->
                let message =
                    sprintf
                        "%s: Microsoft.ML.Tokenizers cannot build a tokenizer from it (%s)."
                        path
                        (e.Message.Split('\n').[0].Trim())
                raise (CheckpointException(message, e))
        let settings = readSettings directory
        if File.Exists(file "tokenizer.json") then
            attempt (file "tokenizer.json") (fun () -> fromTokenizerJson (file "tokenizer.json") settings)
        elif File.Exists(file "vocab.json") && File.Exists(file "merges.txt") then
            attempt (file "vocab.json") (fun () -> fromVocabAndMerges (file "vocab.json") (file "merges.txt") settings)
        elif File.Exists(file "tokenizer.model") then
            attempt (file "tokenizer.model") (fun () ->
                fromSentencePieceModel (file "tokenizer.model") settings addBosByDefault)
        else
            UnavailableTokenizer(directory, vocab) :> ITokenizer
