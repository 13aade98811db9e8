namespace Jet.Core

/// Everything the core knows about one primitive node of an `Fn` (a linear map, a norm, attention, …), built from
/// its spec by the primitive's own file (`Affine.rule`, `Norms.layerNormRule`, `SelfAttention.rule`, …). The
/// interpreters, the printer and the structural queries match only the combinators and ask this record the rest,
/// so a new primitive is one new file with its spec and rule, one `Fn` case, and one line in `Fn.Node`.
/// Shapes: `Forward` maps x [batch, seq, d_in] to [batch, seq, d_out]; `Taylor` maps the series of x,
/// [k+1, batch, seq, d_in], to the series of the output, [k+1, batch, seq, d_out] (see `Series`).
[<NoEquality; NoComparison>]
type PrimitiveRule =
    {
        /// The printed form inside a network, for example "Linear(w, b)" (Fn.ToString uses it).
        Print: unit -> string
        /// The parameters it reads, in first-use order (each read through the store by this name).
        Parameters: string list
        /// True when position i of the output depends on other positions of the input (attention).
        MixesPositions: bool
        /// f(x).
        Forward: ParameterStore -> Tensor -> Tensor
        /// The Taylor rule: the series of f(x(t)) from the series of x(t). At order 0 it equals `Forward`.
        Taylor: ParameterStore -> Tensor -> Tensor
    }
