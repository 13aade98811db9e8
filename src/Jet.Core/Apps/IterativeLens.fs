namespace Jet.Core.Apps

open System
open TorchSharp
open Jet.Core

/// What to read with the iterative jet lens.
type LensOptions =
    {
        /// Stream indices l of h_l (0 = encoder output … L); empty means every stream.
        Streams: int list
        /// The jet order k; 0 is the logit lens.
        Order: int
        /// The k of the top-k overlap metric.
        TopK: int
    }

    /// Every stream, order 0 (the logit lens), top-5 overlap.
    static member Default = { Streams = []; Order = 0; TopK = 5 }

/// The lens read at one stream h_l.
type LensStream =
    {
        /// The stream index l.
        Stream: int
        /// The term's provenance, for example `U·J¹LN(h₃)`, or `J¹(cap·U·LN)(h₃)` on a soft-capped network.
        Path: Path
        /// U J^k LN_f(h_l)(h_L) (+ the unembedding bias), [batch, seq, vocab]; on a network with a final logit soft-cap,
        /// the jet of the whole capped decoder map (see `Decoder`).
        Logits: Tensor
        /// Against the model's logits.
        Agreement: LogitAgreement
    }

/// The iterative jet lens of one token batch. Owns its tensors: dispose it to free them.
type LensResult =
    {
        Order: int
        /// The validated token batch [batch, seq].
        Tokens: Tensor
        /// The model's logits [batch, seq, vocab].
        Logits: Tensor
        /// One entry per requested stream, in the requested order.
        Streams: LensStream list
    }

    interface IDisposable with
        member r.Dispose() =
            for l in r.Streams do
                l.Logits.Dispose()
                l.Agreement.Dispose()
            r.Tokens.Dispose()
            r.Logits.Dispose()

/// The iterative jet lens U J^k LN_f(h_l)(h_L): one decoder expansion per stream, each centred at h_l and
/// evaluated at h_L, so each reads the model's output from layer l alone (order 0 is the logit lens). With a final
/// logit soft-cap the lens jets through the cap (docs/concepts.md).
[<RequireQualifiedAccess>]
module IterativeLens =

    /// The streams to read: the requested ones, validated, or 0..L when none are given.
    [<CompiledName("Streams")>]
    let streams (net: Net) (requested: int list) =
        match requested with
        | [] -> [ 0 .. net.Depth ]
        | given ->
            for l in given do
                Net.checkStream l net
            if List.distinct given <> given then
                let text = given |> List.map string |> String.concat ", "
                raise (InvalidPlanException(sprintf "The streams %s repeat an index; give each stream once." text))
            given

    /// The lens of a network with a final logit soft-cap, at order k ≥ 1: the soft-cap is not linear, so the lens is
    /// the jet of the whole decoder map cap(U·LN_f(·) + b) around each h_l, evaluated at h_L (by the plan's engine),
    /// named `J^k(cap·U·LN)(h_l)`. Each entry is [batch, seq, vocab].
    let private capped (net: Net) (session: Session) (plan: Expansion) (streams: int list) =
        let trace = session.Trace
        let centres = torch.stack ([ for l in streams -> trace.Stream l ], 0L)
        let points = trace.Stream(net.Depth).unsqueeze(0L).expand (centres.shape)
        let values =
            Engines.jet
                plan.Engine
                net.Parameters
                (Decoder.map net)
                plan.Order
                (centres.flatten (0L, 1L))
                (points.flatten (0L, 1L))
        let values = values.unflatten (0L, [| int64 streams.Length; centres.shape.[1] |])
        streams
        |> List.mapi (fun i l ->
            Path.Jet(JetTarget.Named "(cap·U·LN)", plan.Order, Path.Origin(Centre.Stream l)), values.[int64 i])

    /// Reads the lens on tokens [batch, seq] (or [seq]). One forward pass serves every stream: all centres
    /// h_l go through one decoder expansion with weight 1 each, and U is applied to every term.
    [<CompiledName("Run")>]
    let run (net: Net) (tokens: Tensor) (options: LensOptions) : LensResult =
        Expansion.checkOrder "The lens order" options.Order
        let streams = streams net options.Streams
        Native.ensure ()
        use _ = torch.no_grad ()
        use session = Expand.session net tokens
        let plan =
            Expansion.atDecoder [ for l in streams -> Centre.Stream l ]
            |> Expansion.withOrder options.Order
            |> Expansion.withWeights (Weights.Fixed(List.replicate streams.Length 1.0))
        use scope = torch.NewDisposeScope()
        let keep (t: Tensor) = t.detach().MoveToOuterDisposeScope()
        let lenses =
            match Decoder.softCap net with
            | Some _ when options.Order > 0 -> capped net session plan streams
            | _ ->
                let paths = session.Unembed(session.Expand plan)
                [
                    for term in paths.Paths ->
                        term.Path, Decoder.capLogits paths.SoftCap (Decoder.addBias paths.Bias term.Value)
                ]
        let truth = keep (session.Logits())
        let read =
            List.zip streams lenses
            |> List.map (fun (l, (path, logits)) ->
                let logits = keep logits
                {
                    Stream = l
                    Path = path
                    Logits = logits
                    Agreement = (LogitMetrics.compare options.TopK logits truth).MoveToOuterDisposeScope()
                })
        { Order = options.Order; Tokens = keep session.Trace.Tokens; Logits = truth; Streams = read }

    /// The logit lens U LN_f(h_l) (+ bias), computed directly from one forward pass: the order-0 lens without
    /// the expansion machinery, for comparisons. Shapes: tokens [batch, seq] → [batch, seq, vocab].
    [<CompiledName("LogitLens")>]
    let logitLens (net: Net) (tokens: Tensor) (stream: int) : Tensor =
        Net.checkStream stream net
        Native.ensure ()
        use _ = torch.no_grad ()
        use trace = Trace.run net tokens
        use scope = torch.NewDisposeScope()
        (Decoder.ofStream net (trace.Stream stream)).MoveToOuterDisposeScope()
