namespace Jet.Core

open System
open System.Collections.Generic
open TorchSharp

/// How to compute one jet J^k f(x)(y) = Σ_{j=0..k} c_j with c_j = D^j f(x)[v]^j / j!.
type JetOptions =
    {
        /// The order k (≥ 0).
        Order: int
        /// When true (the default) v = y − x, the Taylor polynomial of f at x evaluated at y.
        /// When false v = y, so the jet approximates f(x + y).
        Recentre: bool
        /// When true (the default) the results keep their autograd graph, so they can be differentiated with
        /// respect to the centre, the point and the parameters of f. When false they are detached, which frees
        /// the graph memory at once.
        Differentiable: bool
    }

    /// Order 1, recentred, differentiable.
    static member Default = { Order = 1; Recentre = true; Differentiable = true }

    /// Default options with the given order.
    static member OfOrder(order: int) = { JetOptions.Default with Order = order }

/// The outcome of a jet: the value, the normalised coefficients c_0..c_k and the partial sums Σ_{i≤j} c_i.
type JetResult =
    {
        /// J^k f(x)(y) (equal to the last partial sum).
        Value: Tensor
        /// c_j = D^j f(x)[v]^j / j!, for j = 0..k.
        Coefficients: IReadOnlyList<Tensor>
        /// Σ_{i≤j} c_i, for j = 0..k.
        PartialSums: IReadOnlyList<Tensor>
    }

    member r.Order = r.Coefficients.Count - 1

    interface IDisposable with
        member r.Dispose() =
            for t in Seq.append r.Coefficients r.PartialSums do
                t.Dispose()
            r.Value.Dispose()

