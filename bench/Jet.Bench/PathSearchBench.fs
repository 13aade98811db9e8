/// Path search (issue 13): the top 20 paths at one position of a GPT-2-small-shaped random network (24 residual
/// layers, 32-token prompt) - wall time, prefixes evaluated against 2^24, peak memory - and the overlap of the beam's
/// top 10 with the brute-force top 10 over many prompts, where brute force runs (stories260K, random L = 12 nets).
module Jet.Bench.PathSearchBench

open System
open System.Diagnostics
open TorchSharp
open Jet.Core
open Jet.Core.Apps
open Jet.Core.Models
open Jet.Core.Tests
open Jet.Bench.Measure

let private prompt (vocab: int) (length: int) (seed: int) =
    let random = Random seed
    let ids = [| for _ in 1..length -> int64 (random.Next vocab) |]
    torch.tensor(ids, dtype = torch.int64).unsqueeze 0L

/// `jet paths`' figures on a GPT-2-small-shaped network: default beam (64) and a narrow one.
let run () =
    Native.ensure ()
    use net =
        SyntheticNets.gpt2Like
            2024
            {
                Vocab = 50257
                Width = 768
                Heads = 12
                Blocks = 12
                MaxPositions = 1024
                Tied = true
                UnembedBias = false
            }
            torch.float32
    use tokens = prompt net.Vocab 32 7
    for beam in [ 16; 64 ] do
        settleNative ()
        resetPeak ()
        let before = currentMb ()
        let options = { PathSearchOptions.Default with Top = 20; Beam = beam }
        // One warm-up run, then the median of three.
        PathSearch.search net tokens PathTarget.TopLogProb options |> ignore
        let mutable result = None
        let cpu = Process.GetCurrentProcess().TotalProcessorTime
        let ms =
            medianMs 0 3 (fun () -> result <- Some(PathSearch.search net tokens PathTarget.TopLogProb options))
        let cpuS = (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds / 3.0
        let r = result.Value
        emit
            {|
                suite = "path-search"
                layers = net.Depth
                prompt_tokens = 32
                top = 20
                beam = beam
                wall_s = ms / 1000.0
                cpu_s_per_run = cpuS
                load_average = (IO.File.ReadAllText "/proc/loadavg").Split(' ').[0]
                evaluated = r.Evaluated
                total_paths = r.TotalPaths
                pruned = r.Pruned
                peak_mb = peakMb ()
                rss_before_mb = before
                threads = torch.get_num_threads ()
            |}

let private overlap (net: Net) (tokens: Tensor) (beams: int list) =
    let brute = PathSearch.decompose net tokens PathTarget.TopLogProb PathLayers.All None
    let best =
        brute.Paths |> List.sortByDescending (snd >> abs) |> List.truncate 10 |> List.map fst |> Set.ofList
    [
        for beam in beams ->
            let r =
                PathSearch.search
                    net
                    tokens
                    PathTarget.TopLogProb
                    { PathSearchOptions.Default with Top = 10; Beam = beam }
            beam, (Set.intersect best (r.Paths |> List.map (fun p -> p.Steps) |> Set.ofList)).Count, r.Evaluated
    ]

let private report (model: string) (rows: (int * int * int64) list list) =
    for beam, _, evaluated in rows.Head do
        let overlaps =
            rows |> List.map (List.find (fun (b, _, _) -> b = beam)) |> List.map (fun (_, o, _) -> float o)
        emit
            {|
                suite = "path-overlap"
                model = model
                prompts = rows.Length
                beam = beam
                evaluated = evaluated
                mean_overlap_top10 = List.average overlaps
                min_overlap_top10 = List.min overlaps
            |}

/// Overlap of the beam's top 10 with the brute-force top 10 (target: log P of the top token, last position).
let runOverlap () =
    Native.ensure ()
    use _ = torch.no_grad ()
    let beams = [ 8; 32; 64; 128; 256 ]
    use stories = Model.load (Jet.Tests.Fixtures.path [ "stories260K" ]) torch.float32 torch.CPU
    let texts =
        [
            "Once upon a time there was a little girl named Lily. She"
            "The dog ran to the park and"
            "Tom had a big red ball. He wanted to"
            "One day, a bird flew"
            "Mom said to"
            "They played in the sun all day. At night"
            "The cat was sad because"
            "Sam and his friend went to the"
        ]
    report "stories260K" [ for t in texts -> (use tokens = Model.encode stories t in overlap stories.Net tokens beams) ]
    use random = SyntheticNets.gpt2Like 12 { SyntheticNets.small with Blocks = 6 } torch.float32
    report
        "random gpt2-like, L = 12"
        [ for seed in 1..8 -> (use tokens = prompt random.Vocab 8 seed in overlap random tokens beams) ]
