namespace Jet.Core

open System
open TorchSharp

/// Where the first non-finite value (NaN, +∞ or −∞) of a tensor or of a list of readings is, and how many there are.
type NonFiniteReport =
    {
        /// What holds the value, for example "tensor 'h.0.attn.c_attn.weight'" or "stream h₂, position 3, KL".
        Where: string
        /// The index of the first non-finite value in row-major order (empty for a single value).
        Index: int64[]
        /// The value itself: NaN, +∞ or −∞.
        Value: float
        /// How many values there are not finite.
        Count: int64
        /// How many values were checked.
        Total: int64
    }

    /// "NaN", "+Inf" or "-Inf".
    member r.Kind =
        if Double.IsNaN r.Value then "NaN"
        elif r.Value > 0.0 then "+Inf"
        else "-Inf"

    /// One line for messages: "NaN in tensor 'w' at [0, 3] (12 of 800 values are not finite)".
    member r.Describe() =
        let at =
            if r.Index.Length = 0 then
                ""
            else
                " at " + Tensors.shapeText r.Index
        sprintf "%s in %s%s (%d of %d values are not finite)" r.Kind r.Where at r.Count r.Total

/// Finding non-finite values in tensors and in plain readings, so every result can say where the first one is.
[<RequireQualifiedAccess>]
module NonFinite =

    /// The row-major index of flat position `flat` in `shape`.
    let private unravel (shape: int64[]) (flat: int64) =
        let index = Array.zeroCreate shape.Length
        let mutable rest = flat
        for axis in shape.Length - 1 .. -1 .. 0 do
            index.[axis] <- rest % shape.[axis]
            rest <- rest / shape.[axis]
        index

    /// The first non-finite value of a tensor of any shape, dtype and device, or None when all are finite (integer
    /// and boolean tensors always are). The common case costs one read-only pass and no allocation: a sum in float64
    /// is finite exactly when every value is (a NaN or an infinity makes it non-finite, and float64 cannot overflow
    /// on sums of float32 or narrower values); the location and the count cost more passes only when it is not.
    [<CompiledName("TryFind")>]
    let tryFind (where: string) (t: Tensor) : NonFiniteReport option =
        if isNull (box t) || not (torch.is_floating_point t) || t.numel () = 0L then
            None
        else
            use _ = torch.no_grad ()
            use scope = torch.NewDisposeScope()
            // A sum in the tensor's own dtype is one pass with no copy and is NaN or ±Inf whenever a value is; a finite
            // tensor whose sum overflows only costs the exact check below.
            if Double.IsFinite(t.detach().sum().to_type(torch.float64).item<float> ()) then
                None
            else
                let bad = torch.isfinite(t.detach ()).logical_not_ ()
                if not (bad.any().item<bool> ()) then
                    None
                else
                    let flat = bad.flatten ()
                    // argmax returns the first maximum, so the first non-finite value in row-major order.
                    let first = flat.to_type(torch.uint8).argmax().item<int64> ()
                    let value = t.detach().flatten().[first].to_type(torch.float64).cpu().item<float> ()
                    Some
                        {
                            Where = where
                            Index = unravel t.shape first
                            Value = value
                            Count = flat.sum().item<int64> ()
                            Total = t.numel ()
                        }

    /// The first non-finite value of a sequence of plain values, indexed by position in the sequence.
    [<CompiledName("TryFindValues")>]
    let tryFindValues (where: string) (values: float seq) : NonFiniteReport option =
        let values = Array.ofSeq values
        match values |> Array.tryFindIndex (Double.IsFinite >> not) with
        | None -> None
        | Some i ->
            Some
                {
                    Where = where
                    Index = (if values.Length = 1 then [||] else [| int64 i |])
                    Value = values.[i]
                    Count = values |> Array.filter (Double.IsFinite >> not) |> Array.length |> int64
                    Total = int64 values.Length
                }

    /// The first report among labelled checks, in order; later checks are not run once one finds something.
    [<CompiledName("First")>]
    let first (checks: seq<unit -> NonFiniteReport option>) : NonFiniteReport option =
        checks |> Seq.tryPick (fun c -> c ())

    /// Fails with a NonFiniteException naming the first non-finite value, if there is one; `what` starts the
    /// message (for example "The checkpoint in gpt2/").
    [<CompiledName("Require")>]
    let require (what: string) (advice: string) (report: NonFiniteReport option) =
        match report with
        | Some r -> raise (NonFiniteException(sprintf "%s has non-finite values: %s. %s" what (r.Describe()) advice))
        | None -> ()
