/// `jet mass`: the n-gram mass of a token set under a bigram path, for one model or two side by side.
module Jet.Cli.Commands.MassCommand

open System.IO
open System.Text.Json
open Argu
open Jet.Core
open Jet.Core.Apps
open Jet.Cli
open Jet.Cli.Console

type Args =
    | [<Mandatory>] Model of dir: string
    | Compare of dir: string
    | [<Mandatory>] Tokens of file: string
    | [<Mandatory>] Path of path: string
    | Top_K of k: int
    | No_Diagonal
    | Batch_Size of rows: int
    | Dtype of name: string
    | Compute_Dtype of name: string
    | Device of name: string
    | Allow_Nonfinite
    | Json
    | Shard of spec: string
    | Shard_Dir of dir: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> ModelArgs.modelUsage
            | Compare _ ->
                "a second model to measure beside the first (for example a fine-tune of it), in the same dtype and on the same device."
            | Tokens _ ->
                "a file with one word per line: a token as tables print it (for example ␣ for the toy's space), or a word that tokenizes to several tokens, scored by its first."
            | Top_K _ -> "also count the mass inside each row's K best next tokens only."
            | Path _ -> "the path, as jet bigrams reads it: for example embed, mlp:1 or 'emb>attn1>mlp2'."
            | No_Diagonal -> "renormalise each row over next tokens different from the first."
            | Batch_Size _ ->
                "first tokens per batch of the vocabulary sweep, ≥ 1 and within the memory available (default: 512)."
            | Dtype _ -> ModelArgs.dtypeUsage
            | Compute_Dtype _ -> ModelArgs.computeDtypeUsage
            | Device _ -> ModelArgs.deviceUsage
            | Allow_Nonfinite -> allowNonFiniteUsage
            | Json -> "print one JSON object instead of lines."
            | Shard _ -> Sharding.shardUsage + " Not with --compare."
            | Shard_Dir _ -> Sharding.shardDirUsage

/// Prints the masses of one or two models (`tokenizers` in the same order) as lines or JSON; returns the exit code.
let private output
    (json: bool)
    (allowNonFinite: bool)
    (pathText: string)
    (pathDescribed: string)
    (topK: int option)
    (masses: ModelMass[])
    (tokenizers: Jet.Core.Models.ITokenizer[])
    =
    let difference (f: ModelMass -> float) =
        if masses.Length = 2 then
            Some(f masses.[1] - f masses.[0])
        else
            None
    let topKOf (m: ModelMass) = m.TopKMass |> Option.defaultValue nan
    let nonFinite = NonFiniteChecks.masses masses
    if json then
        writeJson
            {|
                path = pathText
                top_k = Option.toNullable topK
                models =
                    [|
                        for m in masses ->
                            {|
                                model = m.Model
                                tokens = m.Tokens
                                mass = m.Mass
                                top_k_mass = Option.toNullable m.TopKMass
                                split_words =
                                    [| for w in m.SplitWords -> {| line = w.Line; word = w.Word; tokens = w.Tokens |} |]
                            |}
                    |]
                difference =
                    match difference (fun m -> m.Mass) with
                    | Some d ->
                        box
                            {|
                                mass = d
                                top_k_mass =
                                    topK
                                    |> Option.map (fun _ -> topKOf masses.[1] - topKOf masses.[0])
                                    |> Option.toNullable
                            |}
                    | None -> null
                non_finite = nonFiniteJson nonFinite
            |}
    else
        // One note per model (a model with the same tokenizer as the one before it adds nothing new).
        let described =
            masses
            |> Array.mapi (fun i m ->
                let tokenizer = tokenizers.[i]
                let words =
                    m.SplitWords
                    |> Array.map (fun w ->
                        sprintf "%s → %A" w.Word (Jet.Core.Apps.LogitMetrics.piece tokenizer w.Scored))
                m.Model, words)
        described
        |> Array.iteri (fun i (model, words) ->
            if words.Length > 0 && (i = 0 || snd described.[i - 1] <> words) then
                eprintfn
                    "note: %d word%s of the list span%s several tokens in %s's tokenizer and %s scored by the first: %s."
                    words.Length
                    (if words.Length = 1 then "" else "s")
                    (if words.Length = 1 then "s" else "")
                    model
                    (if words.Length = 1 then "is" else "are")
                    (String.concat ", " words))
        printfn "Mass of the word list under %s (mean over first tokens of Σ P(next ∈ S | token)):" pathDescribed
        let headers =
            [ "model"; "tokens"; "mass" ]
            @ (topK |> Option.map (fun k -> [ sprintf "mass in top %d" k ]) |> Option.defaultValue [])
        let row (name: string) (tokens: string) (mass: float) (inTop: float option) =
            [ name; tokens; sprintf "%.6f" mass ]
            @ (inTop |> Option.map (sprintf "%.6f" >> List.singleton) |> Option.defaultValue [])
        printTable
            headers
            [
                for m in masses -> row m.Model (string m.Tokens) m.Mass m.TopKMass
                match difference (fun m -> m.Mass) with
                | Some d ->
                    yield
                        row
                            "difference (2nd − 1st)"
                            ""
                            d
                            (topK |> Option.map (fun _ -> topKOf masses.[1] - topKOf masses.[0]))
                | None -> ()
            ]
    finish allowNonFinite nonFinite

