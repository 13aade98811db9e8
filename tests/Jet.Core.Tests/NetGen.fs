/// Random DSL networks for property tests. A network is generated as a small width-preserving description
/// (`Piece`) that shrinks well and compiles to an `Fn` with seeded float64 parameters, so a failing case shrinks
/// to a readable minimal network, printed as the Fn itself with its sizes and seed.
module Jet.Core.Tests.NetGen

open System
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Jet.Core

/// The shape of a random attention layer (the input and output width is the network's).
type AttentionShape =
    {
        Heads: int
        KvHeads: int
        HeadDim: int
        /// None: separate Q, K, V projections.
        Fused: FusedLayout option
        Biases: bool
        Rotary: Rotary option
        Scaling: ScoreScaling
        Window: int option
    }

/// Two heads of width 3, separate projections without biases, no rotary, 1/√d_head, no window: the base that
/// hand-written cases vary with `{ AttentionShape.Plain with … }`.
type AttentionShape with
    static member Plain =
        {
            Heads = 2
            KvHeads = 2
            HeadDim = 3
            Fused = None
            Biases = false
            Rotary = None
            Scaling = ScoreScaling.InverseSqrtHeadDim
            Window = None
        }

/// A function of the stream [batch, seq, d] → [batch, seq, d], before parameters are attached.
type Piece =
    | Affine of bias: bool
    /// Linear d → hidden, activation, linear hidden → d.
    | Mlp of hidden: int * Activation * bias: bool
    | Act of Activation
    | LayerNorm of affine: bool
    | RmsNorm of weighted: bool * plusOne: bool
    | Attention of AttentionShape
    | Gated of hidden: int * Activation
    | Sum of Piece list
    | Chain of Piece list
    | Scale of float * Piece
    /// An opaque user function (`Fn.Custom`) without a Taylor rule.
    | Opaque

/// The opaque function used by `Opaque`: x·sin x + x³/10, smooth with non-zero derivatives of every order.
let opaque = Fn.custom "opaque" (fun x -> x * torch.sin x + 0.1 * x * x * x)

/// Compiles a piece for width `width` into an Fn and its parameters, drawn in order from one seeded generator
/// (weights N(0, 1/fan_in), norm weights 1 + N(0, 0.1²), biases N(0, 0.1²)).
let compile (seed: int) (width: int) (piece: Piece) : Fn * ParameterStore =
    Native.ensure ()
    use generator = new torch.Generator(uint64 (seed + 1))
    let parameters = ResizeArray<string * Tensor>()
    let fresh (shape: int64 list) (scale: float) (offset: float) =
        let name = sprintf "p%d" (parameters.Count + 1)
        let t = torch.randn (Array.ofList shape, dtype = torch.float64, generator = generator) * scale + offset
        parameters.Add(name, t)
        name
    let d = int64 width
    let linear (input: int64) (output: int64) (bias: bool) : Linear =
        let w = fresh [ output; input ] (1.0 / Math.Sqrt(float input)) 0.0
        { Weight = w; Bias = (if bias then Some(fresh [ output ] 0.1 0.0) else None) }
    let rec build piece : Fn =
        match piece with
        | Affine bias -> Fn.Linear(linear d d bias)
        | Mlp(hidden, act, bias) ->
            Fn.Chain [ Fn.Linear(linear d (int64 hidden) bias); Fn.Act act; Fn.Linear(linear (int64 hidden) d bias) ]
        | Act a -> Fn.Act a
        | LayerNorm affine ->
            let w = if affine then Some(fresh [ d ] 0.1 1.0) else None
            let b = if affine then Some(fresh [ d ] 0.1 0.0) else None
            Fn.LayerNorm { Weight = w; Bias = b; Eps = 1e-5 }
        | RmsNorm(weighted, plusOne) ->
            let w =
                if weighted then
                    Some(fresh [ d ] 0.1 (if plusOne then 0.0 else 1.0))
                else
                    None
            Fn.RmsNorm { Weight = w; Eps = 1e-6; PlusOne = plusOne }
        | Attention a ->
            let qWidth, kvWidth = int64 (a.Heads * a.HeadDim), int64 (a.KvHeads * a.HeadDim)
            let projections =
                match a.Fused with
                | Some layout -> Projections.Fused(linear d (qWidth + 2L * kvWidth) a.Biases, layout)
                | None ->
                    Projections.Separate(linear d qWidth a.Biases, linear d kvWidth a.Biases, linear d kvWidth a.Biases)
            Fn.Attention
                {
                    Heads = a.Heads
                    KvHeads = a.KvHeads
                    HeadDim = a.HeadDim
                    Projections = projections
                    Output = linear qWidth d a.Biases
                    Rotary = a.Rotary
                    Scaling = a.Scaling
                    Window = a.Window
                }
        | Gated(hidden, act) ->
            let h = int64 hidden
            Fn.GatedMlp { Gate = linear d h false; Up = linear d h false; Down = linear h d false; Activation = act }
        | Sum pieces -> Fn.Sum(List.map build pieces)
        | Chain pieces -> Fn.Chain(List.map build pieces)
        | Scale(c, inner) -> Fn.Scale(c, build inner)
        | Opaque -> opaque
    let fn = build piece
    fn, ParameterStore.OfSeq parameters

