/// `jet paths`: the few input→output paths that carry a prediction, found by path search (PathSearch).
module Jet.Cli.Commands.PathsCommand

open System
open Argu
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps
open Jet.Core.Pictures
open Jet.Cli
open Jet.Cli.Console

type Args =
    | [<Mandatory>] Model of dir: string
    | [<Mandatory>] Prompt of text: string
    | Position of p: int
    | Target of words: string list
    | Top of m: int
    | Beam of w: int
    | Only of kind: string
    | Max_Length of n: int
    | Plot of file: string
    | Dtype of name: string
    | Compute_Dtype of name: string
    | Device of name: string
    | Allow_Nonfinite
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> ModelArgs.modelUsage
            | Prompt _ -> "the text to read the paths on."
            | Position _ -> "the position read, 0-based (default: the last token)."
            | Target _ ->
                "what the paths explain: 'token T' (T's logit), 'diff A B' (logit A − logit B) or 'top' (the log-probability of the model's top token; default). A token is written as tables print it, as text that encodes to one token, or as #ID."
            | Top _ -> "how many paths to list, ≥ 1 (default 10)."
            | Beam _ -> "prefixes kept between layers, ≥ 1 (default 64); the search is exact when nothing is pruned."
            | Only _ -> "attn or mlp: paths through attention layers only, or through MLPs only."
            | Max_Length _ -> "the most layers a path may use, ≥ 0 (default: no limit)."
            | Plot _ -> "write the picture of the paths (.png or .svg)."
            | Dtype _ -> ModelArgs.dtypeUsage
            | Compute_Dtype _ -> ModelArgs.computeDtypeUsage
            | Device _ -> ModelArgs.deviceUsage
            | Allow_Nonfinite -> allowNonFiniteUsage
            | Json -> "print one JSON object instead of a table."

/// A token of `--target`: #ID, or one token as tables print it or as text that encodes to it.
let private token (model: Model) (text: string) =
    match text.StartsWith "#", Int32.TryParse(text.TrimStart '#') with
    | true, (true, id) ->
        if id < 0 || id >= model.Net.Vocab then
            raise (
                IndexRangeException(
                    sprintf
                        "--target token #%d is outside the vocabulary; valid ids are 0..%d."
                        id
                        (model.Net.Vocab - 1)
                )
            )
        id
    | _ -> (Vocabulary.tokenSet model.Tokenizer model.Net.Vocab "--target" [ text ]).[0]

let private target (model: Model) (words: string list) =
    let usage = "write --target top, --target token T or --target diff A B"
    match words |> List.map (fun w -> w.Trim()) with
    | []
    | [ "top" ] -> PathTarget.TopLogProb
    | [ "token"; t ] -> PathTarget.Token(token model t)
    | [ "diff"; a; b ] -> PathTarget.Difference(token model a, token model b)
    | other -> raise (InvalidPlanException(sprintf "--target %s is not a target; %s." (String.Join(" ", other)) usage))

let private layers (text: string option) =
    match text |> Option.map (fun t -> t.Trim().ToLowerInvariant()) with
    | None -> PathLayers.All
    | Some("attn" | "attention") -> PathLayers.Attention
    | Some "mlp" -> PathLayers.Mlp
    | Some other ->
        raise (InvalidPlanException(sprintf "--only %s is not a layer kind; write --only attn or --only mlp." other))

let private execute (args: ParseResults<Args>) =
    let plot = checkOutputs "--plot" (args.TryGetResult Plot)
    let request = ModelArgs.read args <@ Model @> <@ Dtype @> <@ Compute_Dtype @> <@ Device @> <@ Allow_Nonfinite @>
    use model = ModelArgs.load request
    warnReplacementCharacters "--prompt" (args.GetResult Prompt)
    use tokens = Model.encode model (args.GetResult Prompt)
    let options =
        {
            Position = args.TryGetResult Position
            Top = args.GetResult(Top, PathSearchOptions.Default.Top)
            Beam = args.GetResult(Beam, PathSearchOptions.Default.Beam)
            Layers = layers (args.TryGetResult Only)
            MaxLength = args.TryGetResult Max_Length
        }
    let aim = target model (args.GetResult(Target, []))
    let result = PathSearch.search model.Net tokens aim options
    let piece (id: int) = LogitMetrics.piece model.Tokenizer id
    let described =
        match aim with
        | PathTarget.Token id -> sprintf "the logit of %s" (piece id)
        | PathTarget.Difference(a, b) -> sprintf "logit %s − logit %s" (piece a) (piece b)
        | _ -> result.TargetName
    let read = piece (int (tokens.[0L, int64 result.Position].item<int64> ()))
    let nonFinite =
        NonFinite.tryFindValues
            "the path search (target, constant and contributions)"
            (result.Target :: result.Constant :: [ for p in result.Paths -> p.Contribution ])
    // The checkpoint folder's name (or "toy"), not its whole path, heads the table and the picture.
    let source = IO.Path.GetFileName(model.Source.TrimEnd('/'))
    savePicture plot (fun () ->
        PathFigure.scene (sprintf "%s, position %d (%s): %s" source result.Position read described) result)
    if args.Contains Json then
        writeJson
            {|
                target = described
                position = result.Position
                token = read
                value = result.Target
                constant = result.Constant
                carried = result.Carried
                remainder = result.Remainder
                evaluated = result.Evaluated
                total_paths = result.TotalPaths
                pruned = result.Pruned
                exact = result.Exact
                paths =
                    [|
                        for p in result.Paths ->
                            {|
                                path = p.Notation
                                layers = p.Names
                                contribution = p.Contribution
                                share = p.Share
                                cumulative_share = p.CumulativeShare
                            |}
                    |]
                non_finite = nonFiniteJson nonFinite
            |}
    else
        printfn
            "Paths of %s for %s at position %d (%s) = %.6g; paths carry %.6g, the constant (biases, curvature) %.6g."
            source
            described
            result.Position
            read
            result.Target
            result.Carried
            result.Constant
        printTable
            [ "#"; "path"; "layers"; "contribution"; "share"; "cumulative" ]
            [
                for i, p in List.indexed result.Paths ->
                    [
                        string (i + 1)
                        p.Notation
                        p.Names
                        sprintf "%+.6g" p.Contribution
                        sprintf "%.1f%%" (100.0 * p.Share)
                        sprintf "%.1f%%" (100.0 * p.CumulativeShare)
                    ]
            ]
        printfn
            "Remainder (other paths and their interaction): %.6g. %s"
            result.Remainder
            (if result.Exact then
                 sprintf "Exact: %d prefixes evaluated, none pruned, of %g paths." result.Evaluated result.TotalPaths
             else
                 sprintf
                     "Beam search (heuristic): %d prefixes evaluated of %g paths, %d pruned; a wider --beam explores more."
                     result.Evaluated
                     result.TotalPaths
                     result.Pruned)
    finish request.AllowNonFinite nonFinite

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
