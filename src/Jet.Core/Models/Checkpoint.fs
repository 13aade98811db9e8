namespace Jet.Core.Models

open System
open System.Collections.Generic
open System.IO
open System.Text.Json
open System.Threading.Tasks
open Jet.Core

/// The tensors of a Hugging Face checkpoint directory: one `model.safetensors`, or the shards that
/// `model.safetensors.index.json` lists. Headers are validated on opening; tensor bytes are read on request.
[<Sealed>]
type Checkpoint
    (
        directory: string,
        files: SafetensorsFile list,
        location: IReadOnlyDictionary<string, SafetensorsFile * SafetensorsEntry>
    ) =
    /// The checkpoint directory.
    member _.Directory = directory
    /// The weight files, in the order they were opened.
    member _.Files = files |> List.map (fun f -> f.Path)
    /// Every tensor name, sorted.
    member _.Names = location.Keys |> Seq.sort |> List.ofSeq
    /// The number of tensors.
    member _.Count = location.Count
    /// True when the checkpoint has a tensor of this name.
    member _.Contains(name: string) = location.ContainsKey name

    /// The header entry of a tensor, if the checkpoint has it.
    member _.TryEntry(name: string) =
        match location.TryGetValue name with
        | true, (_, entry) -> Some entry
        | _ -> None

    /// The file that holds a tensor (for messages).
    member _.FileOf(name: string) =
        match location.TryGetValue name with
        | true, (file, _) -> Path.GetFileName file.Path
        | _ -> "?"

    member private _.FileFor(name: string) =
        match location.TryGetValue name with
        | true, (file, _) -> file
        | _ -> raise (CheckpointException(sprintf "The checkpoint in %s has no tensor named '%s'." directory name))

    /// A fresh CPU tensor with the stored bytes and element type of `name`.
    member c.ReadRaw(name: string) : Tensor = (c.FileFor name).ReadRaw name

    /// CPU tensors with the stored bytes and element types of `names`, in order, created on the calling thread
    /// (inside its dispose scope). With `memoryMap`, each is a copy-on-write view of its file mapped in memory where
    /// the file allows it (SafetensorsFile.TryMap); the others are fresh tensors whose bytes are copied on up to
    /// `parallelism` threads.
    member c.ReadRawMany(names: string list, parallelism: int, memoryMap: bool) : Tensor list =
        let tensors =
            names
            |> List.map (fun n ->
                let file = c.FileFor n
                match (if memoryMap then file.TryMap n else None) with
                | Some view -> n, view, false
                | None -> n, file.Allocate n, true)
        let jobs =
            tensors
            |> List.collect (fun (n, t, copied) -> if copied then (c.FileFor n).CopyJobs(n, t) else [])
            |> Array.ofList
        Parallel.ForEach(jobs, ParallelOptions(MaxDegreeOfParallelism = max 1 parallelism), fun copy -> copy ())
        |> ignore
        tensors |> List.map (fun (_, t, _) -> t)

    interface IDisposable with
        member _.Dispose() =
            for f in files do
                (f :> IDisposable).Dispose()

