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
/// Cauchy products (x·y)_j = Σ_{i≤j} x_i y_{j−i}; the other nonlinear functions use the standard recurrences,
/// each step one vectorised kernel over the coefficients it reads. Every operation stays on the autograd graph,
/// so results are differentiable with respect to anything the series depends on.
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
            let zeros = torch.zeros (Array.append [| int64 (order - 1) |] centre.shape, dtype = centre.dtype, device = centre.device)
            torch.cat ([| centre.unsqueeze 0; direction.unsqueeze 0; zeros |], 0L)

    /// A tensor [n, 1, …, 1] of `values` in x's dtype and device, so it scales the first n coefficients of x.
    let private perCoefficient (x: Tensor) (values: float[]) =
        let shape = Array.append [| int64 values.Length |] (Array.create (int (x.dim ()) - 1) 1L)
        torch.tensor(values, dtype = torch.float64, device = x.device).to_type(x.dtype).reshape shape

    /// The series of x′(t): [k, ...] with slice i = (i+1)·x_{i+1}. Every ODE-type recurrence below reads it.
    let private derivative (x: Tensor) =
        let k = order x
        x.narrow (0L, 1L, int64 k) * perCoefficient x [| for i in 1..k -> float i |]

    /// Σ_{i=lo..hi} w_i · a_i · b_{j−i}: one coefficient of a Cauchy product, where `a` is a series and `b` holds the
    /// coefficients known so far (recurrences grow it). One stacked multiply and one sum, whatever the count.
    let private convolveWeighted (weights: float[] option) (a: Tensor) (b: IReadOnlyList<Tensor>) (lo: int) (hi: int) (j: int) : Tensor =
        let n = hi - lo + 1
        if n = 1 then
            let term = a.[int64 lo] * b.[j - lo]
            match weights with
            | Some w -> term * w.[0]
            | None -> term
        else
            let terms = a.narrow (0L, int64 lo, int64 n) * torch.stack ([| for i in lo..hi -> b.[j - i] |], 0L)
            let terms =
                match weights with
                | Some w -> terms * perCoefficient terms w
                | None -> terms
            terms.sum (0L)

    let private convolve a b lo hi j = convolveWeighted None a b lo hi j

    /// x + c for a constant c: only x₀ moves. Shapes: c broadcasts against one coefficient of x.
    let shift (c: Tensor) (x: Tensor) : Tensor =
        if count x = 1 then
            x + c
        else
            torch.cat ([| x.narrow (0L, 0L, 1L) + c; x.narrow (0L, 1L, int64 (order x)) |], 0L)

    /// x + c for a constant number c: only x₀ moves.
    let shiftBy (c: float) (x: Tensor) : Tensor =
        if count x = 1 then
            x + c
        else
            torch.cat ([| x.narrow (0L, 0L, 1L) + c; x.narrow (0L, 1L, int64 (order x)) |], 0L)

    /// The Cauchy product (a·b)_j = Σ_{i≤j} a_i b_{j−i} of two series with the same number of coefficients
    /// (the other axes broadcast). Term i scales every coefficient of b shifted by i at once: k+1 fused
    /// multiply-adds over the stack, k(k+1)/2 slice products in all. Example: (1 + t)·(1 + t) = [1; 2; 1].
    let mul (a: Tensor) (b: Tensor) : Tensor =
        let n = count a
        let product = a.narrow (0L, 0L, 1L) * b
        for i in 1 .. n - 1 do
            // In place on a fresh tensor that no backward function saved, so autograd stays correct.
            product.narrow(0L, int64 i, int64 (n - i)).addcmul_(a.narrow (0L, int64 i, 1L), b.narrow (0L, 0L, int64 (n - i)), scalar 1.0) |> ignore
        product

    /// The Cauchy square a·a.
    let square (a: Tensor) : Tensor = mul a a

    /// The Cauchy product of matrix products: (a @ b)_j = Σ_{i≤j} a_i @ b_{j−i}, for series [k+1, ..., m, n] and
    /// [k+1, ..., n, p] (attention scores QKᵀ, attention times values). k+1 batched matmuls over the stack.
    let matmul (a: Tensor) (b: Tensor) : Tensor =
        let n = count a
        let product = a.narrow(0L, 0L, 1L).matmul b
        for i in 1 .. n - 1 do
            product.narrow(0L, int64 i, int64 (n - i)).add_ (a.narrow(0L, int64 i, 1L).matmul (b.narrow (0L, 0L, int64 (n - i)))) |> ignore
        product

    /// 1/x: q₀ = 1/x₀, q_j = −(Σ_{i=1..j} x_i q_{j−i}) / x₀. Needs x₀ ≠ 0.
    let reciprocal (x: Tensor) : Tensor =
        let inverse = x.[0L].reciprocal ()
        let q = ResizeArray [ inverse ]
        for j in 1 .. order x do
            q.Add(-(convolve x q 1 j j) * inverse)
        torch.stack (q, 0L)

    /// a/b: q₀ = a₀/b₀, q_j = (a_j − Σ_{i=1..j} b_i q_{j−i}) / b₀. Needs b₀ ≠ 0; the other axes broadcast.
    let div (a: Tensor) (b: Tensor) : Tensor =
        let inverse = b.[0L].reciprocal ()
        let q = ResizeArray [ a.[0L] * inverse ]
        for j in 1 .. order a do
            q.Add((a.[int64 j] - convolve b q 1 j j) * inverse)
        torch.stack (q, 0L)

    /// e^x: y₀ = e^x₀, y_j = (1/j) Σ_{i=1..j} i·x_i y_{j−i} (from y′ = y·x′).
    let exp (x: Tensor) : Tensor =
        let y = ResizeArray [ torch.exp x.[0L] ]
        if order x > 0 then
            let slope = derivative x
            for j in 1 .. order x do
                y.Add(convolve slope y 0 (j - 1) (j - 1) / float j)
        torch.stack (y, 0L)

    /// ln x: y₀ = ln x₀, y_j = (x_j − (1/j) Σ_{i=1..j−1} (j−i)·y_{j−i} x_i) / x₀ (from x·y′ = x′). Needs x₀ > 0.
    let log (x: Tensor) : Tensor =
        let inverse = x.[0L].reciprocal ()
        let y = ResizeArray [ torch.log x.[0L] ]
        // (j·y_j), the coefficients of t·y′(t); slot 0 is never read.
        let scaled = ResizeArray [ y.[0] ]
        for j in 1 .. order x do
            let known = if j = 1 then x.[1L] else x.[int64 j] - convolve x scaled 1 (j - 1) j / float j
            let yj = known * inverse
            y.Add yj
            scaled.Add(yj * float j)
        torch.stack (y, 0L)

    /// √x: y₀ = √x₀, y_j = (x_j − Σ_{i=1..j−1} y_i y_{j−i}) / (2y₀). Needs x₀ > 0.
    let sqrt (x: Tensor) : Tensor =
        let root = torch.sqrt x.[0L]
        let half = 0.5 * root.reciprocal ()
        let y = ResizeArray [ root ]
        for j in 1 .. order x do
            let known = if j = 1 then x.[1L] else x.[int64 j] - convolve (torch.stack (y, 0L)) y 1 (j - 1) j
            y.Add(known * half)
        torch.stack (y, 0L)

    /// x^r for a real r: y₀ = x₀^r, y_j = (1/(j·x₀)) Σ_{i=1..j} ((r+1)·i − j)·x_i y_{j−i} (from x·y′ = r·x′·y).
    /// Needs x₀ > 0 unless r is a whole number.
    let pow (r: float) (x: Tensor) : Tensor =
        let inverse = x.[0L].reciprocal ()
        let y = ResizeArray [ powf x.[0L] r ]
        for j in 1 .. order x do
            let weights = [| for i in 1..j -> ((r + 1.0) * float i - float j) / float j |]
            y.Add(convolveWeighted (Some weights) x y 1 j j * inverse)
        torch.stack (y, 0L)

    /// 1/√x, by the power recurrence with r = −½. Needs x₀ > 0.
    let rsqrt (x: Tensor) : Tensor = pow -0.5 x

    /// tanh x: y₀ = tanh x₀, y_j = (1/j) Σ_{i=1..j} i·x_i u_{j−i} with u = 1 − y² (from y′ = (1 − y²)·x′).
    let tanh (x: Tensor) : Tensor =
        let y0 = torch.tanh x.[0L]
        let y = ResizeArray [ y0 ]
        let u = ResizeArray [ 1.0 - y0 * y0 ]
        if order x > 0 then
            let slope = derivative x
            for j in 1 .. order x do
                y.Add(convolve slope u 0 (j - 1) (j - 1) / float j)
                if j < order x then
                    u.Add(-(convolve (torch.stack (y, 0L)) y 0 j j))
        torch.stack (y, 0L)

    /// σ(x) = ½(1 + tanh(x/2)), through the tanh recurrence.
    let sigmoid (x: Tensor) : Tensor = shiftBy 0.5 (0.5 * tanh (0.5 * x))

    /// erf x: y′ = (2/√π)·e^(−x²)·x′, so with g = exp(−x·x) every y_j (j ≥ 1) comes from one Cauchy product:
    /// y_j = (2/√π)/j · Σ_{i=1..j} i·x_i g_{j−i}.
    let erf (x: Tensor) : Tensor =
        let k = order x
        let y0 = torch.special.erf(x.[0L]).unsqueeze 0
        if k = 0 then
            y0
        else
            let g = exp (-(square x))
            let rest = mul (derivative x) (g.narrow (0L, 0L, int64 k)) * perCoefficient x [| for j in 1..k -> 2.0 / Math.Sqrt Math.PI / float j |]
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
