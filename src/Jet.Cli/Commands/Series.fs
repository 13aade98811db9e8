/// `jet series`: the jet of a built-in scalar function, coefficient by coefficient, against the exact value.
module Jet.Cli.Commands.Series

open System
open Argu
open TorchSharp
open Jet.Core
open Jet.Cli.Console

type Args =
    | Function of name: string
    | Order of k: int
    | At of x: float
    | To of y: float
    | Allow_Nonfinite
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Function _ -> "the function: sin, exp, tanh, gelu, cubic (x + x² + x³) (default: sin)."
            | Order _ -> sprintf "the jet order k, 0..%d (default: 4)." Expansion.MaxOrder
            | At _ -> "the centre x, a finite number (default: 0.5)."
            | To _ -> "the evaluation point y, a finite number (default: 1.0)."
            | Allow_Nonfinite -> allowNonFiniteUsage
            | Json -> "print one JSON object instead of a table."

let private functions: (string * (Tensor -> Tensor)) list =
    [
        "sin", (fun x -> torch.sin x)
        "exp", (fun x -> torch.exp x)
        "tanh", (fun x -> torch.tanh x)
        "gelu", Primitives.Activations.gelu
        "cubic", (fun x -> x + x * x + x * x * x)
    ]

let private execute (args: ParseResults<Args>) =
    let name = args.GetResult(Function, "sin")
    let f =
        match functions |> List.tryFind (fun (n, _) -> n = name) with
        | Some(_, f) -> f
        | None ->
            let known = functions |> List.map fst |> String.concat ", "
            raise (InvalidPlanException(sprintf "Unknown function '%s'; choose one of: %s." name known))
    let order = args.GetResult(Order, 4)
    Expansion.checkOrder "--order" order
    let x, y = args.GetResult(At, 0.5), args.GetResult(To, 1.0)
    for option, value in [ "--at", x; "--to", y ] do
        if not (Double.IsFinite value) then
            raise (InvalidPlanException(sprintf "%s must be a finite number; got %g." option value))
    let xt = torch.tensor([| x |], dtype = torch.float64).squeeze ()
    let yt = torch.tensor([| y |], dtype = torch.float64).squeeze ()
    use result =
        Jet.compute { JetOptions.Default with Order = order; Differentiable = false } f xt (Some yt)
    let exact = (f yt).item<float> ()
    let coefficients = result.Coefficients |> Seq.map (fun c -> c.item<float> ()) |> List.ofSeq
    let sums = result.PartialSums |> Seq.map (fun c -> c.item<float> ()) |> List.ofSeq
    let nonFinite =
        NonFinite.first
            [
                (fun () -> NonFinite.tryFindValues "the exact value f(y)" [ exact ])
                (fun () -> NonFinite.tryFindValues "the coefficients c_j [j]" coefficients)
                (fun () -> NonFinite.tryFindValues "the partial sums [j]" sums)
            ]
    if args.Contains Json then
        writeJson
            {|
                ``function`` = name
                order = order
                x = x
                y = y
                coefficients = coefficients
                partial_sums = sums
                exact = exact
                non_finite = nonFiniteJson nonFinite
            |}
    else
        printfn "J^%d %s(%g)(%g): Taylor polynomial of %s at x = %g, evaluated at y = %g" order name x y name x y
        printTable
            [ "j"; "c_j = D^j f(x)[y−x]^j / j!"; "partial sum"; "|f(y) − partial sum|" ]
            [
                for j in 0..order ->
                    [
                        string j
                        sprintf "%+.12g" coefficients.[j]
                        sprintf "%.12f" sums.[j]
                        sprintf "%.3g" (abs (exact - sums.[j]))
                    ]
            ]
        printfn "f(y) = %.12f" exact
    finish (args.Contains Allow_Nonfinite) nonFinite

let run (args: ParseResults<Args>) = guard (fun () -> execute args)
