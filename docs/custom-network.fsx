// Build a small transformer with the DSL, look at it, and expand it: a layer, a composition, the decoder.
// Run after `dotnet build -c Release` from the repository root:  dotnet fsi docs/custom-network.fsx
#r "../src/Jet.Core/bin/Release/net10.0/TorchSharp.dll"
#r "../src/Jet.Core/bin/Release/net10.0/Jet.Core.dll"

open TorchSharp
open Jet.Core

let vocab, d, heads = 50, 16, 4
let generator = new torch.Generator(42UL)
let normal (shape: int64 list) (std: float) = torch.randn (Array.ofList shape, dtype = torch.float64, generator = generator) * std

// Parameters live beside the syntax, by name.
let parameters =
    ParameterStore.OfSeq [
        "wte", normal [ int64 vocab; int64 d ] 1.0
        "wpe", normal [ 32L; int64 d ] 0.1
        "ln1.w", 1.0 + normal [ int64 d ] 0.1
        "ln1.b", normal [ int64 d ] 0.1
        "attn.qkv", normal [ 3L * int64 d; int64 d ] 0.25
        "attn.out", normal [ int64 d; int64 d ] 0.25
        "ln2.w", 1.0 + normal [ int64 d ] 0.1
        "mlp.fc", normal [ 4L * int64 d; int64 d ] 0.25
        "mlp.proj", normal [ int64 d; 4L * int64 d ] 0.125
        "lnf.w", 1.0 + normal [ int64 d ] 0.1
    ]

// GPT-2-style block as two residual layers; each γ includes its pre-norm and never the skip connection.
let attention =
    Chain [
        LayerNorm { Weight = Some "ln1.w"; Bias = Some "ln1.b"; Eps = 1e-5 }
        Attention {
            Heads = heads
            KvHeads = heads
            HeadDim = d / heads
            Projections = Projections.Fused({ Weight = "attn.qkv"; Bias = None }, FusedLayout.Blocked)
            Output = { Weight = "attn.out"; Bias = None }
            Rotary = None
            Scaling = ScoreScaling.InverseSqrtHeadDim
            Window = None
        }
    ]
let mlp = Chain [ LayerNorm { Weight = Some "ln2.w"; Bias = None; Eps = 1e-5 }; Fn.linear "mlp.fc"; Act Activation.GeluTanh; Fn.linear "mlp.proj" ]

let spec =
    {
        Name = "tiny-gpt"
        Vocab = vocab
        Width = d
        MaxPositions = Some 32
        Encoder = { TokenEmbedding = "wte"; Positions = Some "wpe"; Scale = None }
        Layers = [
            { Name = "attn1"; Block = 1; Kind = LayerKind.Attention; Gamma = attention }
            { Name = "mlp1"; Block = 1; Kind = LayerKind.Mlp; Gamma = mlp }
        ]
        FinalNorm = LayerNorm { Weight = Some "lnf.w"; Bias = None; Eps = 1e-5 }
        Unembedding = { Weight = "wte"; Bias = None; Tied = true; SoftCap = None }
    }
let net = Net.create spec parameters
printfn "%O\n" net

let tokens = torch.tensor [| 3L; 14L; 15L; 9L; 26L; 5L |]
let session = Expand.session net tokens

// γ semantics: h₂ − h₁ is exactly γ₂(h₁).
let gammaGap = (session.Trace.Stream 2 - session.Trace.Stream 1 - session.Trace.Gamma 2).abs().max().item<float>()
printfn "max|h₂ − h₁ − γ₂(h₁)| = %.1e" gammaGap

// Expand the MLP layer around {h₁, γ₁(Enc)} at order 2 with the Taylor engine, then compose with the decoder.
let mlpExpansion = Expansion.atLayer 2 [ Centre.Stream 1; Centre.Gamma 1 ] |> Expansion.withOrder 2
let decoder = Expansion.atDecoder [ Centre.Terms mlpExpansion ] |> Expansion.withOrder 1
let inner = session.Expand mlpExpansion
let outer = session.Unembed(session.Expand decoder)
for t in inner.Terms do printfn "term %-18s ‖·‖ = %.4f" (string t.Path) (t.Value.norm().item<float>())
for p in outer.Paths do printfn "path %-24s ‖·‖ = %.4f" (string p.Path) (p.Value.norm().item<float>())

// Both engines agree, and every expansion is exact: Σ terms + remainder = target.
let viaJvp = session.Expand(mlpExpansion |> Expansion.withEngine Engine.Jvp)
let engineGap = List.map2 (fun (a: Term) (b: Term) -> (a.Value - b.Value).abs().max().item<float>()) inner.Terms viaJvp.Terms |> List.max
let exactGap = ((inner.Terms |> List.fold (fun acc t -> acc + t.Value) inner.Remainder) - inner.Target).abs().max().item<float>()
let logitGap = ((outer.Paths |> List.fold (fun acc p -> acc + p.Value) outer.Remainder) - outer.Logits).abs().max().item<float>()
printfn "Taylor vs JVP: %.1e; layer reconstruction: %.1e; logit reconstruction: %.1e" engineGap exactGap logitGap
if gammaGap > 1e-12 || engineGap > 1e-9 || exactGap > 1e-9 || logitGap > 1e-9 then failwith "an identity does not hold"
(session :> System.IDisposable).Dispose()
net.Dispose() // the network owns the tensors of its ParameterStore
