/// Loading Hugging Face checkpoints: every family against its reference implementation, in every stored dtype,
/// the expansion invariants on every family, the quirks of each family, sharded weights and the real fixtures
/// (memory and disposal: OwnershipTests).
module Jet.Core.Tests.CheckpointTests

open System
open System.IO
open Expecto
open TorchSharp
open Jet.Core
open Jet.Core.Models
open Jet.Core.Tests.TestKit
open Jet.Core.Tests.TestCheckpoints
open Jet.Core.Tests.FamilyCheckpoints
open Jet.Core.Tests.Llama3QwenCheckpoints

let tokens = [| 3L; 17L; 0L; 39L; 8L; 8L; 21L; 5L; 12L |]
let exact = Accuracy.Of(1e-9, 1e-9)
let private fixtures = Jet.Tests.Fixtures.directory.Value

/// Every family's tiny checkpoint (GPT-2 … Qwen3), by name; ModernFamilies.cases holds OLMo, Phi-3 and Gemma 2.
let families: (string * (string -> FamilyCase)) list =
    [
        "gpt2", (fun dtype -> gpt2 11 dtype gpt2Defaults)
        "gpt_neo", (fun dtype -> gptNeo 12 dtype)
        "gpt_neox (parallel residual)", (fun dtype -> gptNeoX 13 dtype true)
        "gpt_neox (sequential residual)", (fun dtype -> gptNeoX 14 dtype false)
        "llama", (fun dtype -> llama 15 dtype)
        "mistral", (fun dtype -> mistral 16 dtype)
        "gemma", (fun dtype -> gemma 17 dtype)
        "llama 3.1 (llama3 rope_scaling)", (fun dtype -> llama31 18 dtype true)
        "qwen2 (untied head, no window)", (fun dtype -> qwen2 19 dtype)
        "qwen2.5 (tied head, sliding window from layer 2)", (fun dtype -> qwen25Windowed 20 dtype [ None; Some 3 ])
        "qwen3 (q/k norms, tied head, windows by layer_types)", (fun dtype -> qwen3 25 dtype)
    ]

let load (dir: string) (dtype: torch.ScalarType) = Model.load dir dtype torch.CPU

/// Trace.logits, Trace.Gamma and Trace.Stream agree with the reference on every layer.
let checkAgainstReference (accuracy: Accuracy) (case: FamilyCase) (model: Model) =
    let reference = case.Reference tokens
    use trace = Trace.run model.Net (torch.tensor tokens)
    Expect.equal model.Net.Depth (case.Blocks * case.LayersPerBlock) "residual layers"
    Expect.equal model.Net.Spec.BlockCount case.Blocks "blocks"
    Expect.equal reference.Updates.Length model.Net.Depth "the reference has one update per residual layer"
    Expect.tensorClose accuracy (trace.Stream 0).[0] reference.Streams.[0] "h₀"
    reference.Updates
    |> List.iteri (fun i update ->
        let l = i + 1
        Expect.tensorClose accuracy (trace.Gamma l).[0] update (sprintf "γ%d(h%d) against the reference update" l i)
        Expect.tensorClose accuracy (trace.Stream l).[0] reference.Streams.[l] (sprintf "h%d" l)
        // γ never contains the skip: evaluating the layer's syntax on h_{l−1} gives exactly h_l − h_{l−1}.
        let gamma = Forward.apply model.Net.Parameters model.Net.Spec.Layers.[i].Gamma (trace.Stream(l - 1))
        Expect.tensorClose
            accuracy
            gamma.[0]
            (reference.Streams.[l] - reference.Streams.[l - 1])
            (sprintf "γ%d = h%d − h%d" l l i))
    Expect.tensorClose accuracy (Trace.logits trace).[0] reference.Logits "logits"

