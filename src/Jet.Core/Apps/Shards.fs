namespace Jet.Core.Apps

open System
open System.IO
open System.Reflection
open System.Security.Cryptography
open System.Text
open System.Text.Json
open Jet.Core

/// Shard files that a merge cannot use (corrupt, missing, duplicated, or from another model or options), or a shard
/// request that does not fit the sweep.
type ShardException(message: string) =
    inherit JetException(message)

/// One part of a sweep's result over a range of first tokens: what shards write and a merge reduces.
[<RequireQualifiedAccess>]
type SweepPart =
    /// The k best next tokens of each first token of the range: ids and scores [rows·k], row-major, best first.
    | Rows of k: int * ids: int64[] * scores: float[]
    /// Candidates for the global top k (`PairCandidates.best` order).
    | Candidates of k: int * candidates: PairCandidates
    /// One float64 sum per batch of first tokens, in batch order (`Vocabulary.total` adds them).
    | Sums of sums: float[]

/// What identifies a sharded sweep, and which shard of it a file holds.
type ShardManifest =
    {
        /// The sweep ("bigrams", "mass", …): a merge prints the result with this sweep's printer.
        Kind: string
        /// The model's source: toy, or the checkpoint directory.
        Model: string
        /// SHA-256 over the model's config.json and its weight files' names, sizes and safetensors headers.
        Fingerprint: string
        /// Everything else the result depends on, by name (path, space, k, dtype …); shards must agree exactly.
        Options: Map<string, string>
        Vocab: int
        /// First tokens per batch: shard ranges follow batch boundaries, so every batch is the one an unsharded run
        /// computes and the merge has the same bits.
        BatchSize: int
        /// This shard, 0..Shards−1.
        Shard: int
        Shards: int
        /// The first tokens this shard covers.
        Rows: RowRange
        /// The Jet.Core version that wrote the file.
        Version: string
    }

/// A shard's result, or a merged one: the manifest and the named parts.
type ShardResult = { Manifest: ShardManifest; Parts: (string * SweepPart) list }

/// What `Shards.run` did.
[<RequireQualifiedAccess>]
type ShardOutcome =
    /// The shard was computed and its file written.
    | Written of file: string
    /// A complete file with the same manifest was already there.
    | Skipped of file: string

