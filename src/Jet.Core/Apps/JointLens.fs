namespace Jet.Core.Apps

open System
open System.Threading
open TorchSharp
open Jet.Core

/// What to fit with the joint jet lens.
type JointLensOptions =
    {
        /// Increasing stream indices l₁ < l₂ < … (0..L); the centres are h_{l₁}, h_{l₂} − h_{l₁}, …. Empty means every stream.
        Streams: int list
        /// The jet order k of the decoder expansion.
        Order: int
        /// Adam steps, 0..MaxIterations (0 keeps the uniform weights).
        Iterations: int
        /// Adam's learning rate.
        LearningRate: float
        /// The k of the top-k overlap metric.
        TopK: int
        /// Receives the number of Adam steps done.
        Progress: IProgress<int64> option
        /// Checked before every Adam step.
        Cancellation: CancellationToken
    }

    /// Every stream, order 0, 200 Adam steps at learning rate 0.05, top-5 overlap, no progress, not cancellable.
    static member Default =
        {
            Streams = []
            Order = 0
            Iterations = 200
            LearningRate = 0.05
            TopK = 5
            Progress = None
            Cancellation = CancellationToken.None
        }

    /// The most Adam steps a fit may take (one million: hours on a large model, far past convergence).
    static member MaxIterations = 1_000_000

/// The fitted joint lens of one token batch. Owns its tensors: dispose it to free them.
type JointLensResult =
    {
        Order: int
        /// The stream indices l₁ < l₂ < … that define the centres.
        Streams: int list
        /// h_{l₁}, h_{l₂} − h_{l₁}, … as expansion centres.
        Centres: Centre list
        /// Each centre's path, for example `U·LN((h₆ − h₃))`.
        Paths: Path list
        /// The mean squared logit error ‖U(LN_f(h_L) − Σ w_i J^k LN_f(c_i)(h_L))‖² / (positions · vocab):
        /// entry 0 with uniform weights, entry i after i Adam steps.
        Losses: float[]
        /// Per-token weights [centres, batch, seq], softmax over centres (each column sums to 1).
        Weights: Tensor
        /// Σ_i w_i U J^k LN_f(c_i)(h_L) + bias (soft-capped where the network caps its logits), [batch, seq, vocab].
        Combined: Tensor
        /// w_i U J^k LN_f(c_i)(h_L) for each centre (no bias), each [batch, seq, vocab].
        PerCentre: Tensor list
        /// The model's logits [batch, seq, vocab].
        Logits: Tensor
        /// `Combined` against the model's logits.
        Agreement: LogitAgreement
        /// The validated token batch [batch, seq].
        Tokens: Tensor
    }

    interface IDisposable with
        member r.Dispose() =
            for t in [ r.Weights; r.Combined; r.Logits; r.Tokens ] @ r.PerCentre do
                t.Dispose()
            r.Agreement.Dispose()

