using Jet.Core;
using Microsoft.FSharp.Collections;
using Microsoft.FSharp.Core;
using static TorchSharp.torch;

namespace JetDsl;

/// <summary>Pointwise activations.</summary>
public enum ActivationKind
{
    /// <summary>max(0, x).</summary>
    Relu,
    /// <summary>GELU with the exact erf.</summary>
    Gelu,
    /// <summary>GELU, tanh approximation (GPT-2's gelu_new).</summary>
    GeluTanh,
    /// <summary>x · sigmoid(x).</summary>
    Silu,
    /// <summary>ELU with α = 1.</summary>
    Elu,
    /// <summary>tanh.</summary>
    Tanh,
    /// <summary>The logistic sigmoid.</summary>
    Sigmoid,
}

/// <summary>What a residual layer computes (for display and for addressing "the MLP of block 3").</summary>
public enum LayerRole
{
    /// <summary>Attention.</summary>
    Attention,
    /// <summary>MLP.</summary>
    Mlp,
    /// <summary>Attention and MLP on one input (parallel residual).</summary>
    Parallel,
    /// <summary>A whole block as one residual layer.</summary>
    Block,
}

/// <summary>Factories for the functions of the residual stream (the DSL's <see cref="Fn"/> values). Parameters are
/// referenced by name; add their tensors to the <see cref="NetworkBuilder"/>.</summary>
public static class Fns
{
    private static FSharpOption<string> Opt(string? s) => s is null ? FSharpOption<string>.None : FSharpOption<string>.Some(s);

    private static Jet.Core.Linear Affine(string weight, string? bias)
    {
        ArgumentException.ThrowIfNullOrEmpty(weight);
        return new Jet.Core.Linear(weight, Opt(bias));
    }

    private static Activation ToCore(ActivationKind kind) => kind switch
    {
        ActivationKind.Relu => Activation.Relu,
        ActivationKind.Gelu => Activation.Gelu,
        ActivationKind.GeluTanh => Activation.GeluTanh,
        ActivationKind.Silu => Activation.Silu,
        ActivationKind.Elu => Activation.NewElu(1.0),
        ActivationKind.Tanh => Activation.Tanh,
        ActivationKind.Sigmoid => Activation.Sigmoid,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown activation."),
    };

    /// <summary>x Wᵀ + b; W names an [out, in] parameter, b an [out] one (optional).</summary>
    public static Fn Linear(string weight, string? bias = null) => Fn.NewLinear(Affine(weight, bias));

    /// <summary>A pointwise activation.</summary>
    public static Fn Act(ActivationKind kind) => Fn.NewAct(ToCore(kind));

    /// <summary>LayerNorm over the last dimension, with optional weight and bias parameters.</summary>
    public static Fn LayerNorm(string? weight, string? bias, double eps = 1e-5) =>
        Fn.NewLayerNorm(new LayerNormSpec(Opt(weight), Opt(bias), eps));

    /// <summary>RMSNorm over the last dimension; <paramref name="plusOne"/> scales by (1 + w) as Gemma does.</summary>
    public static Fn RmsNorm(string? weight, double eps = 1e-6, bool plusOne = false) =>
        Fn.NewRmsNorm(new RmsNormSpec(Opt(weight), eps, plusOne));

    /// <summary>act(x W_gᵀ) ⊙ (x W_uᵀ), then W_d.</summary>
    public static Fn GatedMlp(string gateWeight, string upWeight, string downWeight, ActivationKind activation) =>
        Fn.NewGatedMlp(new GatedMlpSpec(Affine(gateWeight, null), Affine(upWeight, null), Affine(downWeight, null), ToCore(activation)));

    /// <summary>Causal self-attention with separate query, key, value and output projections (no biases),
    /// optional rotary embedding (rotate-half, on the whole head) and grouped KV heads.</summary>
    public static Fn Attention(int heads, int headDim, string query, string key, string value, string output,
        int? kvHeads = null, double? rotaryBase = null, int? window = null)
    {
        var rotary = rotaryBase is { } b
            ? FSharpOption<Rotary>.Some(new Rotary(1.0, b, RotaryStyle.RotateHalf, RotaryScaling.Plain))
            : FSharpOption<Rotary>.None;
        var attention = new Jet.Core.Attention(
            heads, kvHeads ?? heads, headDim,
            Projections.NewSeparate(Affine(query, null), Affine(key, null), Affine(value, null)),
            Affine(output, null), rotary, ScoreScaling.InverseSqrtHeadDim,
            window is { } w ? FSharpOption<int>.Some(w) : FSharpOption<int>.None);
        return Fn.NewAttention(attention);
    }

    /// <summary>Applies the functions in order: Chain(f, g) is g ∘ f.</summary>
    public static Fn Chain(params Fn[] steps) => Fn.NewChain(ListModule.OfSeq(steps));

    /// <summary>The sum of branches applied to the same input.</summary>
    public static Fn Sum(params Fn[] branches) => Fn.NewSum(ListModule.OfSeq(branches));