/// The checkpoint of `case` rewritten with its (already rounded) weights stored as F32 in a new directory.
let asFloat32Checkpoint (case: FamilyCase) =
    let dir = tempDir ()
    for file in Directory.GetFiles case.Dir do
        if Path.GetFileName file <> Checkpoint.WeightsFile then
            File.Copy(file, Path.Combine(dir, Path.GetFileName file))
    writeSafetensors (Path.Combine(dir, Checkpoint.WeightsFile)) "F32" (Map.toList case.Weights)
    dir

/// Two networks holding the same float32 values (one widened just in time from half precision, one stored in float32)
/// give the same streams, logits and expansions with both engines. Both compute the same float32 operations on the
/// same values; the only freedom is the memory layout of the widened weights (a transposed Conv1D view widens to a
/// contiguous copy), which may change a matmul kernel's summation order: the bound is then a few float32 rounding
/// steps of a width-≤64 dot product, |Δ| ≲ 64 · 2⁻²⁴ · Σ|xᵢwᵢ| ≈ 4·10⁻⁶ relative; 1e-5 leaves room for that.
let sameFloat32Results (kept: Net) (stored: Net) =
    let close = Accuracy.Of(1e-5, 1e-5)
    use t1 = Trace.run kept (torch.tensor tokens)
    use t2 = Trace.run stored (torch.tensor tokens)
    for l in 0 .. kept.Depth do
        Expect.tensorClose close (t1.Stream l) (t2.Stream l) (sprintf "h%d" l)
    Expect.tensorClose close (Trace.logits t1) (Trace.logits t2) "logits"
    use s1 = Expand.session kept (torch.tensor tokens)
    use s2 = Expand.session stored (torch.tensor tokens)
    for engine in [ Engine.Taylor; Engine.Jvp ] do
        for plan in
            [
                Expansion.atLayer kept.Depth [ Centre.Encoder; Centre.Stream(kept.Depth - 1) ]
                Expansion.atDecoder [ Centre.Stream 1; Centre.Encoder ]
            ] do
            let plan = plan |> Expansion.withOrder 2 |> Expansion.withEngine engine
            let a, b = s1.Expand plan, s2.Expand plan
            for ta, tb in List.zip a.Terms b.Terms do
                Expect.tensorClose close ta.Value tb.Value (sprintf "%A term" engine)
            Expect.tensorClose close a.Remainder b.Remainder (sprintf "%A remainder" engine)

/// Each family against its reference, stored in every dtype (ModernFamilyTests runs these on more families).
let referenceTestsFor (title: string) (families: (string * (string -> FamilyCase)) list) =
    testList
        title
        [
            for name, make in families do
                test (sprintf "%s stored as F64, computed in float64" name) {
                    let case = make "F64"
                    use model = load case.Dir torch.float64
                    checkAgainstReference exact case model
                }
                for stored in [ "F32"; "BF16"; "F16" ] do
                    test (sprintf "%s stored as %s, converted to float64" name stored) {
                        // The reference uses the same rounded weights, so only the conversion is under test.
                        let case = make stored
                        use model = load case.Dir torch.float64
                        Expect.equal model.Net.DType torch.float64 "parameters converted to float64"
                        checkAgainstReference exact case model
                    }
                for stored, dtype in [ "BF16", torch.bfloat16; "F16", torch.float16 ] do
                    test (sprintf "%s stored as %s, kept as stored, computed in float32" name stored) {
                        let case = make stored
                        use model = load case.Dir torch.float32
                        Expect.equal model.Net.StorageDType dtype "the weights are kept as stored"
                        Expect.equal model.Net.DType torch.float32 "computed in float32"
                        Expect.isTrue
                            (model.Net.Parameters.Tensors.Values |> Seq.forall (fun t -> t.dtype = dtype))
                            "no parameter was converted at load"
                        use float32 = load (asFloat32Checkpoint case) torch.float32
                        Expect.equal float32.Net.StorageDType torch.float32 "the float32 checkpoint"
                        sameFloat32Results model.Net float32.Net
                        checkAgainstReference (Accuracy.Of(2e-4, 2e-4)) case model
                    }
                test (sprintf "%s stored as F32, computed in float32" name) {
                    let case = make "F32"
                    use model = load case.Dir torch.float32
                    Expect.equal model.Net.DType torch.float32 "float32 parameters"
                    checkAgainstReference (Accuracy.Of(2e-4, 2e-4)) case model
                }
        ]