/// The generic jet operator for any Tensor → Tensor function, by nested Jacobian-vector products.
[<RequireQualifiedAccess>]
module Jet =

    let private validate (order: int) (centre: Tensor) (point: Tensor option) =
        if order < 0 then
            raise (InvalidOrderException(sprintf "The jet order must be an integer ≥ 0; got %d." order))
        Tensors.requireFloating "The centre x" centre
        match point with
        | None when order >= 1 ->
            raise (
                MissingArgumentException(
                    sprintf
                        "A jet of order %d needs an evaluation point y; only order 0 (which is f(x)) may omit it."
                        order
                )
            )
        | Some y ->
            Tensors.requireFloating "The point y" y
            Tensors.requireCompatible "The centre x" centre "the point y" y
        | None -> ()

    /// True for a gradient autograd did not produce: TorchSharp returns either null or a tensor with an empty
    /// handle (an undefined libtorch tensor, for example the second derivative through ReLU's mask).
    let private undefined (t: Tensor) = isNull (box t) || t.IsInvalid

    /// d/dt of a tensor g(t) that depends on the scalar leaf t, kept differentiable (double-vjp trick: the vjp
    /// u ↦ uᵀ ∂g/∂t is linear in u, so its gradient in u is ∂g/∂t).
    let private derivative (g: Tensor) (t: Tensor) =
        if not g.requires_grad then
            torch.zeros_like g
        else
            // Anchoring g to t keeps every gradient below defined even where g no longer depends on t (for
            // example past the second order of a ReLU network): TorchSharp counts the undefined tensors that
            // allow_unused would return as live forever.
            let anchored = g + t * 0.0
            use u = torch.zeros_like(g).requires_grad_ (true)
            let vjp =
                torch.autograd.grad (
                    [| anchored |],
                    [| t |],
                    [| u |],
                    retain_graph = true,
                    create_graph = true,
                    allow_unused = true
                )
            let s = vjp.[0]
            if undefined s || not s.requires_grad then
                torch.zeros_like g
            else
                let jvp =
                    torch.autograd.grad (
                        [| s |],
                        [| u |],
                        [| torch.ones_like s |],
                        retain_graph = true,
                        create_graph = true,
                        allow_unused = true
                    )
                if undefined jvp.[0] then torch.zeros_like g else jvp.[0]

    /// Raw coefficients c_0..c_k of f(x(t)) at t = 0 along the polynomial path x(t) = Σ_j p_j t^j, given as its
    /// normalised coefficients [p_0; p_1; …] (terms beyond t^k cannot reach c_0..c_k and are ignored).
    /// Nested JVPs, no validation, no scope handling. The Taylor engine falls back to this for opaque functions.
    /// Shapes: every p_j has the shape f expects; each c_j has the shape f returns.
    let coefficientsAlongPath (f: Tensor -> Tensor) (order: int) (path: Tensor list) : Tensor list =
        match path with
        | [] ->
            raise (MissingArgumentException "The path has no coefficients; give at least the point p_0 where t = 0.")
        | start :: _ when order = 0 -> [ f start ]
        | start :: _ ->
            use _ = torch.enable_grad ()
            let t = torch.zeros([||], dtype = start.dtype, device = start.device).requires_grad_ (true)
            // Horner form p_0 + t(p_1 + t(p_2 + …)): products with t only, no powers of t to differentiate.
            let point = List.reduceBack (fun p rest -> p + t * rest) (List.truncate (order + 1) path)
            let g0 = f point
            let mutable current = g0
            let mutable factorial = 1.0
            let coefficients = ResizeArray [ g0 ]
            for j in 1..order do
                current <- derivative current t
                factorial <- factorial * float j
                coefficients.Add(current / factorial)
            List.ofSeq coefficients

    /// Raw coefficients c_0..c_k of f along the line x + t v at t = 0 (no validation, no scope handling).
    let internal coefficientsAlong
        (f: Tensor -> Tensor)
        (order: int)
        (centre: Tensor)
        (direction: Tensor)
        : Tensor list =
        coefficientsAlongPath f order [ centre; direction ]

    /// The coefficients the options ask for: validated, with v = y − x (recentred) or v = y.
    let private coefficientsFor (options: JetOptions) (f: Tensor -> Tensor) (centre: Tensor) (point: Tensor option) =
        validate options.Order centre point
        // Each nested JVP differentiates the whole graph built so far, so the graph (and the time) grows with the
        // square of the order; about 2 KB per autograd node besides the values themselves.
        let nodes = float (options.Order + 1) * float (options.Order + 1)
        Memory.require
            (sprintf "A nested-JVP jet of order %d of a function of %d values" options.Order (centre.numel ()))
            (nodes * (4.0 * float (centre.numel ()) * float centre.ElementSize + 2048.0))
            "Lower the order: this engine's memory grows with its square."
        Native.ensure ()
        let direction =
            match point with
            | Some y when options.Order >= 1 -> if options.Recentre then y - centre else y
            | _ -> centre
        coefficientsAlong f options.Order centre direction

    /// The full jet: value, coefficients and partial sums. `point` may be None only for order 0.
    /// Shapes: centre and point share any shape; f may change the trailing shape.
    [<CompiledName("Compute")>]
    let compute (options: JetOptions) (f: Tensor -> Tensor) (centre: Tensor) (point: Tensor option) : JetResult =
        use scope = torch.NewDisposeScope()
        let finish (t: Tensor) = (if options.Differentiable then t else t.detach ()).MoveToOuterDisposeScope()
        let coefficients = coefficientsFor options f centre point |> List.map finish
        // Each result gets its own handle, so disposing one never invalidates another.
        let partialSums =
            coefficients.Head.alias().MoveToOuterDisposeScope()
            :: (coefficients |> List.scan (+) (torch.zeros_like coefficients.Head) |> List.skip 2 |> List.map finish)
        let value = (List.last partialSums).alias().MoveToOuterDisposeScope()
        { Value = value; Coefficients = Array.ofList coefficients; PartialSums = Array.ofList partialSums }

    /// J^k f(x)(y) only. `point` may be None only for order 0.
    let value (options: JetOptions) (f: Tensor -> Tensor) (centre: Tensor) (point: Tensor option) : Tensor =
        use scope = torch.NewDisposeScope()
        let total = coefficientsFor options f centre point |> List.reduce (+)
        (if options.Differentiable then total else total.detach ()).MoveToOuterDisposeScope()

    /// J^k f(x)(y), recentred and differentiable: the everyday entry point.
    let jet (order: int) (f: Tensor -> Tensor) (centre: Tensor) (point: Tensor) : Tensor =
        value (JetOptions.OfOrder order) f centre (Some point)

    /// The jet of a TorchSharp module (any module mapping one tensor to one tensor).
    let ofModule
        (options: JetOptions)
        (m: torch.nn.Module<Tensor, Tensor>)
        (centre: Tensor)
        (point: Tensor option)
        : JetResult =
        if isNull (box m) then
            raise (MissingArgumentException "The module is null; pass a TorchSharp module Tensor → Tensor.")
        compute options (fun x -> m.forward x) centre point