/// Opening checkpoint directories.
[<RequireQualifiedAccess>]
module Checkpoint =
    /// The single-file weights name.
    [<Literal>]
    let WeightsFile = "model.safetensors"

    /// The index of sharded weights.
    [<Literal>]
    let IndexFile = "model.safetensors.index.json"

    let private pickleAdvice =
        "JetDsl does not read PyTorch pickle weights (pytorch_model.bin): unpickling can run arbitrary code. "
        + "Use the repository's model.safetensors, or convert once with transformers: "
        + "AutoModelForCausalLM.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)."

    /// Fails unless the directory exists.
    let requireDirectory (directory: string) =
        if String.IsNullOrWhiteSpace directory then
            raise (
                CheckpointException "No model directory was given; pass a Hugging Face checkpoint directory (or `toy`)."
            )
        match Paths.brokenLink directory with
        | Some why -> raise (CheckpointException(sprintf "The model directory '%s' %s." directory why))
        | None -> ()
        if File.Exists directory then
            let message =
                sprintf
                    "The model path '%s' is a file, not a directory; give the checkpoint directory that holds config.json and model.safetensors (%s?)."
                    directory
                    (match Path.GetDirectoryName(Path.GetFullPath directory) with
                     | null -> "its folder"
                     | parent -> parent)
            raise (CheckpointException message)
        match Paths.problem PathKind.Directory directory with
        | None -> ()
        | Some why -> raise (CheckpointException(sprintf "The model directory '%s' %s." directory why))

    let private openShards (directory: string) (indexPath: string) =
        let fail what = raise (CheckpointException(sprintf "%s: %s" indexPath what))
        let document =
            try
                JsonDocument.Parse(File.ReadAllText indexPath)
            with :? JsonException as e ->
                fail (sprintf "not valid JSON (%s)." (e.Message.Split('\n').[0].Trim()))
        use document = document
        let weightMap =
            match document.RootElement.ValueKind, document.RootElement.TryGetProperty "weight_map" with
            | JsonValueKind.Object, (true, m) when m.ValueKind = JsonValueKind.Object -> m
            | _ -> fail "it needs a \"weight_map\" object mapping tensor names to shard files."
        let opened = Dictionary<string, SafetensorsFile>()
        let location = Dictionary<string, SafetensorsFile * SafetensorsEntry>()
        try
            for p in weightMap.EnumerateObject() do
                if p.Value.ValueKind <> JsonValueKind.String then
                    fail (sprintf "the shard of tensor '%s' is not a file name." p.Name)
                let shard = p.Value.GetString()
                if Path.GetFileName shard <> shard || shard = "" then
                    fail (
                        sprintf
                            "the shard '%s' of tensor '%s' is not a plain file name in the checkpoint directory."
                            shard
                            p.Name
                    )
                let file =
                    match opened.TryGetValue shard with
                    | true, f -> f
                    | _ ->
                        let path = Path.Combine(directory, shard)
                        if not (File.Exists path) then
                            fail (
                                sprintf
                                    "it lists shard '%s' (for tensor '%s'), which is missing from %s."
                                    shard
                                    p.Name
                                    directory
                            )
                        let f = SafetensorsFile.Open path
                        opened.[shard] <- f
                        f
                match file.Header.Entries.TryGetValue p.Name with
                | true, entry -> location.[p.Name] <- (file, entry)
                | _ -> fail (sprintf "it places tensor '%s' in %s, but that file has no such tensor." p.Name shard)
            if location.Count = 0 then
                fail "its weight_map is empty."
        with _ ->
            for f in opened.Values do
                (f :> IDisposable).Dispose()
            reraise ()
        List.ofSeq opened.Values, location

    /// Opens the weights of a checkpoint directory (`model.safetensors` or a sharded index) and validates
    /// every header. Fails with a CheckpointException that says what is missing or malformed.
    let openDirectory (directory: string) : Checkpoint =
        requireDirectory directory
        let single = Path.Combine(directory, WeightsFile)
        let index = Path.Combine(directory, IndexFile)
        if File.Exists single then
            let file = SafetensorsFile.Open single
            let location = Dictionary<string, SafetensorsFile * SafetensorsEntry>()
            for kv in file.Header.Entries do
                location.[kv.Key] <- (file, kv.Value)
            new Checkpoint(directory, [ file ], location)
        elif File.Exists index then
            let files, location = openShards directory index
            new Checkpoint(directory, files, location)
        else
            let pickles =
                Directory.GetFiles(directory, "*.bin")
                |> Array.map Path.GetFileName
                |> Array.filter (fun n -> n.StartsWith "pytorch_model")
            if pickles.Length > 0 then
                let found = String.Join(", ", Array.sort pickles)
                let message = sprintf "%s has %s but no %s. %s" directory found WeightsFile pickleAdvice
                raise (CheckpointException message)
            let present = Directory.GetFiles directory |> Array.map Path.GetFileName |> Array.sort
            let listing =
                if present.Length = 0 then
                    "it is empty"
                else
                    "it has: " + String.Join(", ", present |> Array.truncate 12)
            let message =
                sprintf "%s has no weights: expected %s or %s (%s)." directory WeightsFile IndexFile listing
            raise (CheckpointException message)