let referenceTests = referenceTestsFor "families match their reference implementations" families

/// The expansion invariants on each family, with both engines.
let expansionTestsFor (title: string) (families: (string * (string -> FamilyCase)) list) =
    testList
        title
        [
            for name, make in families do
                for engine in [ Engine.Taylor; Engine.Jvp ] do
                    test (sprintf "%s, %A engine" name engine) {
                        let case = make "F64"
                        use model = load case.Dir torch.float64
                        let reference = case.Reference tokens
                        use session = Expand.session model.Net (torch.tensor tokens)
                        let sum (terms: Term list) = terms |> List.map (fun t -> t.Value) |> List.reduce (+)
                        for l in 1 .. model.Net.Depth do
                            // Around h_{l−1} itself the jet is exact at any order: no remainder.
                            let self =
                                session.Expand(
                                    Expansion.atLayer l [ Centre.Stream(l - 1) ]
                                    |> Expansion.withOrder 2
                                    |> Expansion.withEngine engine
                                )
                            Expect.tensorClose
                                exact
                                self.Target.[0]
                                reference.Streams.[l]
                                (sprintf "target of layer %d is h%d" l l)
                            Expect.tensorClose
                                exact
                                (sum self.Terms)
                                self.Target
                                (sprintf "layer %d: Σ terms around h%d = h%d" l (l - 1) l)
                            Expect.isLessThan
                                (maxAbsGap self.Remainder (torch.zeros_like self.Remainder))
                                1e-9
                                (sprintf "layer %d: no remainder around the variate" l)
                            // Around two centres the remainder is not zero, but Σ terms + remainder is the target.
                            let two =
                                session.Expand(
                                    Expansion.atLayer l [ Centre.Encoder; Centre.Stream(l - 1) ]
                                    |> Expansion.withOrder 1
                                    |> Expansion.withEngine engine
                                )
                            Expect.tensorClose
                                exact
                                (sum two.Terms + two.Remainder).[0]
                                reference.Streams.[l]
                                (sprintf "layer %d: Σ terms + remainder = h%d" l l)
                        let decoder =
                            session.Expand(
                                Expansion.atDecoder [ Centre.Stream model.Net.Depth; Centre.Encoder ]
                                |> Expansion.withOrder 1
                                |> Expansion.withEngine engine
                            )
                        let logits = session.Unembed decoder
                        let total = (logits.Paths |> List.map (fun p -> p.Value) |> List.reduce (+)) + logits.Remainder
                        // The paths decompose the pre-cap logits; a soft-capped network caps their sum.
                        let total = Decoder.capLogits logits.SoftCap (Decoder.addBias logits.Bias total)
                        Expect.tensorClose
                            exact
                            total.[0]
                            reference.Logits
                            "decoder: Σ U·terms + U·remainder = the reference logits"
                    }
        ]

let expansionTests = expansionTestsFor "expansion invariants hold on every family" families

let private attentions (net: Net) =
    let rec find (f: Fn) =
        match f with
        | Attention a -> [ a ]
        | Sum fs
        | Chain fs -> List.collect find fs
        | Scale(_, g) -> find g
        | _ -> []
    net.Spec.Layers |> List.collect (fun l -> find l.Gamma)

let private norms (f: Fn) =
    let rec find (f: Fn) =
        match f with
        | RmsNorm n -> [ n ]
        | Sum fs
        | Chain fs -> List.collect find fs
        | Scale(_, g) -> find g
        | _ -> []
    find f

