/// `jet lens`: the iterative jet lens of a prompt, stream by stream, with its metrics and picture.
module Jet.Cli.Commands.LensCommand

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
    | Streams of indices: string
    | Order of k: int
    | Top of n: int
    | Out of file: string
    | Plot of file: string
    | Dtype of name: string
    | Compute_Dtype of name: string
    | Device of name: string
    | Allow_Nonfinite
    | Json
    | [<Hidden>] Layers of indices: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> ModelArgs.modelUsage
            | Prompt _ -> "the text to read the lens on."
            | Streams _ -> "streams l of h_l to read, comma-separated (0 = encoder output … L; default: all)."
            | Order _ ->
                "the jet order k, 0..64 (default: 0, the logit lens); memory grows with (k+1)² and is checked first."
            | Top _ -> "tokens listed per position, and the k of the top-k overlap, 1..vocabulary size (default: 5)."
            | Out _ -> "write the lens table picture (.png or .svg)."
            | Plot _ -> "write the per-stream metric plot (.png or .svg)."
            | Dtype _ -> ModelArgs.dtypeUsage
            | Compute_Dtype _ -> ModelArgs.computeDtypeUsage
            | Device _ -> ModelArgs.deviceUsage
            | Allow_Nonfinite -> allowNonFiniteUsage
            | Json -> "print one JSON object instead of tables."
            | Layers _ -> RenamedLayers

let private execute (args: ParseResults<Args>) =
    if args.Contains Layers then
        raise (InvalidPlanException RenamedLayers)
    let out = checkOutputs "--out" (args.TryGetResult Out)
    let plot = checkOutputs "--plot" (args.TryGetResult Plot)
    let request =
        ModelArgs.read args <@ Model @> <@ Dtype @> <@ Compute_Dtype @> <@ Device @> <@ Allow_Nonfinite @>
    use model = ModelArgs.load request
    warnReplacementCharacters "--prompt" (args.GetResult Prompt)
    let tokens = Model.encode model (args.GetResult Prompt)
    let streams =
        args.TryGetResult Streams |> Option.map (parseIndices "--streams") |> Option.defaultValue []
    let top = args.GetResult(Top, 5)
    if top < 1 || top > model.Net.Vocab then
        raise (IndexRangeException(sprintf "--top must be 1..%d (the vocabulary size); got %d." model.Net.Vocab top))
    use result =
        IterativeLens.run model.Net tokens { Streams = streams; Order = args.GetResult(Order, 0); TopK = top }
    let reading = Readings.lens model.Tokenizer result top
    let nonFinite = NonFiniteChecks.lens result reading
    savePicture out (fun () -> Figures.lens reading 0)
    savePicture plot (fun () -> Figures.lensMetrics reading 0)
    if args.Contains Json then
        writeJson
            {|
                tokens = [| for t in reading.Inputs.[0] -> {| id = t.Id; text = t.Text; piece = t.Piece |} |]
                order = reading.Order
                streams =
                    [|
                        for s in reading.Streams ->
                            {|
                                stream = s.Stream
                                path = s.Path
                                positions =
                                    [|
                                        for p in s.Positions ->
                                            {|
                                                top =
                                                    [|
                                                        for t in p.Top ->
                                                            {| id = t.Id; token = t.Token; logit = t.Score |}
                                                    |]
                                                cosine = p.Agreement.Cosine
                                                kl = p.Agreement.Kl
                                                top1_agreement = p.Agreement.Top1
                                                topk_overlap = p.Agreement.TopKOverlap
                                            |}
                                    |]
                            |}
                    |]
                non_finite = nonFiniteJson nonFinite
            |}
    else
        printfn
            "%s on %s: top-1 token per stream and position"
            (if reading.Order = 0 then
                 "Logit lens"
             else
                 sprintf "Jet lens of order %d" reading.Order)
            model.Source
        printTable
            ([ "stream" ]
             @ [ for t in reading.Inputs.[0] -> t.Piece ]
             @ [ "cos"; "KL"; "top-1"; sprintf "top-%d" top ])
            ([
                for s in reading.Streams ->
                    [ Figures.streamLabel s.Stream ]
                    @ [ for p in s.Positions -> p.Top.[0].Token ]
                    @ [
                        sprintf "%.4f" s.Mean.Cosine
                        sprintf "%.4f" s.Mean.Kl
                        sprintf "%.0f%%" (100.0 * s.Mean.Top1)
                        sprintf "%.0f%%" (100.0 * s.Mean.TopKOverlap)
                    ]
             ]
             @ [ [ "model" ] @ [ for p in reading.Predictions -> p.Top.[0].Token ] @ [ ""; ""; ""; "" ] ])
    finish request.AllowNonFinite nonFinite

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
