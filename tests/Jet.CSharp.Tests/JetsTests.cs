using JetDsl;
using TorchSharp;
using static TorchSharp.torch;

namespace JetDsl.Tests;

public class JetsTests
{
    [Fact]
    public void JetOfACSharpLambdaIsItsTaylorPolynomial()
    {
        var x = torch.tensor(new[] { 0.3, -0.7, 1.1 }, dtype: ScalarType.Float64);
        var y = torch.tensor(new[] { 0.5, 0.2, 0.9 }, dtype: ScalarType.Float64);
        Func<Tensor, Tensor> cubic = t => t + t * t + t * t * t;

        var exact = Jets.Of(cubic, 3, x, y, recentre: false);
        Assert.True(exact.allclose(cubic(x + y), rtol: 1e-12, atol: 1e-12), "order 3 without recentring is f(x + y)");

        var result = Jets.Compute(cubic, 2, x, y);
        Assert.Equal(3, result.Coefficients.Count);
        var v = y - x;
        var expectedC1 = (1.0 + 2.0 * x + 3.0 * x * x) * v;
        Assert.True(result.Coefficients[1].allclose(expectedC1, rtol: 1e-12, atol: 1e-12), "c1 = f'(x) v");
    }

    [Fact]
    public void MissingPointForOrderOneIsAClearError()
    {
        var x = torch.zeros(3, dtype: ScalarType.Float64);
        var error = Assert.Throws<Jet.Core.MissingArgumentException>(() => Jets.Of(t => t * t, 1, x, null));
        Assert.Contains("evaluation point", error.Message);
    }
}
