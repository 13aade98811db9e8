/// `jet info`: what a model is — family, sizes, parameter count, dtype — and its residual layers.
module Jet.Cli.Commands.Info

open Argu
open Jet.Core
open Jet.Core.Models
open Jet.Cli
open Jet.Cli.Console

type Args =
    | [<Mandatory>] Model of source: string
    | Dtype of name: string
    | Compute_Dtype of name: string
    | Device of name: string
    | Allow_Nonfinite
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> ModelArgs.modelUsage
            | Dtype _ -> ModelArgs.dtypeUsage
            | Compute_Dtype _ -> ModelArgs.computeDtypeUsage
            | Device _ -> ModelArgs.deviceUsage
            | Allow_Nonfinite ->
                "load weights holding NaN or ±Inf (the first is reported on stderr and in the JSON's non_finite field)."
            | Json -> "print one JSON object instead of text."

let private execute (args: ParseResults<Args>) =
    let request =
        ModelArgs.read args <@ Model @> <@ Dtype @> <@ Compute_Dtype @> <@ Device @> <@ Allow_Nonfinite @>
    use model = ModelArgs.load request
    // Without --allow-nonfinite the load has already refused non-finite weights.
    let nonFinite =
        if request.AllowNonFinite then
            Jet.Core.Apps.NonFiniteChecks.weights model.Net
        else
            None
    let s = Model.summary model
    let layers =
        model.Net.Spec.Layers
        |> List.mapi (fun i l ->
            {| layer = i + 1; name = l.Name; block = l.Block; kind = (sprintf "%A" l.Kind).ToLowerInvariant() |})
    let steps = Jet.Core.Apps.Readouts.stepsOf model.Net
    if args.Contains Json then
        writeJson
            {|
                family = s.Family
                source = s.Source
                blocks = s.Blocks
                residual_layers = s.ResidualLayers
                width = s.Width
                heads = s.Heads
                kv_heads = s.KvHeads
                vocab = s.Vocab
                max_positions = Option.toNullable s.MaxPositions
                parameters = s.Parameters
                dtype = s.DType
                storage_dtype = s.StorageDType
                weight_bytes = s.WeightBytes
                layers = layers
                path_steps =
                    [| for st in steps -> {| name = st.Name; notation = st.Notation; description = st.Description |} |]
                non_finite = nonFiniteJson nonFinite
            |}
    else
        printTable
            [ "property"; "value" ]
            [
                [ "family"; s.Family ]
                [ "source"; s.Source ]
                [ "blocks"; string s.Blocks ]
                [ "residual layers"; string s.ResidualLayers ]
                [ "width"; string s.Width ]
                [
                    "heads"
                    (if s.KvHeads <> s.Heads then
                         sprintf "%d (%d KV)" s.Heads s.KvHeads
                     else
                         string s.Heads)
                ]
                [ "vocabulary"; string s.Vocab ]
                [
                    "context"
                    (match s.MaxPositions with
                     | Some p -> string p
                     | None -> "unlimited")
                ]
                [ "parameters"; s.Parameters.ToString("N0", System.Globalization.CultureInfo.InvariantCulture) ]
                [ "compute dtype"; s.DType ]
                [ "weights"; sprintf "%s, %s" s.StorageDType (Memory.format (float s.WeightBytes)) ]
            ]
        printfn ""
        printfn "%O" model.Net
        printfn ""
        printfn "Path steps (jet bigrams --path 'emb>STEP>…', steps in order; see docs/lenses-and-ngrams.md):"
        printTable
            [ "step"; "notation"; "what it computes" ]
            [ for st in steps -> [ st.Name; st.Notation; st.Description ] ]
    0

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
