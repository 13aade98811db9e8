using Jet.Core.Apps;

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

/// <summary>Translates the core's plain readings (<see cref="Jet.Core.Apps.Readings"/>) into the facade's records.</summary>
internal static class Readings
{
    public static TokenScore Of(RankedToken r) => new(r.Id, r.Token, r.Score);

    public static IReadOnlyList<TokenScore> Of(IEnumerable<RankedToken> top) => top.Select(Of).ToList();

    public static Agreement Of(AgreementValues a) => new(a.Cosine, a.Kl, a.Top1, a.TopKOverlap);

    public static PositionTop Of(PositionTokens p) => new(p.Row, p.Position, p.Input.Id, p.Input.Piece, Of(p.Top));

    public static LensPosition Of(PositionLens p) => new(p.Row, p.Position, p.Input.Id, p.Input.Piece, Of(p.Top), Of(p.Agreement));

    public static WeightedPosition Of(PositionWeight p) => new(p.Row, p.Position, p.Input.Piece, p.Weight, Of(p.Top));

    public static IReadOnlyList<TResult> All<TSource, TResult>(IEnumerable<TSource> items, Func<TSource, TResult> map) =>
        items.Select(map).ToList().AsReadOnly();

    /// <summary>Writes a scene to a file, PNG or SVG by its extension (checked before the scene is drawn).</summary>
    public static void SavePicture(string file, Func<Jet.Core.Pictures.Scene> scene)
    {
        ArgumentException.ThrowIfNullOrEmpty(file);
        Jet.Core.Pictures.Pictures.FormatOf(file);
        Jet.Core.Pictures.Pictures.Save(file, scene());
    }
}