/// Sharded vocabulary sweeps: shard I of N sweeps a contiguous range of first tokens and writes its parts to a file
/// (write then rename, so a crash leaves no file a merge accepts); `merge` checks that the files cover every first token
/// once with one model, options and version, and reduces them to the parts of one unsharded sweep.
[<RequireQualifiedAccess>]
module Shards =

    [<Literal>]
    let private Magic = "jetdsl-shard 1 sha256 "

    /// The Jet.Core version written into manifests.
    [<CompiledName("Version")>]
    let version =
        let assembly = typeof<ShardException>.Assembly
        match assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>() with
        | null -> string (assembly.GetName().Version)
        | a -> a.InformationalVersion

    /// The first tokens shard `shard` of `shards` covers: whole batches of `batchSize`, split as evenly as batches
    /// allow (a shard gets no rows when there are fewer batches than shards).
    [<CompiledName("Range")>]
    let range (vocab: int) (batchSize: int) (shard: int) (shards: int) : RowRange =
        if batchSize < 1 then
            raise (InvalidPlanException(sprintf "The batch size must be ≥ 1; got %d." batchSize))
        if shards < 1 || shard < 0 || shard >= shards then
            raise (
                ShardException(
                    sprintf "Shard %d/%d does not exist; shards are numbered 0..N−1 with N ≥ 1, as in 0/4." shard shards
                )
            )
        let batches = (int64 vocab + int64 batchSize - 1L) / int64 batchSize
        let startOf (i: int) = int (min (int64 vocab) (batches * int64 i / int64 shards * int64 batchSize))
        { Start = startOf shard; Stop = startOf (shard + 1) }

    /// The number of batches a sweep over `rows` makes.
    let private batchesOf (rows: RowRange) (batchSize: int) = (rows.Count + batchSize - 1) / batchSize

    /// The file name of shard `shard` of `shards`.
    [<CompiledName("FileName")>]
    let fileName (shard: int) (shards: int) = sprintf "shard-%05d-of-%05d.json" shard shards

    let private hex (bytes: byte[]) = Convert.ToHexString(bytes).ToLowerInvariant()

    /// The fingerprint of a model source: "toy", or the SHA-256 over its config.json, and each *.safetensors file's name,
    /// size and header (not the tensors: the fingerprint of a large checkpoint takes milliseconds).
    [<CompiledName("Fingerprint")>]
    let fingerprint (source: string) : string =
        if not (Directory.Exists source) then
            source
        else
            use sha = IncrementalHash.CreateHash HashAlgorithmName.SHA256
            let add (text: string) = sha.AppendData(Encoding.UTF8.GetBytes(text + "\n"))
            let config = Path.Combine(source, "config.json")
            if File.Exists config then
                add ("config.json " + hex (SHA256.HashData(File.ReadAllBytes config)))
            for file in
                Directory.GetFiles(source, "*.safetensors")
                |> Array.sortWith (fun a b -> String.CompareOrdinal(a, b)) do
                let info = FileInfo file
                use stream = File.OpenRead file
                let lengthBytes = Array.zeroCreate<byte> 8
                let got = stream.Read(lengthBytes, 0, 8)
                let headerLength = if got = 8 then BitConverter.ToInt64(lengthBytes, 0) else 0L
                // The header is at most 100 MB in a valid file; read no more than the file holds.
                let take = int (max 0L (min headerLength (min (info.Length - 8L) 100_000_000L)))
                let header = Array.zeroCreate<byte> take
                stream.ReadExactly(header, 0, take)
                add (sprintf "%s %d %s" info.Name info.Length (hex (SHA256.HashData header)))
            hex (sha.GetHashAndReset())

    /// The manifest of shard `shard` of `shards` of a sweep (its range from `range`).
    [<CompiledName("Manifest")>]
    let manifest
        (kind: string)
        (model: string)
        (options: Map<string, string>)
        (vocab: int)
        (batchSize: int)
        (shard: int)
        (shards: int)
        : ShardManifest =
        {
            Kind = kind
            Model = model
            Fingerprint = fingerprint model
            Options = options
            Vocab = vocab
            BatchSize = batchSize
            Shard = shard
            Shards = shards
            Rows = range vocab batchSize shard shards
            Version = version
        }

    // Doubles travel as their 64-bit patterns: exact, and NaN and ±∞ (which JSON numbers cannot hold) survive.
    let private writeDoubles (w: Utf8JsonWriter) (name: string) (xs: float[]) =
        w.WriteStartArray name
        for x in xs do
            w.WriteNumberValue(BitConverter.DoubleToInt64Bits x)
        w.WriteEndArray()

    let private writeLongs (w: Utf8JsonWriter) (name: string) (xs: int64[]) =
        w.WriteStartArray name
        for x in xs do
            w.WriteNumberValue x
        w.WriteEndArray()

    let private serialize (r: ShardResult) : byte[] =
        use stream = new MemoryStream()
        do
            use w = new Utf8JsonWriter(stream)
            let m = r.Manifest
            w.WriteStartObject()
            w.WriteStartObject "manifest"
            w.WriteString("kind", m.Kind)
            w.WriteString("model", m.Model)
            w.WriteString("fingerprint", m.Fingerprint)
            w.WriteStartObject "options"
            for KeyValue(k, v) in m.Options do
                w.WriteString(k, v)
            w.WriteEndObject()
            w.WriteNumber("vocab", m.Vocab)
            w.WriteNumber("batch_size", m.BatchSize)
            w.WriteNumber("shard", m.Shard)
            w.WriteNumber("shards", m.Shards)
            w.WriteNumber("start", m.Rows.Start)
            w.WriteNumber("stop", m.Rows.Stop)
            w.WriteString("version", m.Version)
            w.WriteEndObject()
            w.WriteStartArray "parts"
            for name, part in r.Parts do
                w.WriteStartObject()
                w.WriteString("name", name)
                match part with
                | SweepPart.Rows(k, ids, scores) ->
                    w.WriteString("kind", "rows")
                    w.WriteNumber("k", k)
                    writeLongs w "ids" ids
                    writeDoubles w "scores" scores
                | SweepPart.Candidates(k, c) ->
                    w.WriteString("kind", "candidates")
                    w.WriteNumber("k", k)
                    writeDoubles w "rank" c.Rank
                    writeLongs w "flat" c.Flat
                    writeDoubles w "scores" c.Scores
                | SweepPart.Sums sums ->
                    w.WriteString("kind", "sums")
                    writeDoubles w "sums" sums
                w.WriteEndObject()
            w.WriteEndArray()
            w.WriteEndObject()
        stream.ToArray()

    let private deserialize (body: byte[]) : ShardResult =
        use doc = JsonDocument.Parse(ReadOnlyMemory body)
        let root = doc.RootElement
        let m = root.GetProperty "manifest"
        let text (e: JsonElement) (name: string) = e.GetProperty(name).GetString()
        let int (e: JsonElement) (name: string) = e.GetProperty(name).GetInt32()
        let longs (e: JsonElement) (name: string) = [| for x in e.GetProperty(name).EnumerateArray() -> x.GetInt64() |]
        let doubles (e: JsonElement) (name: string) = longs e name |> Array.map BitConverter.Int64BitsToDouble
        let manifest =
            {
                Kind = text m "kind"
                Model = text m "model"
                Fingerprint = text m "fingerprint"
                Options =
                    m.GetProperty("options").EnumerateObject()
                    |> Seq.map (fun p -> p.Name, p.Value.GetString())
                    |> Map.ofSeq
                Vocab = int m "vocab"
                BatchSize = int m "batch_size"
                Shard = int m "shard"
                Shards = int m "shards"
                Rows = { Start = int m "start"; Stop = int m "stop" }
                Version = text m "version"
            }
        let parts =
            [
                for p in root.GetProperty("parts").EnumerateArray() ->
                    let part =
                        match text p "kind" with
                        | "rows" -> SweepPart.Rows(int p "k", longs p "ids", doubles p "scores")
                        | "candidates" ->
                            SweepPart.Candidates(
                                int p "k",
                                { Rank = doubles p "rank"; Flat = longs p "flat"; Scores = doubles p "scores" }
                            )
                        | "sums" -> SweepPart.Sums(doubles p "sums")
                        | other -> failwithf "unknown part kind %s" other
                    text p "name", part
            ]
        { Manifest = manifest; Parts = parts }

    /// Why the parts do not fit the manifest's range, if they do not.
    let private partProblem (m: ShardManifest) (name: string, part: SweepPart) =
        match part with
        | SweepPart.Rows(k, ids, scores) when k < 1 || ids.Length <> k * m.Rows.Count || scores.Length <> ids.Length ->
            Some(sprintf "part %s holds %d ids for %d rows of %d" name ids.Length m.Rows.Count k)
        | SweepPart.Candidates(k, c) when
            c.Rank.Length > k || c.Flat.Length <> c.Rank.Length || c.Scores.Length <> c.Rank.Length
            ->
            Some(sprintf "part %s holds %d candidates for k = %d" name c.Rank.Length k)
        | SweepPart.Sums sums when sums.Length <> batchesOf m.Rows m.BatchSize ->
            Some(sprintf "part %s holds %d sums for %d batches" name sums.Length (batchesOf m.Rows m.BatchSize))
        | _ -> None

    /// Reads a shard file; fails naming the file when it is incomplete, corrupt or inconsistent.
    [<CompiledName("Read")>]
    let read (file: string) : ShardResult =
        let corrupt (why: string) =
            ShardException(
                sprintf "Shard file %s is corrupt (%s); delete it and run that shard again." (Path.GetFileName file) why
            )
        let bytes = File.ReadAllBytes file
        let newline = Array.IndexOf(bytes, byte '\n')
        let header =
            if newline > 0 then
                Encoding.ASCII.GetString(bytes, 0, newline)
            else
                ""
        if not (header.StartsWith Magic) then
            raise (corrupt "it does not start with a shard header")
        let body = bytes.[newline + 1 ..]
        if header.Substring Magic.Length <> hex (SHA256.HashData body) then
            raise (corrupt "its checksum does not match its contents")
        let result =
            try
                deserialize body
            with e ->
                raise (corrupt e.Message)
        match result.Parts |> List.tryPick (partProblem result.Manifest) with
        | Some why -> raise (corrupt why)
        | None -> result

    /// Writes a shard's result into `dir` (created if needed) under `fileName`: to a temporary file first, renamed
    /// when complete, so a crash leaves no file under the final name. Returns the file.
    [<CompiledName("Write")>]
    let write (dir: string) (result: ShardResult) : string =
        Directory.CreateDirectory dir |> ignore
        let m = result.Manifest
        let file = Path.Combine(dir, fileName m.Shard m.Shards)
        let temporary =
            Path.Combine(dir, sprintf ".%s.%d.tmp" (fileName m.Shard m.Shards) Environment.ProcessId)
        let body = serialize result
        do
            use stream = new FileStream(temporary, FileMode.Create, FileAccess.Write)
            stream.Write(Encoding.ASCII.GetBytes(Magic + hex (SHA256.HashData body) + "\n"))
            stream.Write body
            stream.Flush true
        File.Move(temporary, file, true)
        file

    /// Whether `dir` already holds a complete file of the shard `manifest` names, written with the same manifest.
    [<CompiledName("IsComplete")>]
    let isComplete (dir: string) (manifest: ShardManifest) : bool =
        let file = Path.Combine(dir, fileName manifest.Shard manifest.Shards)
        File.Exists file
        && (try
                (read file).Manifest = manifest
            with :? ShardException ->
                false)

    /// Runs one shard: skipped when `dir` already holds it complete, otherwise `compute` gets the shard's range (pass
    /// it to the sweep as `SweepOptions.Rows`) and its parts are written.
    [<CompiledName("Run")>]
    let run (dir: string) (manifest: ShardManifest) (compute: RowRange -> (string * SweepPart) list) : ShardOutcome =
        let file = Path.Combine(dir, fileName manifest.Shard manifest.Shards)
        if isComplete dir manifest then
            ShardOutcome.Skipped file
        else
            let parts = compute manifest.Rows
            match parts |> List.tryPick (partProblem manifest) with
            | Some why -> raise (InvalidPlanException(sprintf "The sweep's result does not fit its shard: %s." why))
            | None -> ShardOutcome.Written(write dir { Manifest = manifest; Parts = parts })

    let private describeOptions (a: Map<string, string>) (b: Map<string, string>) =
        let keys = Set.union (a |> Map.keys |> Set.ofSeq) (b |> Map.keys |> Set.ofSeq)
        [
            for k in keys do
                let value (m: Map<string, string>) =
                    m.TryFind k |> Option.map (sprintf "%s") |> Option.defaultValue "(none)"
                if a.TryFind k <> b.TryFind k then
                    sprintf "%s is %s there but %s here" k (value a) (value b)
        ]

    /// What differs between two shards' manifests, apart from the shard itself.
    let private differences (a: ShardManifest) (b: ShardManifest) =
        [
            if a.Kind <> b.Kind then
                sprintf "the sweep is %s there but %s here" a.Kind b.Kind
            if a.Model <> b.Model then
                sprintf "the model is %s there but %s here" a.Model b.Model
            if a.Fingerprint <> b.Fingerprint then
                "the model files differ (fingerprint)"
            yield! describeOptions a.Options b.Options
            if a.Vocab <> b.Vocab then
                sprintf "the vocabulary is %d there but %d here" a.Vocab b.Vocab
            if a.BatchSize <> b.BatchSize then
                sprintf "the batch size is %d there but %d here" a.BatchSize b.BatchSize
            if a.Shards <> b.Shards then
                sprintf "the shard count is %d there but %d here" a.Shards b.Shards
            if a.Version <> b.Version then
                sprintf "the version is %s there but %s here" a.Version b.Version
        ]

    let private reduce (name: string) (parts: SweepPart list) : SweepPart =
        match parts with
        | SweepPart.Rows(k, _, _) :: _ ->
            let rows =
                parts
                |> List.map (fun p ->
                    match p with
                    | SweepPart.Rows(k', ids, scores) when k' = k -> ids, scores
                    | _ -> raise (ShardException(sprintf "The shards disagree on the kind or k of part %s." name)))
            SweepPart.Rows(k, rows |> List.map fst |> Array.concat, rows |> List.map snd |> Array.concat)
        | SweepPart.Candidates(k, _) :: _ ->
            let all =
                parts
                |> List.map (fun p ->
                    match p with
                    | SweepPart.Candidates(k', c) when k' = k -> c
                    | _ -> raise (ShardException(sprintf "The shards disagree on the kind or k of part %s." name)))
            SweepPart.Candidates(k, PairCandidates.concat all |> PairCandidates.best k)
        | SweepPart.Sums _ :: _ ->
            parts
            |> List.map (fun p ->
                match p with
                | SweepPart.Sums s -> s
                | _ -> raise (ShardException(sprintf "The shards disagree on the kind of part %s." name)))
            |> Array.concat
            |> SweepPart.Sums
        | [] -> raise (ShardException(sprintf "Part %s has no shards." name))

    /// Merges the shard files of `dir` (shard-*-of-*.json) into the result of one unsharded sweep: refuses corrupt
    /// files, shards from another model, options, shard count or version, duplicated shards and missing ones, each
    /// named. The merged manifest covers every first token.
    [<CompiledName("Merge")>]
    let merge (dir: string) : ShardResult =
        if not (Directory.Exists dir) then
            raise (ShardException(sprintf "%s is not a folder of shard files." dir))
        let files =
            Directory.GetFiles(dir, "shard-*-of-*.json")
            |> Array.sortWith (fun a b -> String.CompareOrdinal(a, b))
        if files.Length = 0 then
            raise (
                ShardException(
                    sprintf
                        "%s holds no shard files (shard-*-of-*.json); run the sweep with --shard I/N --shard-dir %s first."
                        dir
                        dir
                )
            )
        let loaded = files |> Array.map (fun f -> Path.GetFileName f, read f)
        let firstName, first = loaded.[0]
        let m0 = first.Manifest
        let conflicts =
            [
                for name, r in loaded.[1..] do
                    match differences m0 r.Manifest with
                    | [] -> ()
                    | why -> sprintf "%s does not match %s: %s" name firstName (String.concat "; " why)
            ]
        if not conflicts.IsEmpty then
            raise (
                ShardException(
                    sprintf "The shards in %s do not belong to one sweep: %s." dir (String.concat ". " conflicts)
                )
            )
        let label (i: int) = sprintf "%d/%d" i m0.Shards
        let misplaced =
            [
                for name, r in loaded do
                    let m = r.Manifest
                    if name <> fileName m.Shard m.Shards then
                        sprintf "%s holds shard %s" name (label m.Shard)
                    elif m.Rows <> range m.Vocab m.BatchSize m.Shard m.Shards then
                        sprintf
                            "%s covers first tokens %d..%d, not shard %s's range"
                            name
                            m.Rows.Start
                            (m.Rows.Stop - 1)
                            (label m.Shard)
            ]
        let duplicated =
            loaded
            |> Array.groupBy (fun (_, r) -> r.Manifest.Shard)
            |> Array.filter (fun (_, g) -> g.Length > 1)
            |> Array.map (fun (i, g) ->
                sprintf "shard %s is in %s" (label i) (g |> Array.map fst |> String.concat " and "))
        if duplicated.Length > 0 || not misplaced.IsEmpty then
            raise (
                ShardException(
                    sprintf
                        "The shard files in %s are duplicated or renamed: %s; keep one file per shard, as its shard wrote it."
                        dir
                        (String.concat "; " (List.ofArray duplicated @ misplaced))
                )
            )
        let present = loaded |> Array.map (fun (_, r) -> r.Manifest.Shard) |> Set.ofArray
        let missing =
            [
                for i in 0 .. m0.Shards - 1 do
                    if not (present.Contains i) then
                        let r = range m0.Vocab m0.BatchSize i m0.Shards
                        sprintf "%s (first tokens %d..%d)" (label i) r.Start (r.Stop - 1)
            ]
        if not missing.IsEmpty then
            raise (
                ShardException(
                    sprintf
                        "%s lacks shard%s %s of %d; run %s (a re-run skips the shards that are complete)."
                        dir
                        (if missing.Length = 1 then "" else "s")
                        (String.concat ", " missing)
                        m0.Shards
                        (if missing.Length = 1 then "it" else "them")
                )
            )
        let ordered = loaded |> Array.map snd |> Array.sortBy (fun r -> r.Manifest.Shard)
        let names = first.Parts |> List.map fst
        for r in ordered do
            if r.Parts |> List.map fst <> names then
                raise (
                    ShardException(
                        sprintf
                            "Shard %s holds parts %s but shard %s holds %s."
                            (label r.Manifest.Shard)
                            (String.concat ", " (r.Parts |> List.map fst))
                            (label m0.Shard)
                            (String.concat ", " names)
                    )
                )
        let parts = names |> List.mapi (fun i name -> name, reduce name [ for r in ordered -> snd r.Parts.[i] ])
        { Manifest = { m0 with Shard = 0; Rows = { Start = 0; Stop = m0.Vocab } }; Parts = parts }

    /// The shard `I/N`, `auto` or `auto/N` names: `auto` reads SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN and
    /// SLURM_ARRAY_TASK_COUNT (Slurm job arrays), else JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs) with the count
    /// from `auto/N` or JET_SHARD_COUNT. `environment` looks up variables (None when unset).
    [<CompiledName("Parse")>]
    let parse (environment: string -> string option) (text: string) : int * int =
        let number (what: string) (s: string) =
            match
                Int32.TryParse(
                    (if isNull s then "" else s.Trim()),
                    Globalization.NumberStyles.None,
                    Globalization.CultureInfo.InvariantCulture
                )
            with
            | true, n -> n
            | _ -> raise (ShardException(sprintf "%s is %A, not a whole number ≥ 0." what s))
        let checkedShard (i: int) (n: int) =
            if n < 1 || i >= n then
                raise (
                    ShardException(
                        sprintf "Shard %d/%d does not exist; shards are numbered 0..N−1 with N ≥ 1, as in 0/4." i n
                    )
                )
            i, n
        let text = if isNull text then "" else text.Trim()
        let parts = text.Split '/'
        match parts with
        | [| "auto" |]
        | [| "auto"; _ |] ->
            let given =
                if parts.Length = 2 then
                    Some(number "The N of --shard auto/N" parts.[1])
                else
                    None
            match environment "SLURM_ARRAY_TASK_ID", environment "JOB_COMPLETION_INDEX" with
            | Some id, _ ->
                let low =
                    environment "SLURM_ARRAY_TASK_MIN"
                    |> Option.map (number "SLURM_ARRAY_TASK_MIN")
                    |> Option.defaultValue 0
                let count =
                    match given, environment "SLURM_ARRAY_TASK_COUNT" with
                    | Some n, _ -> n
                    | None, Some c -> number "SLURM_ARRAY_TASK_COUNT" c
                    | None, None ->
                        raise (ShardException "SLURM_ARRAY_TASK_COUNT is not set; give the count as --shard auto/N.")
                checkedShard (number "SLURM_ARRAY_TASK_ID" id - low) count
            | None, Some index ->
                let count =
                    match given, environment "JET_SHARD_COUNT" with
                    | Some n, _ -> n
                    | None, Some c -> number "JET_SHARD_COUNT" c
                    | None, None ->
                        raise (
                            ShardException
                                "JOB_COMPLETION_INDEX is set but not the shard count; give --shard auto/N or set JET_SHARD_COUNT to the Job's completions."
                        )
                checkedShard (number "JOB_COMPLETION_INDEX" index) count
            | None, None ->
                raise (
                    ShardException
                        "--shard auto needs SLURM_ARRAY_TASK_ID (a Slurm job array) or JOB_COMPLETION_INDEX (a Kubernetes Indexed Job); neither is set. Give --shard I/N instead."
                )
        | [| i; n |] -> checkedShard (number "The I of --shard I/N" i) (number "The N of --shard I/N" n)
        | _ -> raise (ShardException(sprintf "--shard takes I/N (0 ≤ I < N), auto or auto/N; got %A." text))
