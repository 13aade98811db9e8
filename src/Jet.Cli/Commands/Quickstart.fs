/// `jet quickstart`: the paper's Sec. 4.2 carving of the built-in toy network into four input→output paths.
module Jet.Cli.Commands.Quickstart

open System
open System.IO
open Argu
open TorchSharp
open Jet.Core
open Jet.Core.Apps
open Jet.Core.Models
open Jet.Core.Pictures
open Jet.Cli.Console

type Args =
    | Seed of int
    | [<CustomCommandLine("--d")>] Width of int
    | Order of int
    | Out of path: string
    | Allow_Nonfinite
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Seed _ -> "seed of the toy's weights and of the random prompt (default: 0)."
            | Width _ -> "width d of the toy network, ≥ 1 and within the memory available (default: 32)."
            | Order _ -> sprintf "order of both expansions, 0..%d (default: 1)." Expansion.MaxOrder
            | Allow_Nonfinite -> allowNonFiniteUsage
            | Out _ -> "write the picture of each path's contribution, PNG or SVG by the extension (default: none)."
            | Json -> "print one JSON object (paths, remainder, logits, reconstruction_error) instead of a table."

let private promptLength = 8

let private execute (args: ParseResults<Args>) =
    let seed = args.GetResult(Seed, 0)
    let width = args.GetResult(Width, Model.ToyWidth)
    let order = args.GetResult(Order, 1)
    let out = checkOutputs "--out" (args.TryGetResult Out)
    if width < 1 then
        raise (IndexRangeException(sprintf "--d must be ≥ 1; got %d." width))
    Expansion.checkOrder "--order" order
    use model = Model.toy seed width torch.float32
    let tokens = Carving.randomPrompt seed model.Net.Vocab promptLength
    let plan = Carving.twoStep order Engine.Taylor
    use session = Expand.session model.Net tokens
    let carving = session.Unembed(session.Expand plan)
    let summary = PathSummary.ofLogitPaths carving
    let reading = Readings.carving model.Tokenizer tokens summary
    let nonFinite = NonFiniteChecks.carving carving reading
    let pieces (tokens: TokenPiece[]) = tokens |> Array.map (fun t -> t.Piece)
    let picture =
        CarvingFigure.scene
            (sprintf "Toy network (d = %d): four paths at order %d" width order)
            summary
            [| for t in reading.Inputs -> t.Piece |]
            (pieces reading.ModelTop1)
    out |> Option.iter (fun file -> Pictures.save file picture)
    if args.Contains Json then
        writeJson
            {|
                paths = [ for p in carving.Paths -> {| name = string p.Path; logits = Readings.matrix p.Value.[0L] |} ]
                remainder = Readings.matrix carving.Remainder.[0L]
                logits = Readings.matrix carving.Logits.[0L]
                reconstruction_error = reading.ReconstructionError
                non_finite = nonFiniteJson nonFinite
            |}
    else
        let quoted (pieces: string[]) = "\"" + String.concat "" pieces + "\""
        printfn
            "JetDsl quickstart: carving the toy residual network (vocabulary %d, d = %d, 2 blocks), as in Sec. 4.2 of the paper"
            model.Net.Vocab
            width
        printfn
            "prompt (seed %d, %d tokens): %s  ids [%s]"
            seed
            promptLength
            (quoted [| for t in reading.Inputs -> t.Piece |])
            (reading.Inputs |> Array.map (fun t -> string t.Id) |> String.concat " ")
        printfn
            "plan: centres {h₀, γ₁(h₀)} → expand block 2 at order %d (4 sub-streams) → expand the decoder around them at order %d (4 paths)"
            order
            order
        printfn ""
        let row (p: CarvingPath) =
            [
                p.Name
                sprintf "%.3f" p.NormRatio
                sprintf "%+.3f" p.MeanCosine
                quoted (pieces p.Top1)
                sprintf "%d/%d" p.Top1Agreement promptLength
            ]
        printTable
            [ "path"; "‖path‖/‖logits‖"; "mean cos"; "top-1 per position"; "top-1 = model" ]
            ([ for p in reading.Paths -> row p ]
             @ [
                 row reading.Remainder
                 [
                     "model logits"
                     "1.000"
                     "+1.000"
                     quoted (pieces reading.ModelTop1)
                     sprintf "%d/%d" promptLength promptLength
                 ]
             ])
        printfn ""
        printfn "‖remainder‖ = %.4g (in logit space)" reading.RemainderNorm
        printfn "reconstruction error max|Σ paths + remainder − logits| = %.3g" reading.ReconstructionError
        match out with
        | Some file -> printfn "picture: %s" file
        | None -> printfn "picture: none (add --out FILE.png or --out FILE.svg to draw each path's contribution)"
    finish (args.Contains Allow_Nonfinite) nonFinite

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
