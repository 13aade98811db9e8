using Jet.Core.Apps;
using Jet.Core.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace JetDsl;

/// <summary>One ranked token: its id, its readable piece and its score (a logit, or a probability in bigram tables).</summary>
public sealed record TokenScore(int Id, string Token, double Score);

/// <summary>How close approximate logits are to the model's: cosine of the raw logit vectors, KL(model ‖ approximation)
/// in nats, top-1 agreement (1 or 0 at one position, a fraction in a mean) and top-k overlap |top-k ∩ top-k| / k.</summary>
public sealed record Agreement(double Cosine, double Kl, double Top1, double TopKOverlap);

/// <summary>The best tokens of some logits at one position of the token batch.</summary>
/// <param name="Row">The batch row.</param>
/// <param name="Position">The position in the sequence.</param>
/// <param name="InputId">The input token id at this position.</param>
/// <param name="Input">The input token's readable piece.</param>
/// <param name="Top">The best tokens with their logits, best first.</param>
public sealed record PositionTop(int Row, int Position, int InputId, string Input, IReadOnlyList<TokenScore> Top);

/// <summary>A lens read at one position: its best tokens (with logits) and its agreement with the model there.</summary>
/// <param name="Row">The batch row.</param>
/// <param name="Position">The position in the sequence.</param>
/// <param name="InputId">The input token id at this position.</param>
/// <param name="Input">The input token's readable piece.</param>
/// <param name="Top">The lens's best tokens with their logits, best first.</param>
/// <param name="Agreement">The lens against the model's logits at this position.</param>
public sealed record LensPosition(int Row, int Position, int InputId, string Input, IReadOnlyList<TokenScore> Top, Agreement Agreement);

/// <summary>Copies small per-position results of the core (metrics, top tokens) into .NET records. Every method
/// frees the temporary tensors it reads through.</summary>
internal static class Readings
{
    /// <summary>Token ids of a [batch, seq] batch, as ids[row][position].</summary>
    public static int[][] Ids(Tensor tokens)
    {
        using var scope = torch.NewDisposeScope();
        var batch = (int)tokens.shape[0];
        return Enumerable.Range(0, batch).Select(b => tokens[b].cpu().data<long>().Select(id => (int)id).ToArray()).ToArray();
    }

    /// <summary>The n best tokens of logits [batch, seq, vocab], as top[row][position].</summary>
    public static IReadOnlyList<TokenScore>[][] Top(ITokenizer tokenizer, Tensor logits, int n)
    {
        using var scope = torch.NewDisposeScope();
        var batch = (int)logits.shape[0];
        return Enumerable.Range(0, batch)
            .Select(b => LogitMetrics.top(tokenizer, n, logits[b])
                .Select(ranked => (IReadOnlyList<TokenScore>)ranked.Select(r => new TokenScore(r.Id, r.Token, r.Score)).ToList())
                .ToArray())
            .ToArray();
    }

    /// <summary>The metrics of a core agreement ([batch, seq] tensors), as agreement[row][position].</summary>
    public static Agreement[][] Agreements(LogitAgreement agreement)
    {
        using var scope = torch.NewDisposeScope();
        var batch = (int)agreement.Cosine.shape[0];
        return Enumerable.Range(0, batch).Select(b =>
        {
            var cosine = LogitMetrics.row(agreement.Cosine, b);
            var kl = LogitMetrics.row(agreement.Kl, b);
            var top1 = LogitMetrics.row(agreement.Top1, b);
            var overlap = LogitMetrics.row(agreement.TopKOverlap, b);
            return Enumerable.Range(0, cosine.Length).Select(p => new Agreement(cosine[p], kl[p], top1[p], overlap[p])).ToArray();
        }).ToArray();
    }

    /// <summary>The mean of each metric over positions.</summary>
    public static Agreement Mean(IReadOnlyCollection<Agreement> all) =>
        all.Count == 0
            ? new Agreement(double.NaN, double.NaN, double.NaN, double.NaN)
            : new Agreement(all.Average(a => a.Cosine), all.Average(a => a.Kl), all.Average(a => a.Top1), all.Average(a => a.TopKOverlap));

    /// <summary>The best tokens of logits [batch, seq, vocab] at every position, row by row.</summary>
    public static IReadOnlyList<PositionTop> Predictions(ITokenizer tokenizer, int[][] ids, Tensor logits, int n)
    {
        var top = Top(tokenizer, logits, n);
        return Positions(ids, (b, p) => new PositionTop(b, p, ids[b][p], LogitMetrics.piece(tokenizer, ids[b][p]), top[b][p]));
    }

    /// <summary>Lens readings at every position, row by row.</summary>
    public static IReadOnlyList<LensPosition> Lens(ITokenizer tokenizer, int[][] ids, Tensor logits, LogitAgreement agreement, int n)
    {
        var top = Top(tokenizer, logits, n);
        var metrics = Agreements(agreement);
        return Positions(ids, (b, p) => new LensPosition(b, p, ids[b][p], LogitMetrics.piece(tokenizer, ids[b][p]), top[b][p], metrics[b][p]));
    }

    /// <summary>One record per (row, position), row-major.</summary>
    public static IReadOnlyList<T> Positions<T>(int[][] ids, Func<int, int, T> at) =>
        ids.SelectMany((row, b) => row.Select((_, p) => at(b, p))).ToList();

    /// <summary>Writes a scene to a file, PNG or SVG by its extension (checked before the scene is drawn).</summary>
    public static void SavePicture(string file, Func<Jet.Core.Pictures.Scene> scene)
    {
        ArgumentException.ThrowIfNullOrEmpty(file);
        // The extension is checked before anything is drawn.
        Jet.Core.Pictures.Pictures.formatOf(file);
        Jet.Core.Pictures.Pictures.save(file, scene());
    }
}
