using Microsoft.FSharp.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace JetDsl;

/// <summary>One forward pass of a model on one token batch, against which plans are evaluated (composed plans reuse
/// earlier results; nothing recomputes the forward pass). The tensors in results belong to the analysis: dispose it
/// to free them.</summary>
public sealed class Analysis : IDisposable
{
    private readonly Jet.Core.Session session;

    internal Analysis(Jet.Core.Session session) => this.session = session;

    /// <summary>The token batch [batch, seq].</summary>
    public Tensor Tokens => session.Trace.Tokens;

    /// <summary>The residual stream h_l [batch, seq, d], l = 0..L.</summary>
    public Tensor Stream(int layer) => session.Trace.Stream(layer);

    /// <summary>γ_l(h_{l−1}) [batch, seq, d], l = 1..L.</summary>
    public Tensor Gamma(int layer) => session.Trace.Gamma(layer);

    /// <summary>The model's logits [batch, seq, vocab].</summary>
    public Tensor Logits() => session.Logits();

    /// <summary>Evaluates a plan: its terms (with path names), the exact remainder and the target.</summary>
    public ExpansionOutcome Expand(ExpansionPlan plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        var result = session.Expand(plan.Core);
        return new ExpansionOutcome(plan, Terms(result.Terms), result.Remainder, result.Target);
    }

    /// <summary>Evaluates a decoder plan and maps every term and the remainder to logit space.</summary>
    public LogitCarving Carve(ExpansionPlan decoderPlan)
    {
        ArgumentNullException.ThrowIfNull(decoderPlan);
        var paths = session.Unembed(session.Expand(decoderPlan.Core));
        var summary = Jet.Core.Apps.CarvingSummary.Of(paths);
        var bias = FSharpOption<Tensor>.get_IsSome(paths.Bias) ? paths.Bias.Value : null;
        return new LogitCarving(Terms(paths.Paths), paths.Remainder, paths.Logits, bias, summary.ReconstructionError);
    }

    private static IReadOnlyList<PathTerm> Terms(IEnumerable<Jet.Core.Term> terms) =>
        terms.Select(t => new PathTerm(t.Path.ToString(), t.Value)).ToList();

    /// <summary>Frees the forward pass and every result tensor.</summary>
    public void Dispose() => ((IDisposable)session).Dispose();
}
