namespace Jet.Core

open System

/// Base of every error JetDsl raises for misuse or bad input. Each message says what is wrong and what is valid.
type JetException(message: string, inner: exn) =
    inherit Exception(message, inner)
    new(message: string) = JetException(message, null)

/// An expansion or jet order outside the valid range (plan orders are integers 0..64, see `Expansion.checkOrder`; jet
/// orders are integers ≥ 0).
type InvalidOrderException(message: string) =
    inherit JetException(message)

/// A required argument was not given (for example the evaluation point of a jet of order ≥ 1).
type MissingArgumentException(message: string) =
    inherit JetException(message)

/// Tensors whose shapes must agree do not.
type ShapeMismatchException(message: string) =
    inherit JetException(message)

/// Tensors whose element types must agree do not, or a tensor has an element type that cannot be used here.
type DTypeException(message: string) =
    inherit JetException(message)

/// Tensors that must live on one device do not.
type DeviceMismatchException(message: string) =
    inherit JetException(message)

/// A device this build or machine does not have (CUDA on the CPU-only TorchSharp build), or a device name that is
/// not cpu, cuda or cuda:N.
type DeviceUnavailableException(message: string) =
    inherit JetException(message)

/// An index (layer, block, stream, token id, position, head) outside its valid range.
type IndexRangeException(message: string) =
    inherit JetException(message)

/// An expansion plan or network description that cannot be evaluated as written.
type InvalidPlanException(message: string) =
    inherit JetException(message)

/// A checkpoint directory or file that cannot be read (missing file, malformed header, wrong tensor shape).
type CheckpointException(message: string, inner: exn) =
    inherit JetException(message, inner)
    new(message: string) = CheckpointException(message, null)

/// Non-finite values (NaN, +∞, −∞) where finite ones are required: weights at load (unless the load options allow
/// them) or a result a caller asked to be finite. The message names where the first one is and how many there are.
type NonFiniteException(message: string) =
    inherit JetException(message)

/// A request whose estimated memory exceeds what the machine has available (an order, width, batch size or sequence
/// length too large); the message gives the estimate, the limit and a value that fits.
type MemoryLimitException(message: string) =
    inherit JetException(message)

/// A model architecture that no loader supports.
type UnsupportedArchitectureException(message: string) =
    inherit JetException(message)

/// The native TorchSharp runtime could not be started.
type NativeRuntimeException(message: string, inner: exn) =
    inherit JetException(message, inner)

/// TorchSharp's tensor type, named once for the whole core.
type Tensor = TorchSharp.torch.Tensor
