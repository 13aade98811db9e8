using Jet.Core.Apps;
using Jet.Core.Models;
using Jet.Core.Pictures;
using Microsoft.FSharp.Collections;
using Microsoft.FSharp.Core;
using static TorchSharp.torch;

namespace JetDsl;

/// <summary>The joint jet lens of a model: one decoder expansion around {h_{l₁}, h_{l₂} − h_{l₁}, …} whose per-token
/// softmax weights Adam fits against the logit-space error. Choose the streams, order, iterations and learning rate,
/// then <see cref="Fit(string, IProgress{long}, CancellationToken)"/>. Every call returns a new builder.</summary>
public sealed class JointLensBuilder
{
    private readonly JetModel model;
    private readonly int[] streams;
    private readonly int order;
    private readonly int iterations;
    private readonly double learningRate;
    private readonly int top;

    internal JointLensBuilder(JetModel model)
        : this(model, Array.Empty<int>(), JointLensOptions.Default.Order, JointLensOptions.Default.Iterations,
            JointLensOptions.Default.LearningRate, JointLensOptions.Default.TopK) { }

    private JointLensBuilder(JetModel model, int[] streams, int order, int iterations, double learningRate, int top)
    {
        this.model = model;
        this.streams = streams;
        this.order = order;
        this.iterations = iterations;
        this.learningRate = learningRate;
        this.top = top;
    }

    /// <summary>Strictly increasing streams l₁ &lt; l₂ &lt; … (0..L) whose centres are h_{l₁}, h_{l₂} − h_{l₁}, …;
    /// none (the default) uses every stream.</summary>
    public JointLensBuilder Streams(params int[] streams)
    {
        ArgumentNullException.ThrowIfNull(streams);
        return new(model, streams.ToArray(), order, iterations, learningRate, top);
    }

    /// <summary>The jet order k ≥ 0 of the decoder expansion (default 0).</summary>
    public JointLensBuilder Order(int order) => new(model, streams, order, iterations, learningRate, top);

    /// <summary>Adam steps ≥ 0 (default 200; 0 keeps the uniform weights).</summary>
    public JointLensBuilder Iterations(int iterations) => new(model, streams, order, iterations, learningRate, top);

    /// <summary>Adam's learning rate, a finite number &gt; 0 (default 0.05).</summary>
    public JointLensBuilder LearningRate(double learningRate) => new(model, streams, order, iterations, learningRate, top);

    /// <summary>How many best tokens to list per position, also the k of the top-k overlap (default 5; 1..vocabulary).</summary>
    public JointLensBuilder Top(int n) => new(model, streams, order, iterations, learningRate, n);

    /// <summary>Fits the joint lens on a prompt.</summary>
    /// <param name="prompt">The text.</param>
    /// <param name="progress">Receives the number of Adam steps done.</param>
    /// <param name="cancellation">Checked before every Adam step.</param>
    public JointLensReading Fit(string prompt, IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        using var tokens = model.Encode(prompt);
        return Fit(tokens, progress, cancellation);
    }

    /// <summary>Fits the joint lens on a token batch [batch, seq] (or [seq]) of int64 ids.</summary>
    /// <param name="tokens">The token ids.</param>
    /// <param name="progress">Receives the number of Adam steps done.</param>
    /// <param name="cancellation">Checked before every Adam step.</param>
    public JointLensReading Fit(Tensor tokens, IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        var options = new JointLensOptions(ListModule.OfSeq(streams), order, iterations, learningRate, top,
            progress is null ? FSharpOption<IProgress<long>>.None : FSharpOption<IProgress<long>>.Some(progress), cancellation);
        return new JointLensReading(model.Core, JointLens.Fit(model.Core.Net, tokens, options), top);
    }
}

/// <summary>One weighted centre of a joint lens at one position: its weight there and the best tokens of its weighted logits.</summary>
/// <param name="Row">The batch row.</param>
/// <param name="Position">The position in the sequence.</param>
/// <param name="Input">The input token's readable piece.</param>
/// <param name="Weight">The centre's softmax weight at this position (the weights of all centres sum to 1).</param>
/// <param name="Top">The best tokens of w_i U J^k LN_f(c_i)(h_L) with their logits, best first.</param>
public sealed record WeightedPosition(int Row, int Position, string Input, double Weight, IReadOnlyList<TokenScore> Top);