let quirkTests =
    testList
        "family quirks"
        [
            test "GPT-2 without the transformer. prefix and without a head (GPT2Model) ties U to wte" {
                let case = gpt2 21 "F64" { gpt2Defaults with Prefix = false }
                use model = load case.Dir torch.float64
                Expect.isTrue model.Net.Spec.Unembedding.Tied "tied"
                Expect.equal model.Net.Spec.Unembedding.Weight "wte.weight" "U is wte"
                checkAgainstReference exact case model
            }
            test "GPT-2 with a saved lm_head and tie_word_embeddings false uses the separate head" {
                let case = gpt2 22 "F64" { gpt2Defaults with UntiedHead = true }
                use model = load case.Dir torch.float64
                Expect.isFalse model.Net.Spec.Unembedding.Tied "untied"
                Expect.equal model.Net.Spec.Unembedding.Weight "lm_head.weight" "U is lm_head"
                checkAgainstReference exact case model
            }
            test "GPT-2 with and without the prefix lowers to the same syntax" {
                use a = load (gpt2 23 "F64" gpt2Defaults).Dir torch.float64
                use b = load (gpt2 23 "F64" { gpt2Defaults with Prefix = false }).Dir torch.float64
                Expect.equal a.Net.Spec b.Net.Spec "same NetSpec"
            }
            test "GPT-2 scale_attn_by_inverse_layer_idx divides scores by the layer number" {
                let case = gpt2 24 "F64" { gpt2Defaults with ScaleByLayer = true }
                use model = load case.Dir torch.float64
                checkAgainstReference exact case model
            }
            test "GPT-Neo does not scale attention scores, and scaling them would change the logits" {
                let case = gptNeo 31 "F64"
                use model = load case.Dir torch.float64
                for a in attentions model.Net do
                    Expect.equal a.Scaling ScoreScaling.Unscaled "every GPT-Neo attention is unscaled"
                use trace = Trace.run model.Net (torch.tensor tokens)
                let scaled = (gptNeoWith 31 "F64" 3 true).Reference tokens
                Expect.tensorNotClose
                    (Accuracy.Of(1e-3, 0.0))
                    (Trace.logits trace).[0]
                    scaled.Logits
                    "a 1/√d_head reference differs"
            }
            test "GPT-Neo local layers see only the last window_size positions; global layers see all" {
                let case = gptNeo 32 "F64"
                use model = load case.Dir torch.float64
                let windows = attentions model.Net |> List.map (fun a -> a.Window)
                Expect.equal windows [ None; Some 3 ] "global then local with window 3"
                use trace = Trace.run model.Net (torch.tensor tokens)
                let perturbAt0 (x: Tensor) =
                    let y = x.clone ()
                    // Not a constant shift, which the pre-norm would remove.
                    y.[0L, 0L] <- y.[0L, 0L] + torch.linspace (-1.0, 1.0, x.shape.[2], dtype = torch.float64)
                    y
                let gamma l (x: Tensor) = Forward.apply model.Net.Parameters model.Net.Spec.Layers.[l - 1].Gamma x
                // Layer 3 is the local attention of block 2: positions ≥ 3 never see position 0.
                let local, localPerturbed = gamma 3 (trace.Stream 2), gamma 3 (perturbAt0 (trace.Stream 2))
                Expect.tensorClose
                    exact
                    (localPerturbed.narrow (1L, 3L, 6L))
                    (local.narrow (1L, 3L, 6L))
                    "local layer: positions 3.. unchanged"
                Expect.tensorNotClose
                    exact
                    (localPerturbed.narrow (1L, 0L, 3L))
                    (local.narrow (1L, 0L, 3L))
                    "local layer: positions 0..2 change"
                let globalLayer, globalPerturbed = gamma 1 (trace.Stream 0), gamma 1 (perturbAt0 (trace.Stream 0))
                Expect.tensorNotClose
                    exact
                    (globalPerturbed.narrow (1L, 8L, 1L))
                    (globalLayer.narrow (1L, 8L, 1L))
                    "global layer: the last position sees position 0"
            }
            test "GPT-NeoX rotates only rotary_pct of each head (rotate-half), and full rotation would differ" {
                let case = gptNeoX 41 "F64" true
                use model = load case.Dir torch.float64
                for a in attentions model.Net do
                    Expect.equal
                        a.Rotary
                        (Some
                            {
                                Fraction = 0.25
                                Base = 10000.0
                                Style = RotaryStyle.RotateHalf
                                Scaling = RotaryScaling.Plain
                            })
                        "a quarter of each 16-dim head"
                    Expect.equal
                        (Primitives.SelfAttention.rotaryDims a.Rotary.Value a.HeadDim)
                        4
                        "4 rotated coordinates"
                use trace = Trace.run model.Net (torch.tensor tokens)
                let full = (gptNeoXWith 41 "F64" true 0.25 16).Reference tokens
                Expect.tensorNotClose
                    (Accuracy.Of(1e-3, 0.0))
                    (Trace.logits trace).[0]
                    full.Logits
                    "rotating all 16 coordinates differs"
                let whole = gptNeoXWith 42 "F64" true 1.0 16
                use model = load whole.Dir torch.float64
                checkAgainstReference exact whole model
            }
            test "GPT-NeoX parallel residual is one layer per block with γ = attn(LN₁h) + mlp(LN₂h); sequential is two" {
                use parallelModel = load (gptNeoX 43 "F64" true).Dir torch.float64
                Expect.equal
                    (parallelModel.Net.Spec.Layers |> List.map (fun l -> l.Kind))
                    [ LayerKind.Parallel; LayerKind.Parallel ]
                    "one parallel layer per block"
                match parallelModel.Net.Spec.Layers.[0].Gamma with
                | Sum [ Chain(LayerNorm _ :: [ Attention _ ]); Chain(LayerNorm _ :: _) ] -> ()
                | other -> failtestf "γ₁ should be LN₁ ▸ attention + LN₂ ▸ MLP, got %O" other
                use sequential = load (gptNeoX 43 "F64" false).Dir torch.float64
                Expect.equal
                    (sequential.Net.Spec.Layers |> List.map (fun l -> l.Kind))
                    [ LayerKind.Attention; LayerKind.Mlp; LayerKind.Attention; LayerKind.Mlp ]
                    "attention then MLP"
                Expect.equal (Net.layersOfBlock 2 sequential.Net) [ 3; 4 ] "block 2 is layers 3 and 4"
                Expect.isFalse parallelModel.Net.Spec.Unembedding.Tied "embed_out is untied"
            }
            test
                "Gemma scales embeddings by √d, normalises with (1 + w), takes head_dim from the config and ties its head" {
                let case = gemma 51 "F64"
                use model = load case.Dir torch.float64
                Expect.equal model.Net.Spec.Encoder.Scale (Some 4.0) "√16"
                let allNorms =
                    model.Net.Spec.FinalNorm :: (model.Net.Spec.Layers |> List.map (fun l -> l.Gamma))
                    |> List.collect norms
                Expect.equal allNorms.Length 5 "two per block and the final norm"
                Expect.isTrue (allNorms |> List.forall (fun n -> n.PlusOne)) "every norm is (1 + w)"
                for a in attentions model.Net do
                    Expect.equal (a.Heads, a.HeadDim) (4, 8) "4 heads of 8 although d = 16"
                Expect.isTrue model.Net.Spec.Unembedding.Tied "tied head"
                use trace = Trace.run model.Net (torch.tensor tokens)
                let table = case.Weights.["model.embed_tokens.weight"]
                Expect.tensorClose
                    exact
                    (trace.Stream 0).[0]
                    (table.index_select (0L, torch.tensor tokens) * 4.0)
                    "h₀ = √d · E[z]"
                match model.Net.Spec.Layers.[1].Gamma with
                | Chain [ RmsNorm _; GatedMlp g ] ->
                    Expect.equal g.Activation Activation.GeluTanh "GeGLU with the tanh GELU"
                | other -> failtestf "the MLP layer should be RMSNorm ▸ GatedMlp, got %O" other
            }
            test "Llama uses grouped KV heads, SwiGLU and an untied head" {
                let case = llama 61 "F64"
                use model = load case.Dir torch.float64
                for a in attentions model.Net do
                    Expect.equal (a.Heads, a.KvHeads) (4, 2) "4 query heads share 2 KV heads"
                    Expect.equal a.Window None "no window"
                Expect.equal
                    model.Net.Parameters.["layers.0.self_attn.k_proj.weight"].shape
                    [| 8L; 16L |]
                    "k_proj is [kv · head_dim, d]"
                Expect.equal model.Net.Spec.Unembedding.Weight "lm_head.weight" "separate head"
                match model.Net.Spec.Layers.[1].Gamma with
                | Chain [ RmsNorm n; GatedMlp g ] ->
                    Expect.isFalse n.PlusOne "plain RMSNorm"
                    Expect.equal g.Activation Activation.Silu "SwiGLU"
                | other -> failtestf "the MLP layer should be RMSNorm ▸ GatedMlp, got %O" other
            }
            test "Mistral's sliding window masks keys more than sliding_window − 1 positions back" {
                let case = mistral 71 "F64"
                use model = load case.Dir torch.float64
                for a in attentions model.Net do
                    Expect.equal a.Window (Some 3) "window 3"
                use trace = Trace.run model.Net (torch.tensor tokens)
                let unwindowed = (llamaLike 71 "F64" "mistral" None).Reference tokens
                Expect.tensorNotClose
                    (Accuracy.Of(1e-6, 0.0))
                    (Trace.logits trace).[0]
                    unwindowed.Logits
                    "without the window the logits differ"
            }
            test "Mistral with sliding_window null has no window" {
                let case = llamaLike 72 "F64" "mistral" None
                let config =
                    File
                        .ReadAllText(Path.Combine(case.Dir, "config.json"))
                        .Replace("\"sliding_window\":3", "\"sliding_window\":null")
                File.WriteAllText(Path.Combine(case.Dir, "config.json"), config)
                use model = load case.Dir torch.float64
                for a in attentions model.Net do
                    Expect.equal a.Window None "no window"
                checkAgainstReference exact case model
            }
        ]

