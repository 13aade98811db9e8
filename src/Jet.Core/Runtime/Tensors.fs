namespace Jet.Core

open System
open TorchSharp

/// Small helpers over TorchSharp tensors: descriptions for messages, validation, dispose scopes.
[<RequireQualifiedAccess>]
module Tensors =

    /// "float64[2, 3] on cpu", for error messages.
    let describe (t: Tensor) =
        let shape = t.shape |> Array.map string |> String.concat ", "
        sprintf "%s[%s] on %O" (string t.dtype |> fun s -> s.ToLowerInvariant()) shape t.device

    let shapeText (shape: int64[]) = "[" + (shape |> Array.map string |> String.concat ", ") + "]"

    /// True for float16, bfloat16, float32 and float64 tensors.
    let isFloating (t: Tensor) = torch.is_floating_point t

    /// Fails unless the tensor has a floating element type; `what` names the argument in the message.
    let requireFloating (what: string) (t: Tensor) =
        if isNull (box t) then
            raise (MissingArgumentException(sprintf "%s is null; pass a floating-point tensor." what))
        if not (isFloating t) then
            raise (
                DTypeException(
                    sprintf
                        "%s has element type %O; jets need a floating-point tensor (float32 or float64; float16/bfloat16 also work)."
                        what
                        t.dtype
                )
            )

    /// Fails unless both tensors have the same shape, element type and device.
    let requireCompatible (whatA: string) (a: Tensor) (whatB: string) (b: Tensor) =
        if a.shape <> b.shape then
            raise (
                ShapeMismatchException(
                    sprintf
                        "%s has shape %s but %s has shape %s; they must be equal."
                        whatA
                        (shapeText a.shape)
                        whatB
                        (shapeText b.shape)
                )
            )
        if a.dtype <> b.dtype then
            raise (
                DTypeException(
                    sprintf "%s is %O but %s is %O; they must have the same element type." whatA a.dtype whatB b.dtype
                )
            )
        if a.device.ToString() <> b.device.ToString() then
            raise (
                DeviceMismatchException(
                    sprintf "%s is on %O but %s is on %O; move both to one device." whatA a.device whatB b.device
                )
            )

    /// Runs `body` in a fresh dispose scope; the tensors it returns (via `keep`) survive, everything else is freed.
    let scoped (body: unit -> 'T) (keep: 'T -> Tensor seq) : 'T =
        Native.ensure ()
        use scope = torch.NewDisposeScope()
        let result = body ()
        for t in keep result do
            if not (isNull (box t)) then
                t.MoveToOuterDisposeScope() |> ignore
        result

    /// `scoped` for a body returning one tensor.
    let scoped1 (body: unit -> Tensor) : Tensor = scoped body Seq.singleton

    /// Number of tensors TorchSharp currently holds alive (for leak tests).
    [<CompiledName("LiveCount")>]
    let liveCount () = Tensor.TotalCount

/// F#-friendly spellings of TorchSharp calls whose overloads F# cannot pick from a literal.
[<AutoOpen>]
module TensorOperators =
    /// A TorchSharp scalar from a float.
    let inline scalar (x: float) : Scalar = Scalar.op_Implicit x

    /// t raised to a constant power, elementwise.
    let inline powf (t: Tensor) (p: float) = t.pow (scalar p)
