namespace Jet.Core.Apps

open Jet.Core

/// Where the first non-finite value of each application's result appears, checked in the order the values are
/// computed (weights, the model's logits, then each stream, path or centre, then the metrics), so the first report
/// names where the trouble starts. Every function returns None when the result is finite.
[<RequireQualifiedAccess>]
module NonFiniteChecks =
    let private tensor (where: string) (t: Tensor) () = NonFinite.tryFind where t
    let private values (where: string) (xs: float seq) () = NonFinite.tryFindValues where xs

    /// The first non-finite parameter of a network, by parameter name in sorted order.
    [<CompiledName("Weights")>]
    let weights (net: Net) : NonFiniteReport option =
        let tensors = net.Parameters.Tensors
        NonFinite.first [ for name in net.Parameters.Names -> tensor (sprintf "weight '%s'" name) tensors.[name] ]

    /// Logits [batch, seq, vocab] of a forward pass.
    [<CompiledName("Logits")>]
    let logits (logits: Tensor) : NonFiniteReport option =
        NonFinite.tryFind "the model's logits [row, position, token]" logits

    /// An iterative lens: the model's logits, each stream's lens logits, then each stream's cosine and KL.
    [<CompiledName("Lens")>]
    let lens (result: LensResult) (reading: LensReadout) : NonFiniteReport option =
        NonFinite.first
            [
                tensor "the model's logits [row, position, token]" result.Logits
                for s in result.Streams do
                    tensor
                        (sprintf "the lens logits of stream h_%d, %O [row, position, token]" s.Stream s.Path)
                        s.Logits
                for s in reading.Streams do
                    values
                        (sprintf "the cosine of stream h_%d [position]" s.Stream)
                        [ for p in s.Positions -> p.Agreement.Cosine ]
                    values
                        (sprintf "the KL of stream h_%d [position]" s.Stream)
                        [ for p in s.Positions -> p.Agreement.Kl ]
            ]

    /// A joint lens: the model's logits, the loss at each Adam step, each centre's weights and logits, the combined
    /// lens and its cosine and KL.
    [<CompiledName("JointLens")>]
    let jointLens (result: JointLensResult) (reading: JointLensReadout) : NonFiniteReport option =
        NonFinite.first
            [
                tensor "the model's logits [row, position, token]" result.Logits
                for path, logits in List.zip result.Paths result.PerCentre do
                    tensor (sprintf "the weighted logits of centre %O [row, position, token]" path) logits
                values "the loss [Adam step]" result.Losses
                tensor "the centre weights [centre, row, position]" result.Weights
                tensor "the joint lens logits [row, position, token]" result.Combined
                values "the joint lens cosine [position]" [ for p in reading.Positions -> p.Agreement.Cosine ]
                values "the joint lens KL [position]" [ for p in reading.Positions -> p.Agreement.Kl ]
            ]

    /// A decoder carving: the model's logits, each path's logits, the remainder, then the printed values (norm
    /// ratios and cosines, the remainder's norm, the reconstruction error), which overflow before the tensors do.
    [<CompiledName("Carving")>]
    let carving (paths: LogitPaths) (reading: CarvingReadout) : NonFiniteReport option =
        NonFinite.first
            [
                tensor "the model's logits [row, position, token]" paths.Logits
                for p in paths.Paths do
                    tensor (sprintf "path %O [row, position, token]" p.Path) p.Value
                tensor "the remainder [row, position, token]" paths.Remainder
                for p in reading.Paths do
                    values (sprintf "‖path‖/‖logits‖ of %s" p.Name) [ p.NormRatio ]
                    values (sprintf "the mean cosine of %s" p.Name) [ p.MeanCosine ]
                values "‖remainder‖" [ reading.RemainderNorm ]
                values "the reconstruction error" [ reading.ReconstructionError ]
            ]

    /// Scored bigram rows, in the order printed.
    [<CompiledName("Bigrams")>]
    let bigrams (rows: BigramRow seq) : NonFiniteReport option =
        let rows = Array.ofSeq rows
        match rows |> Array.tryFindIndex (fun r -> not (System.Double.IsFinite r.Score)) with
        | None -> None
        | Some i ->
            let r = rows.[i]
            NonFinite.tryFindValues
                (sprintf
                    "the score of the pair %s → %s (ids %d → %d) [row of the table]"
                    r.FromToken
                    r.ToToken
                    r.From
                    r.To)
                [ for r in rows -> r.Score ]

    /// The n-gram mass of each model (and its top-k mass), in order.
    [<CompiledName("Masses")>]
    let masses (masses: ModelMass seq) : NonFiniteReport option =
        NonFinite.first
            [
                for m in masses -> values (sprintf "the mass of %s" m.Model) (m.Mass :: Option.toList m.TopKMass)
            ]

    /// Compared pairs of two models (before, after, change), in the order printed.
    [<CompiledName("Changes")>]
    let changes (rows: PairChangeRow seq) : NonFiniteReport option =
        NonFinite.first
            [
                for r in rows ->
                    values
                        (sprintf
                            "the pair %s → %s (ids %d → %d): before, after, change"
                            r.FromToken
                            r.ToToken
                            r.From
                            r.To)
                        [ r.Before; r.After; r.Change ]
            ]

    /// The head ranking's copying and set mass, head by head in the order printed.
    [<CompiledName("HeadScores")>]
    let headScores (scores: HeadScore seq) : NonFiniteReport option =
        NonFinite.first
            [
                for s in scores ->
                    values
                        (sprintf "the copying and set mass of head %d of layer %d" s.Head s.Layer)
                        [ s.Copying; s.SetMass ]
            ]

    /// Scored trigrams, in the order printed.
    [<CompiledName("Triples")>]
    let triples (rows: ScoredTriple seq) : NonFiniteReport option =
        NonFinite.first
            [
                for r in rows ->
                    values (sprintf "the score of the trigram ids %d %d → %d" r.First r.Second r.Next) [ r.Score ]
            ]