/// The joint jet lens: one decoder expansion around {h_{l₁}, h_{l₂} − h_{l₁}, …} whose per-token softmax
/// weights are fitted by Adam so that the weighted terms reproduce the logits. The error is measured in logit
/// space through the d×d metric UᵀU, so no vocabulary-sized tensor is built per step.
[<RequireQualifiedAccess>]
module JointLens =

    /// h_{l₁}, h_{l₂} − h_{l₁}, … for increasing streams.
    [<CompiledName("Centres")>]
    let centres (net: Net) (streams: int list) : int list * Centre list =
        let streams = if List.isEmpty streams then [ 0 .. net.Depth ] else streams
        for l in streams do
            Net.checkStream l net
        if streams |> List.pairwise |> List.exists (fun (a, b) -> b <= a) then
            let text = streams |> List.map string |> String.concat ", "
            raise (
                InvalidPlanException(
                    sprintf "The joint lens needs strictly increasing streams (for example 0,3,6); got %s." text
                )
            )
        let first = Centre.Stream streams.Head
        let differences =
            streams
            |> List.pairwise
            |> List.map (fun (a, b) -> Centre.Difference(Centre.Stream b, Centre.Stream a))
        streams, first :: differences

    /// Fits the joint lens on tokens [batch, seq] (or [seq]).
    [<CompiledName("Fit")>]
    let fit (net: Net) (tokens: Tensor) (options: JointLensOptions) : JointLensResult =
        Expansion.checkOrder "The lens order" options.Order
        if options.Iterations < 0 || options.Iterations > JointLensOptions.MaxIterations then
            raise (
                InvalidPlanException(
                    sprintf
                        "The number of Adam iterations must be in 0..%d; got %d."
                        JointLensOptions.MaxIterations
                        options.Iterations
                )
            )
        if not (options.LearningRate > 0.0) || Double.IsInfinity options.LearningRate then
            raise (
                InvalidPlanException(
                    sprintf "The learning rate must be a finite number > 0; got %g." options.LearningRate
                )
            )
        let streams, centres = centres net options.Streams
        Native.ensure ()
        use _ = torch.no_grad ()
        use session = Expand.session net tokens
        let plan =
            Expansion.atDecoder centres
            |> Expansion.withOrder options.Order
            |> Expansion.withWeights (Weights.Fixed(List.replicate centres.Length 1.0))
        let expansion = session.Expand plan
        use scope = torch.NewDisposeScope()
        // Unweighted terms J^k LN_f(c_i)(h_L), [centres, batch, seq, d], and their target LN_f(h_L).
        let terms = torch.stack (expansion.Terms |> List.map (fun t -> t.Value.detach ()), 0L)
        let target = expansion.Target.detach ()
        let metric = Decoder.metric net
        let logitCount = float (target.shape.[0] * target.shape.[1]) * float net.Vocab
        let lossOf (logWeights: Tensor) =
            let w = logWeights.softmax 0L
            let diff = target - (w.unsqueeze -1L * terms).sum 0L
            (diff.matmul metric * diff).sum () / logitCount
        let logWeights =
            torch.zeros ([| int64 centres.Length; target.shape.[0]; target.shape.[1] |], dtype = target.dtype)
        let parameter = torch.nn.Parameter(logWeights, true)
        let losses = ResizeArray<float>()
        do
            use _ = torch.enable_grad ()
            let adam = torch.optim.Adam([ parameter ], lr = options.LearningRate)
            for step in 1 .. options.Iterations do
                options.Cancellation.ThrowIfCancellationRequested()
                do
                    use _ = torch.NewDisposeScope()
                    adam.zero_grad ()
                    let loss = lossOf parameter
                    loss.backward ()
                    losses.Add(loss.ToDouble())
                adam.step () |> ignore
                options.Progress |> Option.iter (fun p -> p.Report(int64 step))
            adam.Dispose()
        let weights = parameter.detach().softmax 0L
        // A Parameter does not join the dispose scope; free it here.
        parameter.Dispose()
        losses.Add((lossOf weights).ToDouble())
        let perCentre =
            [
                for i in 0 .. centres.Length - 1 ->
                    Decoder.unembed net (weights.[int64 i].unsqueeze -1L * terms.[int64 i])
            ]
        let combined =
            Decoder.addBias (Decoder.bias net) (perCentre |> List.reduce (+))
            |> Decoder.capLogits (Decoder.softCap net)
        let truth = session.Logits().detach ()
        let agreement = (LogitMetrics.compare options.TopK combined truth).MoveToOuterDisposeScope()
        let keep (t: Tensor) = t.MoveToOuterDisposeScope()
        {
            Order = options.Order
            Streams = streams
            Centres = centres
            Paths = expansion.Terms |> List.map (fun t -> Path.Unembedded t.Path)
            Losses = losses.ToArray()
            Weights = keep weights
            Combined = keep combined
            PerCentre = perCentre |> List.map keep
            Logits = keep truth
            Agreement = agreement
            Tokens = keep (session.Trace.Tokens.detach ())
        }
