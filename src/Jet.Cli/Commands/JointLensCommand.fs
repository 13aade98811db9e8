/// `jet joint-lens`: the joint jet lens of a prompt, its fitted weights and picture.
module Jet.Cli.Commands.JointLensCommand

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
    | Iters of n: int
    | Lr of rate: float
    | Out of file: string
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
            | Prompt _ -> "the text to fit the lens on."
            | Streams _ -> "increasing streams l₁,l₂,… whose centres are h_l₁, h_l₂ − h_l₁, … (default: all)."
            | Order _ -> "the jet order k, 0..64 (default: 0); memory grows with (k+1)² and is checked first."
            | Iters _ -> "Adam steps, 0..1000000 (default: 200)."
            | Lr _ -> "Adam's learning rate, a finite number > 0 (default: 0.05)."
            | Out _ -> "write the joint-lens table picture (.png or .svg)."
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
    let request =
        ModelArgs.read args <@ Model @> <@ Dtype @> <@ Compute_Dtype @> <@ Device @> <@ Allow_Nonfinite @>
    use model = ModelArgs.load request
    warnReplacementCharacters "--prompt" (args.GetResult Prompt)
    let tokens = Model.encode model (args.GetResult Prompt)
    let defaults = JointLensOptions.Default
    let options =
        { defaults with
            Streams = args.TryGetResult Streams |> Option.map (parseIndices "--streams") |> Option.defaultValue []
            Order = args.GetResult(Order, defaults.Order)
            Iterations = args.GetResult(Iters, defaults.Iterations)
            LearningRate = args.GetResult(Lr, defaults.LearningRate)
        }
    let options =
        { options with
            Progress = Some(ProgressBar("fitting", int64 options.Iterations) :> System.IProgress<int64>)
        }
    use result = JointLens.fit model.Net tokens options
    // One best token per position: the tables show the top-1 token.
    let reading = Readings.jointLens model.Tokenizer result 1
    let nonFinite = NonFiniteChecks.jointLens result reading
    savePicture out (fun () -> Figures.jointLens reading 0)
    let best (top: RankedToken[]) = {| id = top.[0].Id; token = top.[0].Token; logit = top.[0].Score |}
    if args.Contains Json then
        writeJson
            {|
                tokens = [| for t in reading.Inputs.[0] -> {| id = t.Id; text = t.Text; piece = t.Piece |} |]
                order = reading.Order
                streams = reading.Streams
                losses = reading.Losses
                centres =
                    [|
                        for c in reading.Centres ->
                            {|
                                centre = c.Centre
                                path = c.Path
                                weights = [| for p in c.Positions -> p.Weight |]
                                top = [| for p in c.Positions -> best p.Top |]
                            |}
                    |]
                combined =
                    {|
                        top = [| for p in reading.Positions -> best p.Top |]
                        cosine = [| for p in reading.Positions -> p.Agreement.Cosine |]
                        kl = [| for p in reading.Positions -> p.Agreement.Kl |]
                    |}
                non_finite = nonFiniteJson nonFinite
            |}
    else
        let losses = reading.Losses
        printfn
            "Joint jet lens of order %d on %s: loss %.6g → %.6g after %d Adam steps"
            reading.Order
            model.Source
            losses.[0]
            (Array.last losses)
            (losses.Length - 1)
        printTable
            ([ "centre"; "mean w" ] @ [ for t in reading.Inputs.[0] -> t.Piece ])
            ([
                for c in reading.Centres ->
                    [ c.Centre; sprintf "%.1f%%" (100.0 * c.MeanWeight) ]
                    @ [ for p in c.Positions -> sprintf "%s %.0f%%" p.Top.[0].Token (100.0 * p.Weight) ]
             ]
             @ [
                 [ "joint lens"; "" ] @ [ for p in reading.Positions -> p.Top.[0].Token ]
                 [ "model"; "" ] @ [ for p in reading.Predictions -> p.Top.[0].Token ]
             ])
        printfn
            "cosine %.4f · KL %.4f · top-1 %.0f%% (means over positions)"
            reading.Mean.Cosine
            reading.Mean.Kl
            (100.0 * reading.Mean.Top1)
    finish request.AllowNonFinite nonFinite

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
