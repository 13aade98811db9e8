using Jet.Core.Apps;
using Jet.Core.Models;
using Jet.Core.Pictures;
using Microsoft.FSharp.Collections;
using static TorchSharp.torch;

namespace JetDsl;

/// <summary>The iterative jet lens U J^k LN_f(h_l)(h_L) of a model: choose the streams, the order and how many top
/// tokens to list, then <see cref="Run(string)"/>. Order 0 is the logit lens. Every call returns a new builder.</summary>
public sealed class LensBuilder
{
    private readonly JetModel model;
    private readonly int[] streams;
    private readonly int order;
    private readonly int top;

    internal LensBuilder(JetModel model) : this(model, Array.Empty<int>(), LensOptions.Default.Order, LensOptions.Default.TopK) { }

    private LensBuilder(JetModel model, int[] streams, int order, int top)
    {
        this.model = model;
        this.streams = streams;
        this.order = order;
        this.top = top;
    }

    /// <summary>The streams l of h_l to read (0 = encoder output … L), each once; none (the default) reads every stream.</summary>
    public LensBuilder Streams(params int[] streams)
    {
        ArgumentNullException.ThrowIfNull(streams);
        return new(model, streams.ToArray(), order, top);
    }

    /// <summary>The jet order k ≥ 0 (default 0, the logit lens).</summary>
    public LensBuilder Order(int order) => new(model, streams, order, top);

    /// <summary>How many best tokens to list per position, also the k of the top-k overlap (default 5; 1..vocabulary).</summary>
    public LensBuilder Top(int n) => new(model, streams, order, n);

    /// <summary>Reads the lens on a prompt.</summary>
    public LensReading Run(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        using var tokens = model.Encode(prompt);
        return Run(tokens);
    }

    /// <summary>Reads the lens on a token batch [batch, seq] (or [seq]) of int64 ids; one forward pass serves every stream.</summary>
    public LensReading Run(Tensor tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        var options = new LensOptions(ListModule.OfSeq(streams), order, top);
        return new LensReading(model.Core, IterativeLens.Run(model.Core.Net, tokens, options), top);
    }
}

/// <summary>The lens read at one stream h_l.</summary>
/// <param name="Stream">The stream index l.</param>
/// <param name="Path">The term's provenance, for example "U·J¹LN(h₁)".</param>
/// <param name="Logits">U J^k LN_f(h_l)(h_L) (+ the unembedding bias), [batch, seq, vocab]; owned by the reading.</param>
/// <param name="Mean">The agreement with the model, averaged over every position.</param>
/// <param name="Positions">Top tokens and agreement at every position, row-major.</param>
public sealed record LensStream(int Stream, string Path, Tensor Logits, Agreement Mean, IReadOnlyList<LensPosition> Positions);

/// <summary>The iterative jet lens of one token batch. The tensors (<see cref="Tokens"/>, <see cref="Logits"/>, each
/// stream's logits) belong to the reading: dispose it to free them. The metrics and top tokens are .NET copies and stay
/// readable after disposal.</summary>
public sealed class LensReading : IDisposable
{
    private readonly LensReadout reading;
    private readonly LensResult core;
    private bool disposed;

    internal LensReading(Model model, LensResult core, int top)
    {
        this.core = core;
        try
        {
            var reading = Jet.Core.Apps.Readings.Lens(model.Tokenizer, core, top);
            this.reading = reading;
            Streams = core.Streams.Zip(reading.Streams, (s, r) =>
                new LensStream(r.Stream, r.Path, s.Logits, Readings.Of(r.Mean), Readings.All(r.Positions, Readings.Of))).ToList();
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

    /// <summary>The validated token batch [batch, seq].</summary>
    public Tensor Tokens => core.Tokens;

    /// <summary>The model's logits [batch, seq, vocab].</summary>
    public Tensor Logits => core.Logits;

    /// <summary>One entry per stream read, in the requested order.</summary>
    public IReadOnlyList<LensStream> Streams { get; }

    /// <summary>The model's own best tokens at every position, row-major.</summary>
    public IReadOnlyList<PositionTop> Predictions { get; }

    /// <summary>Writes the lens table of batch row <paramref name="row"/> (one row per stream, one column per input token,
    /// each cell the lens's top-1 token coloured by its logit, the model's tokens below) as PNG or SVG by the file's extension.</summary>
    public void SaveTable(string file, int row = 0)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        Readings.SavePicture(file, () => Figures.Lens(reading, row));
    }

    /// <summary>Writes the per-stream metric plot of batch row <paramref name="row"/> (cosine, top-1 agreement, top-k overlap
    /// and KL, averaged over positions) as PNG or SVG by the file's extension.</summary>
    public void SaveMetricsPlot(string file, int row = 0)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        Readings.SavePicture(file, () => Figures.LensMetrics(reading, row));
    }

    /// <summary>Frees the reading's tensors.</summary>
    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        ((IDisposable)core).Dispose();
    }
}
