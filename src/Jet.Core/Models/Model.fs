namespace Jet.Core.Models

open TorchSharp
open Jet.Core

/// A network with its tokenizer and where it came from: what the applications and the CLI work on.
type Model =
    {
        Net: Net
        Tokenizer: ITokenizer
        /// The architecture family, for example "toy", "gpt2", "llama".
        Family: string
        /// "toy" or the checkpoint directory.
        Source: string
    }

/// Opening models.
[<RequireQualifiedAccess>]
module Model =
    /// The built-in toy network (seed, width) with its character tokenizer.
    let toy (seed: int) (width: int) (dtype: torch.ScalarType) =
        { Net = Toy.create seed width dtype; Tokenizer = CharTokenizer.Instance; Family = "toy"; Source = "toy" }

    /// Token ids of a prompt as a [1, seq] int64 tensor; fails on an empty prompt.
    let encode (model: Model) (prompt: string) =
        if System.String.IsNullOrEmpty prompt then
            raise (MissingArgumentException "The prompt is empty; give some text to tokenize.")
        let ids = model.Tokenizer.Encode prompt
        if ids.Length = 0 then
            raise (MissingArgumentException(sprintf "The prompt %A produced no tokens." prompt))
        torch.tensor(ids |> Array.map int64, dtype = torch.int64).unsqueeze 0
