/// `jet lens`: the iterative jet lens of a prompt, layer by layer, with its metrics and picture.
module Jet.Cli.Commands.LensCommand

open Argu
open Jet.Core
open Jet.Core.Models
open Jet.Core.Apps
open Jet.Core.Pictures
open Jet.Cli.Console
open Jet.Cli.Commands.ModelOption

type Args =
    | [<Mandatory>] Model of dir: string
    | [<Mandatory>] Prompt of text: string
    | Layers of streams: string
    | Order of k: int
    | Top of n: int
    | Out of file: string
    | Plot of file: string
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> "toy, or a checkpoint directory."
            | Prompt _ -> "the text to read the lens on."
            | Layers _ -> "streams l of h_l to read, comma-separated (0 = encoder output … L; default: all)."
            | Order _ -> "the jet order k ≥ 0 (default: 0, the logit lens)."
            | Top _ -> "tokens listed per position, and the k of the top-k overlap (default: 5)."
            | Out _ -> "write the lens table picture (.png or .svg)."
            | Plot _ -> "write the per-layer metric plot (.png or .svg)."
            | Json -> "print one JSON object instead of tables."

let private execute (args: ParseResults<Args>) =
    let model = resolve (args.GetResult Model)
    let tokens = Model.encode model (args.GetResult Prompt)
    let streams = args.TryGetResult Layers |> Option.map (parseIndices "--layers") |> Option.defaultValue []
    let top = args.GetResult(Top, 5)
    if top < 1 || top > model.Net.Vocab then
        raise (IndexRangeException(sprintf "--top must be 1..%d (the vocabulary size); got %d." model.Net.Vocab top))
    use result = IterativeLens.run model.Net tokens { Streams = streams; Order = args.GetResult(Order, 0); TopK = top }
    savePicture (args.TryGetResult Out) (fun () -> Figures.lens model.Tokenizer result 0)
    savePicture (args.TryGetResult Plot) (fun () -> Figures.lensMetrics result 0)
    let positions (layer: LensLayer) =
        let best = LogitMetrics.top model.Tokenizer top layer.Logits.[0L]
        let cos, kl = LogitMetrics.row layer.Agreement.Cosine 0, LogitMetrics.row layer.Agreement.Kl 0
        let agree, overlap = LogitMetrics.row layer.Agreement.Top1 0, LogitMetrics.row layer.Agreement.TopKOverlap 0
        best |> Array.mapi (fun p ranked -> ranked, cos.[p], kl.[p], agree.[p], overlap.[p])
    if args.Contains Json then
        writeJson
            {|
                tokens = tokenObjects model result.Tokens
                order = result.Order
                layers =
                    [| for layer in result.Layers ->
                           {|
                               layer = layer.Stream
                               path = string layer.Path
                               positions =
                                   [| for ranked, cos, kl, agree, overlap in positions layer ->
                                          {|
                                              top = ranked |> Array.map (fun r -> {| id = r.Id; token = r.Token; logit = r.Score |})
                                              cosine = cos
                                              kl = kl
                                              top1_agreement = agree
                                              topk_overlap = overlap
                                          |} |]
                           |} |]
            |}
    else
        let columns = tokenPieces model result.Tokens
        printfn "%s on %s: top-1 token per stream and position" (if result.Order = 0 then "Logit lens" else sprintf "Jet lens of order %d" result.Order) model.Source
        let mean (xs: float[]) = Array.average xs
        printTable
            ([ "stream" ] @ columns @ [ "cos"; "KL"; "top-1"; sprintf "top-%d" top ])
            ([ for layer in result.Layers ->
                  let rows = positions layer
                  [ Figures.streamLabel layer.Stream ]
                  @ [ for ranked, _, _, _, _ in rows -> ranked.[0].Token ]
                  @ [ sprintf "%.4f" (rows |> Array.map (fun (_, c, _, _, _) -> c) |> mean)
                      sprintf "%.4f" (rows |> Array.map (fun (_, _, k, _, _) -> k) |> mean)
                      sprintf "%.0f%%" (100.0 * (rows |> Array.map (fun (_, _, _, a, _) -> a) |> mean))
                      sprintf "%.0f%%" (100.0 * (rows |> Array.map (fun (_, _, _, _, o) -> o) |> mean)) ] ]
             @ [ [ "model" ] @ [ for ranked in LogitMetrics.top model.Tokenizer 1 result.Logits.[0L] -> ranked.[0].Token ] @ [ ""; ""; ""; "" ] ])
    0

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
