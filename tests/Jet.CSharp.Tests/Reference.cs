using JetDsl;
using TorchSharp;
using static TorchSharp.torch;

namespace JetDsl.Tests;

/// <summary>Independent references written from a model's parameters with libtorch's own functions (not the DSL's),
/// and small assertion helpers.</summary>
internal static class Reference
{
    /// <summary>U·LN_f(x) (+ the unembedding bias) for x [..., d], LN_f a LayerNorm read from the network's parameters.</summary>
    public static Tensor Decoder(JetModel model, Tensor x)
    {
        var net = model.Network;
        var norm = Assert.IsType<Jet.Core.Fn.LayerNorm>(net.Spec.FinalNorm).Item;
        var normed = torch.nn.functional.layer_norm(x, new long[] { model.Width },
            net.Parameters[norm.Weight.Value], net.Parameters[norm.Bias.Value], norm.Eps);
        var logits = normed.matmul(net.Parameters[net.Spec.Unembedding.Weight].t());
        var bias = net.Spec.Unembedding.Bias;
        return bias is null ? logits : logits + net.Parameters[bias.Value];
    }

    /// <summary>The token embedding E [vocabulary, d].</summary>
    public static Tensor Embedding(JetModel model) => model.Network.Parameters[model.Network.Spec.Encoder.TokenEmbedding];

    /// <summary>Fails with the largest gap and where it is when two tensors differ by more than atol + rtol·|expected|.</summary>
    public static void Close(Tensor actual, Tensor expected, double tolerance, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        var a = actual.to_type(ScalarType.Float64);
        var e = expected.to_type(ScalarType.Float64);
        // Equal values (infinities on a dropped diagonal included) have no gap.
        var gap = torch.where(a.eq(e), torch.zeros_like(a), (a - e).abs().nan_to_num(double.PositiveInfinity));
        var allowed = tolerance + tolerance * e.abs().nan_to_num(0, 0, 0);
        var worst = (gap - allowed).argmax().item<long>();
        var worstGap = gap.flatten()[worst].item<double>();
        Assert.True(worstGap <= allowed.flatten()[worst].item<double>(),
            $"{what}: differs by {worstGap:E3} at flat index {worst} (actual {actual.flatten()[worst].item<double>():G6}, expected {expected.flatten()[worst].item<double>():G6})");
    }

    /// <summary>Live TorchSharp tensors after the finalizers have run.</summary>
    public static long LiveTensors()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return Jet.Core.Tensors.LiveCount();
    }
}

/// <summary>Tests that count live tensors run alone: the count is global to the process.</summary>
[CollectionDefinition("live tensor count", DisableParallelization = true)]
public sealed class LiveTensorCollection { }
