using Microsoft.FSharp.Core;
using TorchSharp;
using static TorchSharp.torch;
using Apps = Jet.Core.Apps;

namespace JetDsl;

/// <summary>Which residual layers a searched path may step through.</summary>
public enum PathLayerKinds
{
    /// <summary>Every residual layer (its whole update).</summary>
    All,
    /// <summary>Attention layers only.</summary>
    Attention,
    /// <summary>MLP layers only (the MLP branch of a parallel layer).</summary>
    Mlp,
}

/// <summary>Options of a path search: the position read (null: the last token), how many paths to return, the beam
/// width (the search is exact when nothing is pruned), which layers and how many of them a path may use.</summary>
public sealed record PathSearchSettings
{
    /// <summary>The position read, 0-based; null reads the last token.</summary>
    public int? Position { get; init; }

    /// <summary>How many paths to return, ≥ 1.</summary>
    public int Top { get; init; } = 10;

    /// <summary>How many prefixes the beam keeps between layers, ≥ 1.</summary>
    public int Beam { get; init; } = 64;

    /// <summary>Which layers paths may use.</summary>
    public PathLayerKinds Layers { get; init; } = PathLayerKinds.All;

    /// <summary>The most layers a path may use; null for no limit.</summary>
    public int? MaxLength { get; init; }
}

/// <summary>One path γ_{s_m}(…γ_{s_1}(Enc)…) found by a path search.</summary>
/// <param name="Layers">The residual layers it steps through (1-based, increasing).</param>
/// <param name="Notation">The path in path notation, for example <c>U·LN(γ₆(γ₃(Enc)))</c>.</param>
/// <param name="Names">The layer names along the path, for example "enc > attn2 > mlp3".</param>
/// <param name="Contribution">The path read through the frozen-scale decoder at the position.</param>
/// <param name="Share">Contribution divided by what all paths carry together (<see cref="PathSearchReport.Carried"/>).</param>
/// <param name="CumulativeShare">The shares of this path and every path listed before it, added.</param>
public sealed record FoundPath(
    IReadOnlyList<int> Layers, string Notation, string Names, double Contribution, double Share, double CumulativeShare);

/// <summary>The result of a path search at one position (see docs/paths.md for how contributions are measured).</summary>
public sealed record PathSearchReport
{
    internal PathSearchReport(Apps.PathSearchResult core)
    {
        Core = core;
        Paths = core.Paths.Select(p => new FoundPath(
            p.Steps.Select(s => s.IsLayer ? ((Jet.Core.PathStep.Layer)s).Item : ((Jet.Core.PathStep.MlpBranch)s).Item).ToArray(),
            p.Notation, p.Names, p.Contribution, p.Share, p.CumulativeShare)).ToArray();
    }

    internal Apps.PathSearchResult Core { get; }

    /// <summary>The target in words.</summary>
    public string TargetName => Core.TargetName;

    /// <summary>The position read (0-based).</summary>
    public int Position => Core.Position;

    /// <summary>The target's value on the model's logits.</summary>
    public double Target => Core.Target;

    /// <summary>The part of the target no path carries (biases, and a nonlinear target's curvature term).</summary>
    public double Constant => Core.Constant;

    /// <summary>Target − Constant: what all paths and their interaction carry together.</summary>
    public double Carried => Core.Carried;

    /// <summary>The paths found, largest |contribution| first.</summary>
    public IReadOnlyList<FoundPath> Paths { get; }

    /// <summary>Carried − Σ contributions of the listed paths.</summary>
    public double Remainder => Core.Remainder;

    /// <summary>Prefixes evaluated (one layer application each).</summary>
    public long Evaluated => Core.Evaluated;

    /// <summary>How many paths the settings allow (2^L with no restriction).</summary>
    public double TotalPaths => Core.TotalPaths;

    /// <summary>Prefixes with extensions left that the beam dropped.</summary>
    public long Pruned => Core.Pruned;

    /// <summary>True when nothing was pruned: the paths are exactly the brute-force top paths.</summary>
    public bool Exact => Core.Exact;

    /// <summary>Writes the picture of the paths (layers as columns, paths as lines, thickness by contribution) to a
    /// .png or .svg file.</summary>
    public void SavePicture(string file, string title) =>
        Readings.SavePicture(file, () => Jet.Core.Pictures.PathFigure.Scene(title, Core));
}

/// <summary>Path search: the few input→output paths of a model that carry one number computed from its logits at
/// one position, selected from the 2^L paths without enumerating them.</summary>
public static class PathSearch
{
    private static Apps.PathSearchOptions Options(PathSearchSettings? settings)
    {
        var s = settings ?? new PathSearchSettings();
        return new Apps.PathSearchOptions(
            s.Position is { } p ? FSharpOption<int>.Some(p) : FSharpOption<int>.None,
            s.Top,
            s.Beam,
            s.Layers switch
            {
                PathLayerKinds.Attention => Apps.PathLayers.Attention,
                PathLayerKinds.Mlp => Apps.PathLayers.Mlp,
                _ => Apps.PathLayers.All,
            },
            s.MaxLength is { } n ? FSharpOption<int>.Some(n) : FSharpOption<int>.None);
    }

    private static PathSearchReport Run(JetModel model, string prompt, Apps.PathTarget target, PathSearchSettings? settings)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompt);
        using var scope = NewDisposeScope();
        using var tokens = model.Encode(prompt);
        return new PathSearchReport(Apps.PathSearch.Search(model.Core.Net, tokens, target, Options(settings)));
    }

    /// <summary>The paths that carry the logit of token id <paramref name="token"/>.</summary>
    public static PathSearchReport TokenLogit(JetModel model, string prompt, int token, PathSearchSettings? settings = null) =>
        Run(model, prompt, Apps.PathTarget.NewToken(token), settings);

    /// <summary>The paths that carry logit(<paramref name="first"/>) − logit(<paramref name="second"/>).</summary>
    public static PathSearchReport LogitDifference(JetModel model, string prompt, int first, int second, PathSearchSettings? settings = null) =>
        Run(model, prompt, Apps.PathTarget.NewDifference(first, second), settings);

    /// <summary>The paths that carry the log-probability of the model's own top token.</summary>
    public static PathSearchReport TopLogProbability(JetModel model, string prompt, PathSearchSettings? settings = null) =>
        Run(model, prompt, Apps.PathTarget.TopLogProb, settings);

    /// <summary>The paths that carry a function of the logits: <paramref name="target"/> maps the logits [vocab] at the
    /// position to a scalar tensor, differentiably (TorchSharp autograd).</summary>
    public static PathSearchReport Custom(JetModel model, string prompt, string name, Func<Tensor, Tensor> target, PathSearchSettings? settings = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(target);
        var named = new Jet.Core.NamedFn(name, FuncConvert.FromFunc(target));
        return Run(model, prompt, Apps.PathTarget.NewCustom(named), settings);
    }
}
