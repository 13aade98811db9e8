/// `jet mass`: the n-gram mass of a token set under a bigram path, for one model or two side by side.
module Jet.Cli.Commands.MassCommand

open System.IO
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

let private execute (args: ParseResults<Args>) =
    let file = requireFile "--tokens" (args.GetResult Tokens)
    let request =
        ModelArgs.read args <@ Model @> <@ Dtype @> <@ Compute_Dtype @> <@ Device @> <@ Allow_Nonfinite @>
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
    let masses = TokenMass.ofModels path file (File.ReadLines file) topK options models
    let difference (f: ModelMass -> float) =
        if masses.Length = 2 then
            Some(f masses.[1] - f masses.[0])
        else
            None
    let topKOf (m: ModelMass) = m.TopKMass |> Option.defaultValue nan
    let nonFinite = NonFiniteChecks.masses masses
    if args.Contains Json then
        writeJson
            {|
                path = string path
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
                let tokenizer = models.[i].Tokenizer
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
        printfn
            "Mass of the word list under %s (mean over first tokens of Σ P(next ∈ S | token)):"
            (Readouts.describe models.Head.Net path)
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
    finish request.AllowNonFinite nonFinite

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