    /// <summary>c · f(x).</summary>
    public static Fn Scale(double factor, Fn inner) => Fn.NewScale(factor, inner);

    /// <summary>Your own function of the stream (jets of it use nested JVPs).</summary>
    public static Fn Custom(string name, Func<Tensor, Tensor> apply) =>
        Fn.NewCustom(new NamedFn(name, FuncConvert.FromFunc(apply)));
}

/// <summary>Builds a residual network from parts: parameters, token embedding, residual layers, final norm and
/// unembedding. <see cref="Build"/> says which call is missing when something required was not given.</summary>
public sealed class NetworkBuilder
{
    private readonly int vocabulary;
    private readonly int width;
    private readonly Dictionary<string, Tensor> parameters = new();
    private readonly List<ResidualLayer> layers = new();
    private string? embedding;
    private string? positions;
    private int? maxPositions;
    private double? embeddingScale;
    private Fn? finalNorm;
    private (string Weight, bool Tied)? unembedding;

    /// <summary>A network over <paramref name="vocabulary"/> tokens with a residual stream of width <paramref name="width"/>.</summary>
    public NetworkBuilder(int vocabulary, int width)
    {
        if (vocabulary < 1) throw new ArgumentOutOfRangeException(nameof(vocabulary), vocabulary, "The vocabulary must have at least one token.");
        if (width < 1) throw new ArgumentOutOfRangeException(nameof(width), width, "The width must be at least 1.");
        this.vocabulary = vocabulary;
        this.width = width;
    }

    /// <summary>Adds (or replaces) a named parameter.</summary>
    public NetworkBuilder Parameter(string name, Tensor value)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(value);
        parameters[name] = value;
        return this;
    }

    /// <summary>The token embedding [vocabulary, width] (h₀ = scale · E[z] + positions).</summary>
    public NetworkBuilder TokenEmbedding(string name, Tensor value, double? scale = null)
    {
        Parameter(name, value);
        embedding = name;
        embeddingScale = scale;
        return this;
    }

    /// <summary>Absolute position embeddings [max positions, width].</summary>
    public NetworkBuilder Positions(string name, Tensor value)
    {
        Parameter(name, value);
        positions = name;
        maxPositions = (int)value.shape[0];
        return this;
    }

    /// <summary>Appends a residual layer h_l = h_{l−1} + γ(h_{l−1}); γ must not contain the skip connection.</summary>
    public NetworkBuilder AddLayer(string name, int block, Fn gamma, LayerRole role = LayerRole.Block)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(gamma);
        var kind = role switch
        {
            LayerRole.Attention => LayerKind.Attention,
            LayerRole.Mlp => LayerKind.Mlp,
            LayerRole.Parallel => LayerKind.Parallel,
            _ => LayerKind.Block,
        };
        layers.Add(new ResidualLayer(name, block, kind, gamma));
        return this;
    }

    /// <summary>The final norm LN_f applied before the unembedding.</summary>
    public NetworkBuilder FinalNorm(Fn norm)
    {
        finalNorm = norm ?? throw new ArgumentNullException(nameof(norm));
        return this;
    }

    /// <summary>An untied unembedding U [vocabulary, width].</summary>
    public NetworkBuilder Unembedding(string name, Tensor value)
    {
        Parameter(name, value);
        unembedding = (name, false);
        return this;
    }

    /// <summary>Ties the unembedding to the token embedding.</summary>
    public NetworkBuilder TiedUnembedding()
    {
        unembedding = (embedding ?? throw new InvalidOperationException("Call TokenEmbedding(...) before TiedUnembedding()."), true);
        return this;
    }

    /// <summary>The validated network. It owns the tensors given to this builder: disposing the network (or the
    /// <see cref="JetModel"/> that wraps it) disposes them.</summary>
    public Net Build()
    {
        if (embedding is null) throw new InvalidOperationException("The network has no token embedding: call TokenEmbedding(name, tensor) before Build().");
        if (layers.Count == 0) throw new InvalidOperationException("The network has no residual layers: call AddLayer(name, block, gamma) at least once before Build().");
        if (finalNorm is null) throw new InvalidOperationException("The network has no final norm: call FinalNorm(Fns.LayerNorm(...)) before Build().");
        if (unembedding is not { } u) throw new InvalidOperationException("The network has no unembedding: call Unembedding(name, tensor) or TiedUnembedding() before Build().");
        var encoder = new Encoder(embedding,
            positions is null ? FSharpOption<string>.None : FSharpOption<string>.Some(positions),
            embeddingScale is { } s ? FSharpOption<double>.Some(s) : FSharpOption<double>.None);
        var spec = new NetSpec("custom", vocabulary, width,
            maxPositions is { } m ? FSharpOption<int>.Some(m) : FSharpOption<int>.None,
            encoder, ListModule.OfSeq(layers), finalNorm,
            new Jet.Core.Unembedding(u.Weight, FSharpOption<string>.None, u.Tied, FSharpOption<double>.None));
        return Net.Create(spec, ParameterStore.OfSeq(parameters.Select(kv => Tuple.Create(kv.Key, kv.Value))));
    }
}