/// One generated case: a network piece, its sizes, a jet order and the seed of its parameters and inputs.
[<StructuredFormatDisplay("{Display}")>]
type NetCase =
    {
        Piece: Piece
        Width: int
        Batch: int
        Seq: int
        Order: int
        Seed: int
    }

    /// The compiled network and its parameters.
    member c.Build() = compile c.Seed c.Width c.Piece

    /// A random centre x and point y = x + v, each [batch, seq, width] in float64.
    member c.Inputs() =
        let shape = [ int64 c.Batch; int64 c.Seq; int64 c.Width ]
        let x = TestKit.randn (c.Seed + 7) shape
        x, x + 0.5 * TestKit.randn (c.Seed + 8) shape

    /// The network as the DSL prints it, with its sizes and seed (what a failing property reports).
    member c.Display =
        let fn, _ = c.Build()
        sprintf
            "%O  [width %d, batch %d, seq %d, order %d, seed %d]\n\tgenerated as %A"
            fn
            c.Width
            c.Batch
            c.Seq
            c.Order
            c.Seed
            c.Piece

    override c.ToString() = c.Display

let private activations =
    [
        Activation.Relu
        Activation.Gelu
        Activation.GeluTanh
        Activation.Silu
        Activation.Elu 1.0
        Activation.Elu 0.6
        Activation.Tanh
        Activation.Sigmoid
        Activation.SoftCap 1.5
    ]

let private activation = Gen.elements activations

let private attentionShape: Gen<AttentionShape> =
    gen {
        let! heads = Gen.elements [ 1; 2; 3; 4 ]
        let! kvHeads =
            Gen.elements
                [
                    for k in 1..heads do
                        if heads % k = 0 then
                            k
                ]
        let! headDim = Gen.elements [ 2; 3; 4 ]
        let! fused = Gen.elements [ None; Some FusedLayout.Blocked; Some FusedLayout.PerHead ]
        // The per-head fused layout interleaves q, k and v of each head, so it only exists with as many KV heads.
        let kvHeads = if fused = Some FusedLayout.PerHead then heads else kvHeads
        let! biases = Gen.elements [ true; false ]
        let! rotary =
            Gen.oneof
                [
                    Gen.constant None
                    gen {
                        let! fraction = Gen.elements [ 0.25; 0.5; 1.0 ]
                        let! rotaryBase = Gen.elements [ 10.0; 10000.0 ]
                        let! style = Gen.elements [ RotaryStyle.RotateHalf; RotaryStyle.Interleaved ]
                        let! frequencyScaling =
                            Gen.elements
                                [
                                    RotaryScaling.Plain
                                    RotaryScaling.Linear 2.0
                                    RotaryScaling.Llama3
                                        { Factor = 4.0; LowFreqFactor = 1.0; HighFreqFactor = 2.0; OriginalContext = 6 }
                                ]
                        return
                            Some { Fraction = fraction; Base = rotaryBase; Style = style; Scaling = frequencyScaling }
                    }
                ]
        let! scaling =
            Gen.elements
                [
                    ScoreScaling.InverseSqrtHeadDim
                    ScoreScaling.Unscaled
                    ScoreScaling.By 0.3
                    ScoreScaling.SoftCapped(0.6, 1.5)
                ]
        let! window = Gen.elements [ None; None; Some 1; Some 2; Some 3 ]
        return
            {
                Heads = heads
                KvHeads = kvHeads
                HeadDim = headDim
                Fused = fused
                Biases = biases
                Rotary = rotary
                Scaling = scaling
                Window = window
            }
    }

