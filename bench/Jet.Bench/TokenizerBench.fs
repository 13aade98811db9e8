/// Tokenizing 1 MB of text with the Llama 3 and Qwen3 tokenizers of the shared fixtures: the first call (regex
/// compilation, JIT, empty merge caches) and the median of later calls, in wall time and in CPU time of this process
/// (encoding runs on one thread, so CPU time is what it takes on an idle core), on two texts: the repository's own docs
/// and F# sources (prose and code, repeated up to 1 MB), and vocabulary entries drawn at random and separated by
/// spaces (about 100,000 distinct words: the merge cache's worst case).
module Jet.Bench.TokenizerBench

open System
open System.Diagnostics
open System.IO
open System.Text
open Jet.Core.Models
open Jet.Bench.Measure

let private megabyte = 1_000_000

/// The repository's docs/*.md and src/**/*.fs, concatenated in name order and repeated to 1 MB.
let private repositoryText () =
    let rec root (dir: DirectoryInfo) =
        if isNull dir then
            failwith "the bench runs inside the repository (JetDsl.sln not found)"
        elif File.Exists(Path.Combine(dir.FullName, "JetDsl.sln")) then
            dir.FullName
        else
            root dir.Parent
    let repo = root (DirectoryInfo AppContext.BaseDirectory)
    let files =
        [
            yield! Directory.GetFiles(Path.Combine(repo, "docs"), "*.md")
            yield!
                Directory.GetFiles(Path.Combine(repo, "src"), "*.fs", SearchOption.AllDirectories)
                |> Array.filter (fun f -> not (f.Contains "/obj/" || f.Contains "/bin/"))
        ]
        |> List.sort
    let text = StringBuilder()
    while text.Length < megabyte do
        for f in files do
            text.Append(File.ReadAllText f) |> ignore
    text.ToString(0, megabyte)

/// Vocabulary entries (decoded, whole characters only, surrounding spaces trimmed) drawn with a fixed seed and
/// separated by spaces, until 1 MB.
let private randomVocabularyText (tokenizer: ITokenizer) =
    let random = Random(1)
    let text = StringBuilder()
    while text.Length < megabyte do
        let piece = (tokenizer.Decode [| random.Next(0, min tokenizer.VocabSize 100000) |]).Trim()
        if piece.Length > 0 && not (piece.Contains '\uFFFD') then
            text.Append(piece).Append(' ') |> ignore
    text.ToString(0, megabyte)

let run () =
    let fixtures = Jet.Tests.Fixtures.directory.Value
    let prose = repositoryText ()
    for name in [ "llama3-tokenizer"; "qwen3-tokenizer" ] do
        let watch = Stopwatch.StartNew()
        let tokenizer = HfTokenizer.load (Path.Combine(fixtures, name)) 0 false
        let loadMs = watch.Elapsed.TotalMilliseconds
        for kind, text in [ "docs and sources", prose; "random vocabulary", randomVocabularyText tokenizer ] do
            let cpu () = Process.GetCurrentProcess().TotalProcessorTime.TotalMilliseconds
            let cpuBefore = cpu ()
            watch.Restart()
            let tokens = (tokenizer.Encode text).Length
            let firstMs, firstCpuMs = watch.Elapsed.TotalMilliseconds, cpu () - cpuBefore
            let cpuTimes = ResizeArray()
            let medianMs =
                medianMs 1 5 (fun () ->
                    let before = cpu ()
                    tokenizer.Encode text |> ignore
                    cpuTimes.Add(cpu () - before))
            let medianCpuMs = Seq.sort cpuTimes |> Seq.item (cpuTimes.Count / 2)
            emit
                {|
                    suite = "tokenize-1mb"
                    tokenizer = name
                    text = kind
                    chars = text.Length
                    tokens = tokens
                    load_ms = Math.Round(loadMs, 0)
                    first_call_ms = Math.Round(firstMs, 1)
                    first_call_cpu_ms = Math.Round(firstCpuMs, 1)
                    median_ms = Math.Round(medianMs, 1)
                    median_cpu_ms = Math.Round(medianCpuMs, 1)
                    target_ms = 1000
                |}
