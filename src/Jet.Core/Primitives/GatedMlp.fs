namespace Jet.Core

/// act(x W_gᵀ) ⊙ (x W_uᵀ), then W_d.
type GatedMlpSpec = { Gate: Linear; Up: Linear; Down: Linear; Activation: Activation }

namespace Jet.Core.Primitives

open Jet.Core

/// The gated MLP `GatedMlp g` (SwiGLU, GeGLU): forward definition, Taylor rule, printing and parameters.
/// Shapes: x [..., d] → gate and up [..., hidden] → [..., d].
[<RequireQualifiedAccess>]
module GatedMlp =
    /// act(x W_gᵀ) ⊙ (x W_uᵀ), then W_d.
    let apply (parameters: ParameterStore) (g: GatedMlpSpec) (x: Tensor) : Tensor =
        let gate = Activations.apply g.Activation (Affine.apply parameters g.Gate x)
        Affine.apply parameters g.Down (gate * Affine.apply parameters g.Up x)

    /// Taylor rule of `apply` on a series [k+1, ..., d]: the three projections are linear (`Affine.taylor`), the
    /// activation follows its own rule (`Activations.taylor`), and the gate ⊙ up product is a Cauchy product.
    /// Example: with the identity activation in place of act, the line x(t) = t·v gives the series
    /// [0; 0; ((v W_gᵀ) ⊙ (v W_uᵀ)) W_dᵀ; 0; …]: a product of two lines is t² times the product of their slopes.
    let taylor (parameters: ParameterStore) (g: GatedMlpSpec) (x: Tensor) : Tensor =
        let gate = Activations.taylor g.Activation (Affine.taylor parameters g.Gate x)
        Affine.taylor parameters g.Down (Series.mul gate (Affine.taylor parameters g.Up x))

    /// "GatedMlp(SiLU ⊙ Linear(up) → Linear(down))" (the gate projection is not shown).
    let print (g: GatedMlpSpec) =
        sprintf "GatedMlp(%s ⊙ %s → %s)" (Activations.print g.Activation) (Affine.print g.Up) (Affine.print g.Down)

    /// The primitive `GatedMlp g`: it acts on each position alone.
    /// Example: for gate, up and down weights "g", "u", "d" without biases and SiLU, the rule prints
    /// "GatedMlp(SiLU ⊙ Linear(u) → Linear(d))", reads ["g"; "u"; "d"], and maps x [batch, seq, d] through
    /// hidden [batch, seq, h] back to [batch, seq, d].
    let rule (g: GatedMlpSpec) : PrimitiveRule =
        {
            Print = fun () -> print g
            Parameters = Affine.parameterNames g.Gate @ Affine.parameterNames g.Up @ Affine.parameterNames g.Down
            MixesPositions = false
            Forward = fun parameters x -> apply parameters g x
            Taylor = fun parameters x -> taylor parameters g x
        }
