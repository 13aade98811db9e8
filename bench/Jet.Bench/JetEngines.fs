/// Taylor-mode against nested-JVP jets on GPT-2-small-shaped work, float32, orders 0–4. Prints one line per
/// (work, engine, order): {"work","engine","order","ms","forward_ms","peak_mb"}, every time a median after warm-up.
/// Targets (issue 4): Taylor at order k ≤ 1.5·(k+1) forward passes on mlp768 and block768, ≥ 3× faster than JVP
/// at order 3 and ≥ 5× at order 4, peak memory growing at most linearly in k.
module Jet.Bench.JetEngines

open System
open TorchSharp
open Jet.Core

let private d, hidden, heads, vocab = 768L, 3072L, 12, 50257L

/// GPT-2-like random parameters in float32: weights N(0, 0.02²), norm weights near 1, small biases.
let private parameters () =
    use g = new torch.Generator(1234UL)
    let normal (shape: int64[]) (std: float) = torch.randn (shape, generator = g) * std
    ParameterStore.OfSeq
        [
            "ln1.w", 1.0 + normal [| d |] 0.1
            "ln1.b", normal [| d |] 0.1
            "attn.qkv.w", normal [| 3L * d; d |] 0.02
            "attn.qkv.b", normal [| 3L * d |] 0.02
            "attn.out.w", normal [| d; d |] 0.02
            "attn.out.b", normal [| d |] 0.02
            "ln2.w", 1.0 + normal [| d |] 0.1
            "ln2.b", normal [| d |] 0.1
            "fc1.w", normal [| hidden; d |] 0.02
            "fc1.b", normal [| hidden |] 0.02
            "fc2.w", normal [| d; hidden |] 0.02
            "fc2.b", normal [| d |] 0.02
            "lnf.w", 1.0 + normal [| d |] 0.1
            "lnf.b", normal [| d |] 0.1
            "unembed.w", normal [| vocab; d |] 0.02
        ]

let private layerNorm name = LayerNorm { Weight = Some(name + ".w"); Bias = Some(name + ".b"); Eps = 1e-5 }

/// γ_mlp(h) = W₂ gelu_tanh(W₁ LN₂(h) + b₁) + b₂.
let private mlp =
    Chain [ layerNorm "ln2"; Fn.affine "fc1.w" "fc1.b"; Act Activation.GeluTanh; Fn.affine "fc2.w" "fc2.b" ]

/// γ_attn(h) = Attn(LN₁(h)), GPT-2's fused QKV layout.
let private attention =
    Chain
        [
            layerNorm "ln1"
            Attention
                {
                    Heads = heads
                    KvHeads = heads
                    HeadDim = int d / heads
                    Projections =
                        Projections.Fused({ Weight = "attn.qkv.w"; Bias = Some "attn.qkv.b" }, FusedLayout.Blocked)
                    Output = { Weight = "attn.out.w"; Bias = Some "attn.out.b" }
                    Rotary = None
                    Scaling = ScoreScaling.InverseSqrtHeadDim
                    Window = None
                }
        ]

/// The whole block's γ: (h + γ_attn(h)) + γ_mlp(h + γ_attn(h)) − h, one Fn with no repeated work.
let private block =
    Sum [ Chain [ Sum [ Fn.identity; attention ]; Sum [ Fn.identity; mlp ] ]; Scale(-1.0, Fn.identity) ]

/// One benchmark work: a name, the forward map and the jet by an engine at an order, on fixed inputs.
type private Work = { Name: string; Forward: unit -> Tensor; Jet: Engine -> int -> Tensor }

let private gammaWork (ps: ParameterStore) name (fn: Fn) (positions: int64) =
    let centre = torch.randn [| 1L; positions; d |]
    let point = centre + 0.5 * torch.randn [| 1L; positions; d |]
    {
        Name = name
        Forward = (fun () -> Forward.apply ps fn centre)
        Jet = fun engine k -> Engines.jet engine ps fn k centre point
    }

/// U · J^k LN_f(c)(y): the decoder jet mapped to logits over the whole vocabulary.
let private decoderWork (ps: ParameterStore) (positions: int64) =
    let finalNorm = layerNorm "lnf"
    let centre = torch.randn [| 1L; positions; d |]
    let point = centre + 0.5 * torch.randn [| 1L; positions; d |]
    let unembed (x: Tensor) = torch.nn.functional.linear (x, ps.["unembed.w"])
    {
        Name = "decoder768"
        Forward = fun () -> unembed (Forward.apply ps finalNorm point)
        Jet = fun engine k -> unembed (Engines.jet engine ps finalNorm k centre point)
    }

/// Median wall times of several functions, run interleaved (a, b, c, a, b, c, …) after `warmup` rounds, so that
/// load from other processes on shared cores hits every one of them alike and their ratios stay meaningful.
let private interleavedMedians (warmup: int) (repeats: int) (runs: (unit -> unit) list) : float[] =
    for _ in 1..warmup do
        for run in runs do
            run ()
    let times = runs |> List.map (fun _ -> ResizeArray<float>())
    for _ in 1..repeats do
        for run, samples in List.zip runs times do
            let clock = Diagnostics.Stopwatch.StartNew()
            run ()
            samples.Add clock.Elapsed.TotalMilliseconds
    [| for samples in times -> samples |> Seq.sort |> Seq.item (samples.Count / 2) |]

let private peakOf (run: unit -> unit) =
    // Freed pages go back to the OS first, so the peak counts what this run needs, not what earlier runs left.
    Measure.settleNative ()
    Measure.resetPeak ()
    run ()
    Measure.peakMb ()

let private measure (work: Work) =
    let timed (f: unit -> Tensor) =
        fun () ->
            use _ = torch.NewDisposeScope()
            f () |> ignore
    // Warm up for about a second first: the first runs of a process pay for lazy initialisation and thread start-up.
    let clock = Diagnostics.Stopwatch.StartNew()
    while clock.Elapsed.TotalSeconds < 1.0 do
        timed work.Forward ()
        timed (fun () -> work.Jet Engine.Taylor 2) ()
    for order in 0..4 do
        let forward = timed work.Forward
        let taylor = timed (fun () -> work.Jet Engine.Taylor order)
        let jvp = timed (fun () -> work.Jet Engine.Jvp order)
        // The forward pass, the Taylor jet and the JVP jet of one order run interleaved; slow JVP orders get fewer
        // repeats, but every figure is still a median after warm-up.
        let repeats = if order >= 3 then 5 else 9
        let medians = interleavedMedians 1 repeats [ forward; taylor; jvp ]
        for engine, ms, run in [ "taylor", medians.[1], taylor; "jvp", medians.[2], jvp ] do
            Measure.emit
                {|
                    work = work.Name
                    engine = engine
                    order = order
                    ms = Math.Round(ms, 3)
                    forward_ms = Math.Round(medians.[0], 3)
                    peak_mb = Math.Round(peakOf run, 1)
                |}

let private runWork (make: ParameterStore -> Work) () =
    torch.manual_seed 42L |> ignore
    use ps = parameters ()
    measure (make ps)

/// The suites of this file, for Program.fs.
let suites: (string * (unit -> unit)) list =
    [
        "jets-mlp768", runWork (fun ps -> gammaWork ps "mlp768" mlp 16L)
        "jets-block768", runWork (fun ps -> gammaWork ps "block768" block 128L)
        "jets-decoder768", runWork (fun ps -> decoderWork ps 16L)
    ]
