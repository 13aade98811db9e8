using Microsoft.FSharp.Core;
using static TorchSharp.torch;

namespace JetDsl;

/// <summary>A point to expand around, as a function of the token batch (a stream, an update, the embedding,
/// a difference, the terms of an earlier expansion, or your own function of the tokens).</summary>
public sealed class Centre
{
    internal Jet.Core.Centre Core { get; }

    private Centre(Jet.Core.Centre core) => Core = core;

    /// <summary>The residual stream h_l (0..L); h₀ is the encoder output.</summary>
    public static Centre Stream(int layer) => new(Jet.Core.Centre.NewStream(layer));

    /// <summary>γ_l(h_{l−1}), the update residual layer l (1..L) adds to the stream.</summary>
    public static Centre Gamma(int layer) => new(Jet.Core.Centre.NewGamma(layer));

    /// <summary>The scaled token embedding, without positions.</summary>
    public static Centre Embedding { get; } = new(Jet.Core.Centre.Embedding);

    /// <summary>The encoder output h₀ (embedding plus absolute positions where the model has them).</summary>
    public static Centre Encoder { get; } = new(Jet.Core.Centre.Encoder);

    /// <summary>The difference of two centres, for example h₆ − h₃.</summary>
    public static Centre Difference(Centre minuend, Centre subtrahend)
    {
        ArgumentNullException.ThrowIfNull(minuend);
        ArgumentNullException.ThrowIfNull(subtrahend);
        return new(Jet.Core.Centre.NewDifference(minuend.Core, subtrahend.Core));
    }

    /// <summary>Every term of an earlier residual-layer expansion, in order (composition).</summary>
    public static Centre TermsOf(ExpansionPlan plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        return new(Jet.Core.Centre.NewTerms(plan.Core));
    }

    /// <summary>Term <paramref name="index"/> (0-based) of an earlier residual-layer expansion.</summary>
    public static Centre TermOf(ExpansionPlan plan, int index)
    {
        ArgumentNullException.ThrowIfNull(plan);
        return new(Jet.Core.Centre.NewTerm(plan.Core, index));
    }

    /// <summary>Your own function of the tokens: [batch, seq] int64 → [batch, seq, d].</summary>
    /// <param name="name">The name the centre's paths print with.</param>
    /// <param name="fromTokens">The function.</param>
    public static Centre Of(string name, Func<Tensor, Tensor> fromTokens)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(fromTokens);
        return new(Jet.Core.Centre.NewCustom(new Jet.Core.NamedFn(name, FuncConvert.FromFunc(fromTokens))));
    }

    /// <summary>The centre as the paper writes it, for example "γ₁(Enc)".</summary>
    public override string ToString() => Core.ToString();
}
