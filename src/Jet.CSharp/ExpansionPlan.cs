using Microsoft.FSharp.Collections;
using static TorchSharp.torch;

namespace JetDsl;

/// <summary>How jets are computed.</summary>
public enum JetEngine
{
    /// <summary>Taylor mode: all k+1 coefficients in one pass through the network (the default for networks).</summary>
    Taylor,
    /// <summary>Nested Jacobian-vector products (works for any function; slower at high order).</summary>
    Jvp,
}

/// <summary>An immutable expansion plan (Algorithm 1 as data): where, around which centres, at which order,
/// with which weights and engine. Plans compare by value and can be centres of later plans.</summary>
public sealed class ExpansionPlan : IEquatable<ExpansionPlan>
{
    internal Jet.Core.Expansion Core { get; }

    internal ExpansionPlan(Jet.Core.Expansion core) => Core = core;

    /// <summary>The order k of the jets.</summary>
    public int Order => Core.Order;

    /// <summary>True when the plan expands the final norm (the decoder).</summary>
    public bool AtDecoder => Core.Site.IsDecoder;

    /// <summary>The residual layer the plan expands, or null at the decoder.</summary>
    public int? Layer => Core.Site is Jet.Core.Site.Layer l ? l.Item : null;

    /// <inheritdoc/>
    public bool Equals(ExpansionPlan? other) => other is not null && Core.Equals(other.Core);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => Equals(obj as ExpansionPlan);

    /// <inheritdoc/>
    public override int GetHashCode() => Core.GetHashCode();

    /// <summary>The plan in one line, for example
    /// <c>expand layer 2 around {Enc, γ₁(Enc)} at order 1, uniform weights, Taylor</c> (the core's printer).</summary>
    public override string ToString() => Core.ToString();
}

/// <summary>Starts expansion plans: choose the site first, then the centres, then the options.</summary>
public static class Plan
{
    /// <summary>Expand residual layer <paramref name="layer"/> (1..L): h_l = h_{l−1} + γ_l(h_{l−1}).</summary>
    public static SiteStage AtLayer(int layer) => new(Jet.Core.Site.NewLayer(layer));

    /// <summary>Expand the decoder: the final norm LN_f(h_L) (logits follow by the linear unembedding).</summary>
    public static SiteStage AtDecoder() => new(Jet.Core.Site.Decoder);
}

/// <summary>A plan with its site chosen; call <see cref="Around(Centre[])"/> next.</summary>
public sealed class SiteStage
{
    private readonly Jet.Core.Site site;

    internal SiteStage(Jet.Core.Site site) => this.site = site;

    /// <summary>The centres to expand around (at least one, none null).</summary>
    public PlanBuilder Around(params Centre[] centres)
    {
        ArgumentNullException.ThrowIfNull(centres);
        // The core validates the plan (no centres, a null centre) with the messages every front door shares.
        var core = Jet.Core.Expansion.Create(
            site, ListModule.OfSeq(centres.Select(c => c?.Core!)), 1, Jet.Core.Weights.Uniform, Jet.Core.Engine.Taylor);
        return new PlanBuilder(core);
    }
}

/// <summary>A complete plan that can still be refined; every call returns a new builder. Each call validates the
/// plan it makes, so an invalid order or weights fail where they are given.</summary>
public sealed class PlanBuilder
{
    private readonly Jet.Core.Expansion core;

    internal PlanBuilder(Jet.Core.Expansion core) => this.core = core;

    /// <summary>The order k, 0..64 (default 1).</summary>
    public PlanBuilder Order(int order) => new(Jet.Core.Expansion.Create(core.Site, core.Centres, order, core.Weights, core.Engine));

    /// <summary>Fixed finite weights, one per centre (default: uniform 1/N).</summary>
    public PlanBuilder Weights(params double[] weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        return new(Jet.Core.Expansion.Create(core.Site, core.Centres, core.Order, Jet.Core.Weights.NewFixed(ListModule.OfSeq(weights)), core.Engine));
    }

    /// <summary>Weights as a tensor of shape [N], [N, seq] or [N, batch, seq]; it may require grad.</summary>
    public PlanBuilder Weights(Tensor weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        return new(Jet.Core.Expansion.Create(core.Site, core.Centres, core.Order, Jet.Core.Weights.NewTensor(new Jet.Core.TensorRef(weights)), core.Engine));
    }

    /// <summary>The jet engine (default Taylor).</summary>
    public PlanBuilder Engine(JetEngine engine) =>
        new(Jet.Core.Expansion.Create(core.Site, core.Centres, core.Order, core.Weights, engine == JetEngine.Jvp ? Jet.Core.Engine.Jvp : Jet.Core.Engine.Taylor));

    /// <summary>The finished plan.</summary>
    public ExpansionPlan Build() => new(core);

    /// <summary>A builder can be used wherever a plan is expected.</summary>
    public static implicit operator ExpansionPlan(PlanBuilder builder) => builder.Build();
}