let private leaf: Gen<Piece> =
    Gen.frequency
        [
            2, Gen.elements [ true; false ] |> Gen.map Affine
            3, Gen.map3 (fun h a b -> Mlp(h, a, b)) (Gen.choose (1, 6)) activation (Gen.elements [ true; false ])
            3, Gen.map Act activation
            2, Gen.elements [ true; false ] |> Gen.map LayerNorm
            2, Gen.elements [ true, false; true, true; false, false ] |> Gen.map RmsNorm
            4, Gen.map Attention attentionShape
            2, Gen.map2 (fun h a -> Gated(h, a)) (Gen.choose (1, 6)) activation
            1, Gen.constant Opaque
        ]

/// A random piece of about `size` leaves.
let rec piece (size: int) : Gen<Piece> =
    if size <= 1 then
        leaf
    else
        Gen.frequency
            [
                2, leaf
                2,
                gen {
                    let! n = Gen.choose (2, 3)
                    let! parts = Gen.listOfLength n (piece (size / n))
                    return Chain parts
                }
                1, Gen.map2 (fun a b -> Sum [ a; b ]) (piece (size / 2)) (piece (size / 2))
                1, Gen.map2 (fun c p -> Scale(c, p)) (Gen.elements [ -1.5; 0.5; 2.0 ]) (piece (size - 1))
            ]

/// Simpler variants of a piece, simplest first: its parts alone, fewer parts, then simpler parts.
let rec shrinkPiece (p: Piece) : Piece seq =
    seq {
        match p with
        | Sum parts
        | Chain parts ->
            yield! parts
            let rebuild =
                match p with
                | Sum _ -> Sum
                | _ -> Chain
            if parts.Length > 2 then
                for i in 0 .. parts.Length - 1 do
                    yield rebuild (List.removeAt i parts)
            for i in 0 .. parts.Length - 1 do
                for smaller in shrinkPiece parts.[i] do
                    yield rebuild (List.updateAt i smaller parts)
        | Scale(c, inner) ->
            yield inner
            for smaller in shrinkPiece inner do
                yield Scale(c, smaller)
        | Mlp(hidden, act, bias) ->
            yield Act act
            if bias then
                yield Mlp(hidden, act, false)
            if hidden > 1 then
                yield Mlp(1, act, bias)
        | Gated(hidden, act) ->
            yield Act act
            if hidden > 1 then
                yield Gated(1, act)
        | Attention a ->
            if a.Rotary.IsSome then
                yield Attention { a with Rotary = None }
            if a.Window.IsSome then
                yield Attention { a with Window = None }
            if a.Fused.IsSome then
                yield Attention { a with Fused = None }
            if a.Biases then
                yield Attention { a with Biases = false }
            if a.Scaling <> ScoreScaling.InverseSqrtHeadDim then
                yield Attention { a with Scaling = ScoreScaling.InverseSqrtHeadDim }
            if a.Heads > 1 then
                yield Attention { a with Heads = 1; KvHeads = 1 }
            if a.KvHeads < a.Heads then
                yield Attention { a with KvHeads = a.Heads }
            if a.HeadDim > 2 then
                yield Attention { a with HeadDim = 2 }
        | LayerNorm true -> yield LayerNorm false
        | RmsNorm(true, plusOne) ->
            yield RmsNorm(false, false)
            if plusOne then
                yield RmsNorm(true, false)
        | Affine true -> yield Affine false
        | Affine false
        | Act _
        | LayerNorm false
        | RmsNorm(false, _)
        | Opaque -> ()
    }

/// Simpler cases: a simpler network first, then smaller sizes and a lower order (not below `minOrder`).
let shrinkCase (minOrder: int) (c: NetCase) : NetCase seq =
    seq {
        for p in shrinkPiece c.Piece do
            yield { c with Piece = p }
        if c.Seq > 1 then
            yield { c with Seq = 1 }
        if c.Batch > 1 then
            yield { c with Batch = 1 }
        if c.Width > 1 then
            yield { c with Width = max 1 (c.Width / 2) }
        if c.Order > minOrder then
            yield { c with Order = c.Order - 1 }
    }

/// Random cases with networks of up to `maxSize` leaves and orders in [minOrder, maxOrder].
let cases (maxSize: int) (minOrder: int) (maxOrder: int) : Arbitrary<NetCase> =
    let generator =
        gen {
            let! size = Gen.choose (1, maxSize)
            let! p = piece size
            let! width = Gen.choose (1, 6)
            let! batch = Gen.choose (1, 2)
            let! seq = Gen.choose (1, 5)
            let! order = Gen.choose (minOrder, maxOrder)
            let! seed = Gen.choose (0, 1_000_000)
            return { Piece = p; Width = width; Batch = batch; Seq = seq; Order = order; Seed = seed }
        }
    Arb.fromGenShrink (generator, shrinkCase minOrder)