let private splitWordsText (words: ListedWord[]) =
    JsonSerializer.Serialize [| for w in words -> {| line = w.Line; word = w.Word; tokens = w.Tokens |} |]

let private splitWordsOf (text: string) : ListedWord[] =
    use doc = JsonDocument.Parse text
    [|
        for w in doc.RootElement.EnumerateArray() ->
            {
                Line = w.GetProperty("line").GetInt32()
                Word = w.GetProperty("word").GetString()
                Tokens = [| for t in w.GetProperty("tokens").EnumerateArray() -> t.GetInt32() |]
            }
    |]

/// Prints a mass sweep's result (whole, or merged from shards) as `jet mass` does for one model; returns the exit code.
let render (json: bool) (allowNonFinite: bool) (tokenizer: Jet.Core.Models.ITokenizer) (result: ShardResult) : int =
    let setting = Sharding.setting result
    let count = float result.Manifest.Rows.Count
    let meanOf (name: string) =
        match result.Parts |> List.tryFind (fun (n, _) -> n = name) with
        | Some(_, SweepPart.Sums sums) -> Some(Vocabulary.total sums / count)
        | Some _ ->
            raise (ShardException "The mass shards hold parts of another kind; they were written by another version.")
        | None -> None
    let topK =
        match setting "top_k" with
        | "" -> None
        | k -> Some(int k)
    let mass =
        {
            Model = result.Manifest.Model
            Tokens = (setting "tokens").Split(',').Length
            Mass =
                meanOf "mass"
                |> Option.defaultWith (fun () -> raise (ShardException "The mass shards hold no mass part."))
            TopKMass = meanOf "top_k_mass"
            SplitWords = splitWordsOf (setting "split_words")
        }
    output json allowNonFinite (setting "path") (setting "described") topK [| mass |] [| tokenizer |]

let private execute (args: ParseResults<Args>) =
    let file = requireFile "--tokens" (args.GetResult Tokens)
    let request = ModelArgs.read args <@ Model @> <@ Dtype @> <@ Compute_Dtype @> <@ Device @> <@ Allow_Nonfinite @>
    let shard = Sharding.request (args.TryGetResult Shard) (args.TryGetResult Shard_Dir)
    if shard.IsSome && args.Contains Compare then
        raise (InvalidPlanException "--shard does not apply to --compare yet; shard each model's mass on its own.")
    let compared =
        args.TryGetResult Compare |> Option.map (fun dir -> { request with Source = ModelArgs.source dir })
    let models =
        [ yield ModelArgs.load request; yield! compared |> Option.map ModelArgs.load |> Option.toList ]
    use _ =
        { new System.IDisposable with
            member _.Dispose() =
                for m in models do
                    m.Dispose()
        }
    let passes = if args.Contains Top_K then 2L else 1L
    let total = passes * (models |> List.sumBy (fun m -> int64 m.Net.Vocab))
    let batch = args.GetResult(Batch_Size, SweepOptions.Default.BatchSize)
    let options =
        BigramsCommand.sweepOptions ScoreSpace.Probability (args.Contains No_Diagonal) batch "mass" total
    let path = Readouts.parse models.Head.Net (args.GetResult Path)
    let topK = args.TryGetResult Top_K
    let json = args.Contains Json
    let described = Readouts.describe models.Head.Net path
    match models with
    | [ model ] ->
        let list = TokenMass.words model.Tokenizer model.Net.Vocab file (File.ReadLines file)
        let set = list |> Array.map (fun w -> w.Scored) |> Array.distinct
        let settings =
            Map
                [
                    "path", string path
                    "described", described
                    "tokens", set |> Array.map string |> String.concat ","
                    "top_k", topK |> Option.map string |> Option.defaultValue ""
                    "no_diagonal", string (args.Contains No_Diagonal)
                    "dtype", string model.Net.DType
                    "split_words", splitWordsText (list |> Array.filter (fun w -> w.Tokens.Length > 1))
                ]
        let compute (rows: RowRange option) =
            let range = Vocabulary.checkRows model.Net.Vocab rows
            let options =
                { BigramsCommand.sweepOptions
                      ScoreSpace.Probability
                      (args.Contains No_Diagonal)
                      batch
                      "mass"
                      (passes * int64 range.Count) with
                    Rows = rows
                }
            let mass, inTop = TokenMass.sums model.Net path set topK options
            [
                "mass", SweepPart.Sums mass
                match inTop with
                | Some sums -> "top_k_mass", SweepPart.Sums sums
                | None -> ()
            ]
        Sharding.run shard "mass" model settings batch compute (render json request.AllowNonFinite model.Tokenizer)
    | _ ->
        let masses = TokenMass.ofModels path file (File.ReadLines file) topK options models
        output
            json
            request.AllowNonFinite
            (string path)
            described
            topK
            masses
            (models |> List.map (fun m -> m.Tokenizer) |> Array.ofList)

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