let shardTests =
    testList
        "sharded checkpoints"
        [
            test "weights split across two shards with model.safetensors.index.json load as one" {
                let case = llama 81 "F32"
                use single = load case.Dir torch.float64
                let sharded = tempDir ()
                File.Copy(Path.Combine(case.Dir, "config.json"), Path.Combine(sharded, "config.json"))
                let names = case.Weights |> Map.toList
                let half = names.Length / 2
                let first, second = List.take half names, List.skip half names
                writeSafetensors (Path.Combine(sharded, "model-00001-of-00002.safetensors")) "F32" first
                writeSafetensors (Path.Combine(sharded, "model-00002-of-00002.safetensors")) "BF16" second
                let entries =
                    [
                        for n, _ in first ->
                            sprintf "%s:\"model-00001-of-00002.safetensors\"" (Text.Json.JsonSerializer.Serialize n)
                    ]
                    @ [
                        for n, _ in second ->
                            sprintf "%s:\"model-00002-of-00002.safetensors\"" (Text.Json.JsonSerializer.Serialize n)
                    ]
                File.WriteAllText(
                    Path.Combine(sharded, "model.safetensors.index.json"),
                    "{\"metadata\":{\"total_size\":1},\"weight_map\":{" + String.concat "," entries + "}}"
                )
                use model = load sharded torch.float64
                Expect.equal model.Net.Spec single.Net.Spec "same structure"
                let parameter (name: string) = if name.StartsWith "model." then name.Substring 6 else name
                for n, _ in first do
                    let p = parameter n
                    Expect.tensorClose
                        exact
                        model.Net.Parameters.[p]
                        single.Net.Parameters.[p]
                        (sprintf "%s from shard 1 (F32)" p)
                let p = parameter (fst second.Head)
                let expected = single.Net.Parameters.[p].to_type(torch.bfloat16).to_type torch.float64
                Expect.tensorClose exact model.Net.Parameters.[p] expected (sprintf "%s from shard 2 (BF16)" p)
            }
        ]

