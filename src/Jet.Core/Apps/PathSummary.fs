namespace Jet.Core.Apps

open System
open TorchSharp
open Jet.Core

/// How one logit-space path relates to the model's logits, for batch row 0.
type PathSummary =
    {
        /// The path's readable name, for example `U·J¹LN(J¹γ₂(Enc))`.
        Name: string
        /// ‖path‖ / ‖logits‖ (Frobenius norms over positions × vocabulary).
        NormRatio: float
        /// Mean over positions of the cosine between the path's logits and the true logits.
        MeanCosine: float
        /// The path's top-1 token id at every position.
        Top1: int64[]
        /// At how many positions the path's top-1 token is the model's top-1 token.
        Top1Agreement: int
        /// The path's logit for the model's top-1 token at every position (these add up, with the
        /// remainder, to the model's own logit for that token).
        Contribution: float[]
    }

/// A whole decoder carving in logit space, for batch row 0.
type CarvingSummary =
    {
        Paths: PathSummary list
        Remainder: PathSummary
        /// The model's top-1 token id at every position.
        ModelTop1: int64[]
        /// The model's logit for its own top-1 token at every position.
        ModelTop1Logit: float[]
        /// ‖remainder‖ in logit space.
        RemainderNorm: float
        /// max |Σ paths + remainder (+ bias) − logits|.
        ReconstructionError: float
    }

/// Summaries of logit-space paths.
[<RequireQualifiedAccess>]
module PathSummary =

    let private floats (t: Tensor) = t.detach().cpu().to_type(torch.float64).data<float>().ToArray()
    let private longs (t: Tensor) = t.detach().cpu().data<int64>().ToArray()
    let private scalar (t: Tensor) = t.detach().to_type(torch.float64).item<float> ()

    /// Summarises one path [seq, vocab] against the true logits [seq, vocab] and the model's top-1 ids [seq].
    let private summarise (name: string) (path: Tensor) (logits: Tensor) (modelTop1: Tensor) =
        let cos =
            torch.nn.functional.cosine_similarity (path.to_type torch.float64, logits.to_type torch.float64, dim = -1L)
        let top1 = path.argmax -1L
        {
            Name = name
            NormRatio = scalar (path.norm () / logits.norm ())
            MeanCosine = cos.mean().item<float> ()
            Top1 = longs top1
            Top1Agreement = top1.eq(modelTop1).sum().item<int64> () |> int
            Contribution = floats (path.gather(-1L, modelTop1.unsqueeze -1).squeeze -1L)
        }

    /// The summary of a decoder carving (batch row 0).
    [<CompiledName("OfLogitPaths")>]
    let ofLogitPaths (carving: LogitPaths) : CarvingSummary =
        use scope = torch.NewDisposeScope()
        let row (t: Tensor) = t.[0L]
        let logits = row carving.Logits
        let modelTop1 = logits.argmax -1L
        let reconstructed =
            Decoder.addBias
                carving.Bias
                (carving.Paths |> List.map (fun p -> p.Value) |> List.fold (+) carving.Remainder)
            |> Decoder.capLogits carving.SoftCap
        {
            Paths = carving.Paths |> List.map (fun p -> summarise (string p.Path) (row p.Value) logits modelTop1)
            Remainder = summarise "remainder" (row carving.Remainder) logits modelTop1
            ModelTop1 = longs modelTop1
            ModelTop1Logit = floats (logits.gather(-1L, modelTop1.unsqueeze -1).squeeze -1L)
            RemainderNorm = scalar (carving.Remainder.norm ())
            ReconstructionError = scalar ((reconstructed - carving.Logits).abs().max ())
        }

/// The summary under a .NET name, for C# (the `PathSummary` module compiles to `PathSummaryModule`).
type CarvingSummary with
    /// The summary of a decoder carving (batch row 0).
    static member Of(carving: LogitPaths) = PathSummary.ofLogitPaths carving