/// <summary>One centre of a joint lens.</summary>
/// <param name="Centre">The centre, for example "Enc" (h₀) or "(h₂ − h₁)".</param>
/// <param name="Path">Its path, for example "U·LN((h₂ − h₁))".</param>
/// <param name="Logits">w_i U J^k LN_f(c_i)(h_L) (no bias), [batch, seq, vocab]; owned by the reading.</param>
/// <param name="MeanWeight">The centre's weight averaged over every position.</param>
/// <param name="Positions">Weight and best tokens at every position, row-major.</param>
public sealed record JointLensCentre(string Centre, string Path, Tensor Logits, double MeanWeight, IReadOnlyList<WeightedPosition> Positions);

/// <summary>The fitted joint lens of one token batch. The tensors belong to the reading: dispose it to free them. The
/// losses, weights per position, metrics and top tokens are .NET copies and stay readable after disposal.</summary>
public sealed class JointLensReading : IDisposable
{
    private readonly JointLensReadout reading;
    private readonly JointLensResult core;
    private bool disposed;

    internal JointLensReading(Model model, JointLensResult core, int top)
    {
        this.core = core;
        try
        {
            var reading = Jet.Core.Apps.Readings.JointLens(model.Tokenizer, core, top);
            this.reading = reading;
            Streams = Array.AsReadOnly(reading.Streams);
            Losses = Array.AsReadOnly(reading.Losses);
            Centres = reading.Centres.Zip(core.PerCentre, (c, logits) =>
                new JointLensCentre(c.Centre, c.Path, logits, c.MeanWeight, Readings.All(c.Positions, Readings.Of))).ToList();
            Positions = Readings.All(reading.Positions, Readings.Of);
            Mean = Readings.Of(reading.Mean);
            Predictions = Readings.All(reading.Predictions, Readings.Of);
        }
        catch
        {
            ((IDisposable)core).Dispose();
            throw;
        }
    }

    /// <summary>The jet order k.</summary>
    public int Order => core.Order;

    /// <summary>The stream indices l₁ &lt; l₂ &lt; … that define the centres.</summary>
    public IReadOnlyList<int> Streams { get; }

    /// <summary>The mean squared logit error: entry 0 with uniform weights, entry i after i Adam steps.</summary>
    public IReadOnlyList<double> Losses { get; }

    /// <summary>The centres h_{l₁}, h_{l₂} − h_{l₁}, … with their weighted logits.</summary>
    public IReadOnlyList<JointLensCentre> Centres { get; }

    /// <summary>Per-token weights [centres, batch, seq], a softmax over centres.</summary>
    public Tensor Weights => core.Weights;

    /// <summary>Σ_i w_i U J^k LN_f(c_i)(h_L) + bias, [batch, seq, vocab].</summary>
    public Tensor Combined => core.Combined;

    /// <summary>The model's logits [batch, seq, vocab].</summary>
    public Tensor Logits => core.Logits;

    /// <summary>The validated token batch [batch, seq].</summary>
    public Tensor Tokens => core.Tokens;

    /// <summary>The combined lens at every position: its best tokens and its agreement with the model, row-major.</summary>
    public IReadOnlyList<LensPosition> Positions { get; }

    /// <summary>The combined lens's agreement with the model, averaged over every position.</summary>
    public Agreement Mean { get; }

    /// <summary>The model's own best tokens at every position, row-major.</summary>
    public IReadOnlyList<PositionTop> Predictions { get; }

    /// <summary>Writes the joint-lens table of batch row <paramref name="row"/> (one row per centre with its weights, the
    /// model and the combined lens below) as PNG or SVG by the file's extension.</summary>
    public void SaveTable(string file, int row = 0)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        Readings.SavePicture(file, () => Figures.JointLens(reading, row));
    }

    /// <summary>Frees the reading's tensors.</summary>
    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        ((IDisposable)core).Dispose();
    }
}