let fixtureTests =
    testList
        "real checkpoint fixtures"
        [
            test "lm-buddy-fake-gpt2: GPT2LMHeadModel, transformer. prefix, head tied to wte, matches the reference" {
                let dir = Path.Combine(fixtures, "lm-buddy-fake-gpt2")
                use model = load dir torch.float64
                Expect.equal model.Family "gpt2" "family"
                Expect.equal (model.Net.Vocab, model.Net.Width, model.Net.Depth) (50257, 2, 2) "vocab, width, layers"
                Expect.isTrue model.Net.Spec.Unembedding.Tied "tied head"
                Expect.equal model.Net.Spec.Unembedding.Weight "wte.weight" "U is wte"
                let ids = model.Tokenizer.Encode "Hello world"
                Expect.equal ids [| 15496; 995 |] "Hello world"
                let weights = readAll (Path.Combine(dir, "model.safetensors"))
                let w name = weights.["transformer." + name]
                let reference =
                    ReferenceModels.gpt2
                        w
                        (w "wte.weight")
                        { Layers = 1; Heads = 1; Eps = 1e-5; Act = "gelu_new"; ScaleByLayer = false }
                        (ids |> Array.map int64)
                use trace = Trace.run model.Net (torch.tensor (ids |> Array.map int64))
                Expect.tensorClose exact (Trace.logits trace).[0] reference.Logits "logits"
                use model32 = load dir torch.float32
                use trace32 = Trace.run model32.Net (torch.tensor (ids |> Array.map int64))
                Expect.tensorClose
                    (Accuracy.Of(1e-5, 1e-5))
                    (Trace.logits trace32).[0]
                    reference.Logits
                    "float32 logits"
            }
            test "lm-buddy-tiny-gpt2-toyvocab: GPT2Model without prefix or head, toy BPE vocabulary" {
                let dir = Path.Combine(fixtures, "lm-buddy-tiny-gpt2-toyvocab")
                use model = load dir torch.float64
                Expect.equal (model.Net.Vocab, model.Net.Width, model.Net.Depth) (21, 2, 2) "vocab, width, layers"
                Expect.isTrue model.Net.Spec.Unembedding.Tied "a base model decodes with wte"
                // transformers' test_tokenization_gpt2: " lower newer" (add_prefix_space) → these ids.
                let ids = model.Tokenizer.Encode " lower newer"
                Expect.equal ids [| 14; 15; 10; 9; 3; 2; 15 |] "HF reference ids"
                let weights = readAll (Path.Combine(dir, "model.safetensors"))
                let reference =
                    ReferenceModels.gpt2
                        (fun n -> weights.[n])
                        weights.["wte.weight"]
                        { Layers = 1; Heads = 1; Eps = 1e-5; Act = "gelu_new"; ScaleByLayer = false }
                        (ids |> Array.map int64)
                use trace = Trace.run model.Net (torch.tensor (ids |> Array.map int64))
                Expect.tensorClose exact (Trace.logits trace).[0] reference.Logits "logits"
            }
        ]

[<Tests>]
let tests =
    testList "checkpoints" [ referenceTests; expansionTests; quirkTests; shardTests; fixtureTests ]
