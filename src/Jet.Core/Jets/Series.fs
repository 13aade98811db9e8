namespace Jet.Core

open System
open System.Collections.Generic
open TorchSharp

/// Truncated Taylor series of tensors: the arithmetic behind Taylor-mode jets.
///
/// Convention (normalised Taylor coefficients, Griewank and Walther, "Evaluating Derivatives", 2nd ed., ch. 13):
/// a series of order k is ONE tensor of shape [k+1, ...] whose slice j is x_j = x⁽ʲ⁾(0) / j!, so that
/// x(t) = Σ_j x_j t^j. The coefficient axis always comes first; the other axes are the tensor's own.
/// Linear maps act on the whole stack at once (one kernel); adding a constant moves x₀ only; products are
/// Cauchy products (x·y)_j = Σ_{i≤j} x_i y_{j−i}, batched over the stack; the other nonlinear functions use the
/// standard recurrences, sequential in j (y_j needs y_0..y_{j−1}), each step a short chain of fused multiply-adds
/// over whole coefficients (measured faster here than stacking the known coefficients for one multiply and sum).
/// Every operation stays on the autograd graph, so results are differentiable with respect to anything the series
/// depends on.
///
/// Shapes: unless a function says otherwise, it takes and returns series [k+1, ...] of one order k.
///
/// Example: the line x(t) = 1 + t is the series [1; 1; 0]; `exp` of it is e·[1; 1; 1/2] (e^(1+t) = e·(1 + t + t²/2 + …)).
[<RequireQualifiedAccess>]
module Series =

    /// The number k+1 of coefficients of a series [k+1, ...].
    let count (x: Tensor) = int x.shape.[0]

    /// The order k of a series [k+1, ...].
    let order (x: Tensor) = count x - 1

    /// The series of the line centre + t·direction truncated at `order`: [order+1, ...] = (centre, direction, 0, …).
    /// Shapes: centre and direction share any shape s; the result is [order+1, s…].
    let line (order: int) (centre: Tensor) (direction: Tensor) : Tensor =
        if order = 0 then
            centre.unsqueeze 0
        else
            let zeros =
                torch.zeros (
                    Array.append [| int64 (order - 1) |] centre.shape,
                    dtype = centre.dtype,
                    device = centre.device
                )
            torch.cat ([| centre.unsqueeze 0; direction.unsqueeze 0; zeros |], 0L)

    /// A tensor [n, 1, …, 1] of `values` in x's dtype and device, so it scales the first n coefficients of x.
    let private perCoefficient (x: Tensor) (values: float[]) =
        let shape = Array.append [| int64 values.Length |] (Array.create (int (x.dim ()) - 1) 1L)
        torch.tensor(values, dtype = torch.float64, device = x.device).to_type(x.dtype).reshape shape

    /// The coefficients of a series as a list of views (no copy).
    let private coefficients (x: Tensor) : IReadOnlyList<Tensor> = x.unbind 0L

    /// Σ_{i=lo..hi} w(i) · a_i · b_{j−i}: one coefficient of a (weighted) Cauchy product, where b holds the
    /// coefficients known so far (recurrences grow it). A chain of fused multiply-adds, one kernel per term, each
    /// over a whole coefficient. In place on the fresh accumulator only, which no backward function saves.
    let private convolve
        (w: int -> float)
        (a: IReadOnlyList<Tensor>)
        (b: IReadOnlyList<Tensor>)
        (lo: int)
        (hi: int)
        (j: int)
        : Tensor =
        let sum = a.[lo] * b.[j - lo]
        if w lo <> 1.0 then
            sum.mul_ (scalar (w lo)) |> ignore
        for i in lo + 1 .. hi do
            sum.addcmul_ (a.[i], b.[j - i], scalar (w i)) |> ignore
        sum

    /// Σ_{i=lo..j−lo} c · y_i y_{j−i}, using the symmetry of the terms (about half the products). Needs j ≥ 2·lo.
    let private symmetric (c: float) (y: IReadOnlyList<Tensor>) (lo: int) (j: int) : Tensor =
        let middle () = (y.[j / 2] * y.[j / 2]).mul_ (scalar c)
        if (j - 1) / 2 < lo || j < 1 then
            middle ()
        else
            let sum = convolve (fun _ -> 2.0 * c) y y lo ((j - 1) / 2) j
            if j % 2 = 0 then
                sum.addcmul_ (y.[j / 2], y.[j / 2], scalar c) |> ignore
            sum

    /// x with `f` applied to its constant coefficient x₀ only (as [1, ...]); the others are kept as they are.
    let private onConstant (f: Tensor -> Tensor) (x: Tensor) : Tensor =
        if count x = 1 then
            f x
        else
            torch.cat ([| f (x.narrow (0L, 0L, 1L)); x.narrow (0L, 1L, int64 (order x)) |], 0L)

    /// x + c for a constant c: only x₀ moves. Shapes: c broadcasts against one coefficient of x.
    let shift (c: Tensor) (x: Tensor) : Tensor = onConstant (fun x0 -> x0 + c) x

    /// x + c for a constant number c: only x₀ moves.
    let shiftBy (c: float) (x: Tensor) : Tensor = onConstant (fun x0 -> x0 + c) x

    /// The Cauchy product (a·b)_j = Σ_{i≤j} a_i b_{j−i} of two series with the same number of coefficients
    /// (the other axes broadcast). Term i scales every coefficient of b shifted by i at once: k+1 fused
    /// multiply-adds over the stack, k(k+1)/2 coefficient products in all. Example: (1 + t)·(1 + t) = [1; 2; 1].
    let mul (a: Tensor) (b: Tensor) : Tensor =
        let n = count a
        let product = a.narrow (0L, 0L, 1L) * b
        for i in 1 .. n - 1 do
            // In place on a fresh tensor that no backward function saved, so autograd stays correct.
            product
                .narrow(0L, int64 i, int64 (n - i))
                .addcmul_ (a.narrow (0L, int64 i, 1L), b.narrow (0L, 0L, int64 (n - i)), scalar 1.0)
            |> ignore
        product

    /// The Cauchy square a·a.
    let square (a: Tensor) : Tensor = mul a a

    /// The Cauchy product of matrix products: (a @ b)_j = Σ_{i≤j} a_{j−i} @ b_i, for series [k+1, ..., m, n] and
    /// [k+1, ..., n, p] with the same batch axes (attention scores QKᵀ, attention times values). For each i the
    /// coefficients a_0..a_{k−i} are stacked as rows of one matrix, so the whole product is k+1 batched matmuls
    /// with k(k+1)/2 coefficient products in all. Returns [k+1, ..., m, p] (a view in a coefficient-inner layout).
    let matmul (a: Tensor) (b: Tensor) : Tensor =
        let n = count a
        let rank = int64 a.shape.Length
        let m = a.shape.[int rank - 2]
        // [..., k+1, m, n]: the first n−i coefficients are then one block of (n−i)·m rows.
        let rows = torch.movedim(a, 0L, -3L).contiguous ()
        let block i = rows.narrow(-3L, 0L, int64 (n - i)).flatten (-3L, -2L)
        let bs = coefficients b
        let product = block(0).matmul(bs.[0]).unflatten (rank - 3L, [| int64 n; m |])
        for i in 1 .. n - 1 do
            product
                .narrow(-3L, int64 i, int64 (n - i))
                .add_ (block(i).matmul(bs.[i]).unflatten (rank - 3L, [| int64 (n - i); m |]))
            |> ignore
        torch.movedim (product, -3L, 0L)

    /// 1/x: q₀ = 1/x₀, q_j = −(Σ_{i=1..j} x_i q_{j−i}) / x₀. Needs x₀ ≠ 0.
    let reciprocal (x: Tensor) : Tensor =
        let xs = coefficients x
        let inverse = xs.[0].reciprocal ()
        let q = ResizeArray [ inverse ]
        for j in 1 .. xs.Count - 1 do
            q.Add((convolve (fun _ -> -1.0) xs q 1 j j).mul_ inverse)
        torch.stack (q, 0L)

    /// a/b: q₀ = a₀/b₀, q_j = (a_j − Σ_{i=1..j} b_i q_{j−i}) / b₀. Needs b₀ ≠ 0; the other axes broadcast.
    let div (a: Tensor) (b: Tensor) : Tensor =
        let xs, bs = coefficients a, coefficients b
        let inverse = bs.[0].reciprocal ()
        let q = ResizeArray [ xs.[0] * inverse ]
        for j in 1 .. xs.Count - 1 do
            q.Add((xs.[j] - convolve (fun _ -> 1.0) bs q 1 j j).mul_ inverse)
        torch.stack (q, 0L)

    /// e^x: y₀ = e^x₀, y_j = Σ_{i=1..j} (i/j)·x_i y_{j−i} (from y′ = y·x′).
    let exp (x: Tensor) : Tensor =
        let xs = coefficients x
        let y = ResizeArray [ torch.exp xs.[0] ]
        for j in 1 .. xs.Count - 1 do
            y.Add(convolve (fun i -> float i / float j) xs y 1 j j)
        torch.stack (y, 0L)

    /// ln x: y₀ = ln x₀, y_j = (x_j − Σ_{i=1..j−1} ((j−i)/j)·x_i y_{j−i}) / x₀ (from x·y′ = x′). Needs x₀ > 0.
    let log (x: Tensor) : Tensor =
        let xs = coefficients x
        let inverse = xs.[0].reciprocal ()
        let y = ResizeArray [ torch.log xs.[0] ]
        for j in 1 .. xs.Count - 1 do
            let known =
                if j = 1 then
                    xs.[1]
                else
                    xs.[j] - convolve (fun i -> float (j - i) / float j) xs y 1 (j - 1) j
            y.Add(known * inverse)
        torch.stack (y, 0L)

    /// √x: y₀ = √x₀, y_j = (x_j − Σ_{i=1..j−1} y_i y_{j−i}) / (2y₀). Needs x₀ > 0.
    let sqrt (x: Tensor) : Tensor =
        let xs = coefficients x
        let root = torch.sqrt xs.[0]
        let half = 0.5 * root.reciprocal ()
        let y = ResizeArray [ root ]
        for j in 1 .. xs.Count - 1 do
            let known = if j = 1 then xs.[1] else xs.[j] - symmetric 1.0 y 1 j
            y.Add(known * half)
        torch.stack (y, 0L)

    /// x^r for a real r: y₀ = x₀^r, y_j = (1/x₀) Σ_{i=1..j} (((r+1)·i − j)/j)·x_i y_{j−i} (from x·y′ = r·x′·y).
    /// Needs x₀ > 0 unless r is a whole number.
    let pow (r: float) (x: Tensor) : Tensor =
        let xs = coefficients x
        let inverse = xs.[0].reciprocal ()
        let y = ResizeArray [ powf xs.[0] r ]
        for j in 1 .. xs.Count - 1 do
            y.Add((convolve (fun i -> ((r + 1.0) * float i - float j) / float j) xs y 1 j j).mul_ inverse)
        torch.stack (y, 0L)

    /// 1/√x, by the power recurrence with r = −½. Needs x₀ > 0.
    let rsqrt (x: Tensor) : Tensor = pow -0.5 x

    /// tanh x: y₀ = tanh x₀, y_j = Σ_{i=1..j} (i/j)·x_i u_{j−i} with u = 1 − y·y (from y′ = (1 − y²)·x′).
    let tanh (x: Tensor) : Tensor =
        let xs = coefficients x
        let y0 = torch.tanh xs.[0]
        let y = ResizeArray [ y0 ]
        let u = ResizeArray [ 1.0 - y0 * y0 ]
        for j in 1 .. xs.Count - 1 do
            y.Add(convolve (fun i -> float i / float j) xs u 1 j j)
            if j < xs.Count - 1 then
                u.Add(symmetric -1.0 y 0 j)
        torch.stack (y, 0L)

    /// σ(x) = ½(1 + tanh(x/2)), through the tanh recurrence.
    let sigmoid (x: Tensor) : Tensor = shiftBy 0.5 (0.5 * tanh (0.5 * x))

    /// erf x: y′ = (2/√π)·e^(−x²)·x′, so with g = exp(−x·x) every y_j (j ≥ 1) comes from one Cauchy product:
    /// y_j = (2/√π)/j · Σ_{i=1..j} i·x_i g_{j−i}.
    let erf (x: Tensor) : Tensor =
        let k = order x
        let y0 = torch.special.erf (x.narrow (0L, 0L, 1L))
        if k = 0 then
            y0
        else
            let g = exp (-(square x))
            let slope = x.narrow (0L, 1L, int64 k) * perCoefficient x [| for i in 1..k -> float i |]
            let rest =
                mul slope (g.narrow (0L, 0L, int64 k))
                * perCoefficient x [| for j in 1..k -> 2.0 / Math.Sqrt Math.PI / float j |]
            torch.cat ([| y0; rest |], 0L)

    /// The series of a constant `fill` where `allowed` is false (x₀ ← fill, x_j ← 0), x elsewhere.
    /// Shapes: allowed is a boolean tensor that broadcasts against one coefficient of x.
    let maskFill (allowed: Tensor) (fill: float) (x: Tensor) : Tensor =
        let fills = perCoefficient x (Array.init (count x) (fun j -> if j = 0 then fill else 0.0))
        torch.where (allowed, x, fills)

    /// Softmax over the last axis, as exp(x − m) / Σ exp(x − m) with m the maximum of x₀ (a constant shift, so
    /// it changes no coefficient of the result but keeps e^x₀ finite). Entries with x₀ = −∞ (masked) get 0.
    let softmax (x: Tensor) : Tensor =
        let peak = x.[0L].amax([| -1L |], keepdim = true).detach ()
        let e = exp (shift (-peak) x)
        div e (e.sum (-1L, keepdim = true))
