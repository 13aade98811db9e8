namespace Jet.Core.Apps

open Jet.Core

/// Finds parts of a network by its structure, so applications work on every network written in the DSL.
[<RequireQualifiedAccess>]
module NetParts =

    /// True when `f` contains a primitive that mixes positions (self-attention) anywhere.
    let rec mixesPositions (f: Fn) : bool =
        match Fn.node f with
        | FnNode.Primitive rule -> rule.MixesPositions
        | FnNode.Sum fs
        | FnNode.Chain fs -> List.exists mixesPositions fs
        | FnNode.Scale(_, inner) -> mixesPositions inner
        | FnNode.Custom _ -> false

    /// The MLP part of one residual layer, pre-norm included, if it has one: an MLP layer's whole γ; the
    /// attention-free branches of a parallel layer's γ = attn(LN₁ h) + mlp(LN₂ h); a whole-block layer whose
    /// γ has no attention (the toy's blocks are MLPs).
    let mlpOfLayer (layer: ResidualLayer) : Fn option =
        match layer.Kind with
        | LayerKind.Mlp -> Some layer.Gamma
        | LayerKind.Attention -> None
        | LayerKind.Parallel ->
            match layer.Gamma with
            | Sum branches ->
                match branches |> List.filter (mixesPositions >> not) with
                | [] -> None
                | [ one ] -> Some one
                | several -> Some(Sum several)
            | gamma when not (mixesPositions gamma) -> Some gamma
            | _ -> None
        | LayerKind.Block
        | LayerKind.Other _ ->
            if mixesPositions layer.Gamma then
                None
            else
                Some layer.Gamma

    /// The blocks (1-based) that have an MLP part, in order.
    let blocksWithMlp (net: Net) : int list =
        net.Spec.Layers
        |> List.filter (mlpOfLayer >> Option.isSome)
        |> List.map (fun l -> l.Block)
        |> List.distinct

    /// The MLP of block `block` (1-based) with its pre-norm, as a function of the residual stream
    /// [batch, seq, d] → [batch, seq, d]. Fails with the blocks that have one when this block has none.
    let mlpOfBlock (net: Net) (block: int) : Fn =
        let layers = Net.layersOfBlock block net
        match layers |> List.tryPick (fun l -> mlpOfLayer net.Spec.Layers.[l - 1]) with
        | Some mlp -> mlp
        | None ->
            let described =
                layers
                |> List.map (fun l ->
                    let layer = net.Spec.Layers.[l - 1]
                    sprintf "%s (%A)" layer.Name layer.Kind)
                |> String.concat ", "
            let message =
                match blocksWithMlp net with
                | [] ->
                    sprintf
                        "This network (%s) has no MLP in any block, so it has no MLP path; block %d has %s."
                        net.Spec.Name
                        block
                        described
                | some ->
                    let valid = some |> List.map string |> String.concat ", "
                    sprintf "Block %d has no MLP (its layers: %s); blocks with an MLP: %s." block described valid
            raise (InvalidPlanException message)
