/// `jet joint-lens`: the joint jet lens of a prompt, its fitted weights and picture.
module Jet.Cli.Commands.JointLensCommand

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
    | Iters of n: int
    | Lr of rate: float
    | Out of file: string
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> "toy, or a checkpoint directory."
            | Prompt _ -> "the text to fit the lens on."
            | Layers _ -> "increasing streams l₁,l₂,… whose centres are h_l₁, h_l₂ − h_l₁, … (default: all)."
            | Order _ -> "the jet order k ≥ 0 (default: 0)."
            | Iters _ -> "Adam steps (default: 200)."
            | Lr _ -> "Adam's learning rate (default: 0.05)."
            | Out _ -> "write the joint-lens table picture (.png or .svg)."
            | Json -> "print one JSON object instead of tables."

let private execute (args: ParseResults<Args>) =
    let model = resolve (args.GetResult Model)
    let tokens = Model.encode model (args.GetResult Prompt)
    let defaults = JointLensOptions.Default
    let options =
        {
            defaults with
                Streams = args.TryGetResult Layers |> Option.map (parseIndices "--layers") |> Option.defaultValue []
                Order = args.GetResult(Order, defaults.Order)
                Iterations = args.GetResult(Iters, defaults.Iterations)
                LearningRate = args.GetResult(Lr, defaults.LearningRate)
        }
    let options = { options with Progress = Some(ProgressBar("fitting", int64 options.Iterations) :> System.IProgress<int64>) }
    use result = JointLens.fit model.Net tokens options
    savePicture (args.TryGetResult Out) (fun () -> Figures.jointLens model.Tokenizer result 0)
    let weights (i: int) = result.Weights.[int64 i, 0L].to_type(TorchSharp.torch.float64).cpu().data<float>().ToArray()
    let top (logits: Tensor) = LogitMetrics.top model.Tokenizer 1 logits.[0L] |> Array.map (fun r -> r.[0])
    if args.Contains Json then
        writeJson
            {|
                tokens = tokenObjects model result.Tokens
                order = result.Order
                layers = result.Streams
                losses = result.Losses
                centres =
                    [| for i, centre in List.indexed result.Centres ->
                           {|
                               centre = Print.centre centre
                               path = string result.Paths.[i]
                               weights = weights i
                               top = top result.PerCentre.[i] |> Array.map (fun r -> {| id = r.Id; token = r.Token; logit = r.Score |})
                           |} |]
                combined =
                    {|
                        top = top result.Combined |> Array.map (fun r -> {| id = r.Id; token = r.Token; logit = r.Score |})
                        cosine = LogitMetrics.row result.Agreement.Cosine 0
                        kl = LogitMetrics.row result.Agreement.Kl 0
                    |}
            |}
    else
        let columns = tokenPieces model result.Tokens
        printfn "Joint jet lens of order %d on %s: loss %.6g → %.6g after %d Adam steps" result.Order model.Source result.Losses.[0] (Array.last result.Losses) (result.Losses.Length - 1)
        printTable
            ([ "centre"; "mean w" ] @ columns)
            ([ for i, centre in List.indexed result.Centres ->
                  let w = weights i
                  [ Print.centre centre; sprintf "%.1f%%" (100.0 * Array.average w) ]
                  @ [ for p, r in Array.indexed (top result.PerCentre.[i]) -> sprintf "%s %.0f%%" r.Token (100.0 * w.[p]) ] ]
             @ [ [ "joint lens"; "" ] @ [ for r in top result.Combined -> r.Token ]
                 [ "model"; "" ] @ [ for r in top result.Logits -> r.Token ] ])
        printfn "cosine %.4f · KL %.4f · top-1 %.0f%% (means over positions)" (Array.average (LogitMetrics.row result.Agreement.Cosine 0)) (Array.average (LogitMetrics.row result.Agreement.Kl 0)) (100.0 * Array.average (LogitMetrics.row result.Agreement.Top1 0))
    0

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
