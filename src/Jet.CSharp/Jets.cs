using Jet.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace JetDsl;

/// <summary>The jet of a C# function: J^k f(x)(y) = Σ_{j=0..k} D^j f(x)[v]^j / j!, computed by nested JVPs.</summary>
public static class Jets
{
    /// <summary>The jet value J^k f(x)(y).</summary>
    /// <param name="f">Any function Tensor → Tensor (shapes: any leading batch dimensions).</param>
    /// <param name="order">The order k ≥ 0.</param>
    /// <param name="centre">The centre x (floating point).</param>
    /// <param name="point">The evaluation point y (same shape, dtype and device as x); may be null only when order is 0.</param>
    /// <param name="recentre">True (default): v = y − x. False: v = y, approximating f(x + y).</param>
    public static Tensor Of(Func<Tensor, Tensor> f, int order, Tensor centre, Tensor? point, bool recentre = true) =>
        Compute(f, order, centre, point, recentre).Value;

    /// <summary>The jet with its coefficients c_j = D^j f(x)[v]^j / j! and partial sums (F#: <c>Jet.compute</c>).</summary>
    /// <param name="f">Any function Tensor → Tensor.</param>
    /// <param name="order">The order k ≥ 0.</param>
    /// <param name="centre">The centre x.</param>
    /// <param name="point">The evaluation point y; may be null only when order is 0.</param>
    /// <param name="recentre">True (default): v = y − x. False: v = y.</param>
    /// <param name="differentiable">True (default) keeps the autograd graph; false detaches the results.</param>
    public static JetResult Compute(Func<Tensor, Tensor> f, int order, Tensor centre, Tensor? point, bool recentre = true, bool differentiable = true)
    {
        ArgumentNullException.ThrowIfNull(f);
        var options = new JetOptions(order, recentre, differentiable);
        var fsharpPoint = point is null ? null : Microsoft.FSharp.Core.FSharpOption<Tensor>.Some(point);
        return Jet.Core.Jet.Compute(options, Microsoft.FSharp.Core.FuncConvert.FromFunc(f), centre, fsharpPoint);
    }
}
