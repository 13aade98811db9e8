namespace Jet.Core.Apps

open System

/// Candidates for a global top-k over pairs (z₁, z₂): what a sweep over some first tokens keeps, and what shards of
/// one sweep hand to their merge.
type PairCandidates =
    {
        /// The ranking key of each candidate: log-probability or logit, as the sweep ranked it (float64, exact).
        Rank: float[]
        /// Flat pair indices z₁·vocab + z₂.
        Flat: int64[]
        /// The score reported for each candidate (a probability or a logit).
        Scores: float[]
    }

/// Reducing pair candidates to the global top k, in one order for every caller.
[<RequireQualifiedAccess>]
module PairCandidates =

    /// No candidates.
    [<CompiledName("Empty")>]
    let empty = { Rank = [||]; Flat = [||]; Scores = [||] }

    /// All candidates of `parts`, in order.
    [<CompiledName("Concat")>]
    let concat (parts: PairCandidates seq) : PairCandidates =
        let parts = Array.ofSeq parts
        {
            Rank = parts |> Array.collect (fun p -> p.Rank)
            Flat = parts |> Array.collect (fun p -> p.Flat)
            Scores = parts |> Array.collect (fun p -> p.Scores)
        }

    /// The k best candidates, best first: by rank descending (NaN first, as torch.topk ranks it), ties by flat index
    /// ascending. A total order, so a whole sweep and any split of it into shards select and print the same pairs.
    [<CompiledName("Best")>]
    let best (k: int) (c: PairCandidates) : PairCandidates =
        let order (i: int) (j: int) =
            let a, b = c.Rank.[i], c.Rank.[j]
            let byRank =
                match Double.IsNaN a, Double.IsNaN b with
                | true, true -> 0
                | true, false -> -1
                | false, true -> 1
                | false, false -> compare b a
            if byRank <> 0 then
                byRank
            else
                compare c.Flat.[i] c.Flat.[j]
        let chosen = Array.init c.Rank.Length id |> Array.sortWith order |> Array.truncate (max k 0)
        {
            Rank = chosen |> Array.map (fun i -> c.Rank.[i])
            Flat = chosen |> Array.map (fun i -> c.Flat.[i])
            Scores = chosen |> Array.map (fun i -> c.Scores.[i])
        }
