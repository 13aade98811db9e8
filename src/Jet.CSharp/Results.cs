using static TorchSharp.torch;

namespace JetDsl;

/// <summary>One term of an expansion: its readable path name (for example "U·J¹LN(J¹γ₂(Enc))") and its value
/// ([batch, seq, d] in the stream, or [batch, seq, vocab] in logit space).</summary>
public sealed record PathTerm(string Name, Tensor Value);

/// <summary>The result of an expansion: Σ Terms + Remainder = Target (h_l at a layer, LN_f(h_L) at the decoder).</summary>
public sealed record ExpansionOutcome(ExpansionPlan Plan, IReadOnlyList<PathTerm> Terms, Tensor Remainder, Tensor Target);

/// <summary>A decoder expansion in logit space: Σ Paths + Remainder (+ Bias) = Logits.</summary>
public sealed record LogitCarving(
    IReadOnlyList<PathTerm> Paths,
    Tensor Remainder,
    Tensor Logits,
    Tensor? Bias,
    double ReconstructionError);
