using System.Reflection;
using System.Reflection.Emit;
using System.Text.RegularExpressions;
using JetDsl;

namespace JetDsl.Tests;

/// <summary>The facade speaks C#: no F#-only type appears in any public signature, every core function C# calls has a
/// .NET (PascalCase) name, and the facade only translates: it reads no tensor data and does no arithmetic.</summary>
public class PublicSurfaceTests
{
    private static readonly string[] ForbiddenPrefixes =
    {
        "Microsoft.FSharp.Collections.FSharpList", "Microsoft.FSharp.Collections.FSharpMap", "Microsoft.FSharp.Collections.FSharpSet",
        "Microsoft.FSharp.Core.FSharpOption", "Microsoft.FSharp.Core.FSharpValueOption", "Microsoft.FSharp.Core.FSharpFunc",
        "Microsoft.FSharp.Core.Unit", "Microsoft.FSharp.Control.FSharpAsync", "Microsoft.FSharp.Core.FSharpRef",
    };

    private static IEnumerable<Type> Mentioned(Type type)
    {
        yield return type;
        if (type.HasElementType)
            foreach (var t in Mentioned(type.GetElementType()!)) yield return t;
        if (type.IsGenericType)
            foreach (var argument in type.GetGenericArguments())
                foreach (var t in Mentioned(argument)) yield return t;
    }

    private static bool IsFSharpOnly(Type type)
    {
        var name = type.IsGenericType ? type.GetGenericTypeDefinition().FullName ?? type.Name : type.FullName ?? type.Name;
        if (ForbiddenPrefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal))) return true;
        // A tuple of F# records (or of anything F#-compiled) reads badly from C#.
        return type.IsGenericType && name.StartsWith("System.Tuple", StringComparison.Ordinal)
            && type.GetGenericArguments().Any(a => a.GetCustomAttributes().Any(x => x.GetType().FullName == "Microsoft.FSharp.Core.CompilationMappingAttribute"));
    }

    private static IEnumerable<(string Where, Type Type)> Signatures(Type owner)
    {
        const BindingFlags flags = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        foreach (var m in owner.GetMethods(flags))
        {
            yield return ($"{owner.Name}.{m.Name} returns", m.ReturnType);
            foreach (var p in m.GetParameters()) yield return ($"{owner.Name}.{m.Name}({p.Name})", p.ParameterType);
        }
        foreach (var c in owner.GetConstructors(flags))
            foreach (var p in c.GetParameters()) yield return ($"{owner.Name}..ctor({p.Name})", p.ParameterType);
        foreach (var p in owner.GetProperties(flags)) yield return ($"{owner.Name}.{p.Name}", p.PropertyType);
        foreach (var f in owner.GetFields(flags)) yield return ($"{owner.Name}.{f.Name}", f.FieldType);
        foreach (var e in owner.GetEvents(flags)) yield return ($"{owner.Name}.{e.Name}", e.EventHandlerType!);
    }

    [Fact]
    public void NoPublicSignatureMentionsAnFSharpOnlyType()
    {
        var assembly = typeof(JetModel).Assembly;
        var offenders = assembly.GetExportedTypes()
            .SelectMany(Signatures)
            .Where(s => Mentioned(s.Type).Any(IsFSharpOnly))
            .Select(s => $"{s.Where}: {s.Type}")
            .ToList();
        Assert.True(offenders.Count == 0, "F#-only types in the C# facade:\n" + string.Join("\n", offenders));
        Assert.True(assembly.GetExportedTypes().Length >= 10, "the facade exports its builders and results");
    }

    [Fact]
    public void TheCheckCoversTheLensBigramAndMassTypes()
    {
        var exported = typeof(JetModel).Assembly.GetExportedTypes();
        var expected = new[]
        {
            typeof(LensBuilder), typeof(LensReading), typeof(LensStream), typeof(LensPosition), typeof(Agreement), typeof(TokenScore), typeof(PositionTop),
            typeof(JointLensBuilder), typeof(JointLensReading), typeof(JointLensCentre), typeof(WeightedPosition),
            typeof(ReadoutPath), typeof(PathStep), typeof(BigramSweep), typeof(BigramTable), typeof(Bigram), typeof(ModelMass), typeof(ScoreSpace),
        };
        Assert.All(expected, t => Assert.Contains(t, exported));
        // Readings that own tensors are disposable; the records of plain numbers are not.
        Assert.True(typeof(IDisposable).IsAssignableFrom(typeof(LensReading)) && typeof(IDisposable).IsAssignableFrom(typeof(JointLensReading)));
        Assert.False(typeof(IDisposable).IsAssignableFrom(typeof(BigramTable)));
        Assert.Contains(typeof(BigramSweep).GetMethods(), m => m.Name == nameof(BigramSweep.RowTopK)
            && m.GetParameters().Select(p => p.ParameterType).SequenceEqual(new[] { typeof(int), typeof(IProgress<long>), typeof(CancellationToken) }));
    }

    [Fact]
    public void TheCheckItselfCatchesFSharpTypes()
    {
        Assert.True(IsFSharpOnly(typeof(Microsoft.FSharp.Collections.FSharpList<int>)));
        Assert.Contains(Mentioned(typeof(IReadOnlyList<Microsoft.FSharp.Core.FSharpOption<string>>)), IsFSharpOnly);
        Assert.True(IsFSharpOnly(typeof(Tuple<Jet.Core.Linear, int>)));
        Assert.False(IsFSharpOnly(typeof(IReadOnlyList<PathTerm>)));
    }

    private static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes)
        .GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!)
        .ToDictionary(o => o.Value);

    private static int OperandSize(OperandType type, byte[] il, int at) => type switch
    {
        OperandType.InlineNone => 0,
        OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
        OperandType.InlineVar => 2,
        OperandType.InlineI8 or OperandType.InlineR => 8,
        OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, at),
        _ => 4,
    };

    private static MethodBase? Resolve(MethodBase caller, int token)
    {
        try
        {
            var typeArguments = caller.DeclaringType is { IsGenericType: true } t ? t.GetGenericArguments() : null;
            var methodArguments = caller.IsGenericMethod ? caller.GetGenericArguments() : null;
            return caller.Module.ResolveMethod(token, typeArguments, methodArguments);
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    /// <summary>Every method a method body calls, loads (delegates) or constructs, read from its IL.</summary>
    private static IEnumerable<MethodBase> Callees(MethodBase method)
    {
        var il = method.GetMethodBody()?.GetILAsByteArray();
        if (il is null) yield break;
        for (var i = 0; i < il.Length;)
        {
            var op = il[i] == 0xFE ? OpCodesByValue[unchecked((short)(0xFE00 | il[i + 1]))] : OpCodesByValue[il[i]];
            i += op.Size;
            if (op.OperandType == OperandType.InlineMethod && Resolve(method, BitConverter.ToInt32(il, i)) is { } callee)
                yield return callee;
            i += OperandSize(op.OperandType, il, i);
        }
    }

    /// <summary>(caller, callee) for every call from an assembly into Jet.Core, compiler-generated closures included.</summary>
    private static IEnumerable<(string Caller, MethodBase Callee)> CoreCalls(Assembly assembly)
    {
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        var core = typeof(Jet.Core.Net).Assembly;
        return assembly.GetTypes()
            .SelectMany(t => t.GetMethods(all).Cast<MethodBase>().Concat(t.GetConstructors(all)))
            .SelectMany(m => Callees(m).Select(c => ($"{m.DeclaringType?.Name}.{m.Name}", c)))
            .Where(call => call.Item2.DeclaringType?.Assembly == core);
    }

    // Constructors, operators and property accessors (F# does not mark a union case's getters special) are not
    // functions; every other method must have a .NET name.
    private static bool HasDotNetName(MethodBase method) =>
        method.IsConstructor || method.IsSpecialName || method.Name.StartsWith("get_", StringComparison.Ordinal)
        || method.Name.StartsWith("set_", StringComparison.Ordinal) || char.IsUpper(method.Name[0]);

    [Fact]
    public void EveryCoreFunctionThatCSharpCallsHasAPascalCaseName()
    {
        var calls = CoreCalls(typeof(JetModel).Assembly).Concat(CoreCalls(typeof(PublicSurfaceTests).Assembly)).ToList();
        Assert.Contains(calls, c => c.Callee.Name == "Toy" && c.Callee.DeclaringType!.Name == "Model");
        Assert.Contains(calls, c => c.Callee.Name == "Lens" && c.Callee.DeclaringType!.Name == "Readings");
        var offenders = calls
            .Where(c => !HasDotNetName(c.Callee))
            .Select(c => $"{c.Caller} calls {c.Callee.DeclaringType!.FullName}.{c.Callee.Name}")
            .Distinct()
            .ToList();
        Assert.True(offenders.Count == 0, "Core functions without a [<CompiledName>] called from C#:\n" + string.Join("\n", offenders));
        // A module named like a type compiles to "XModule"; C# reaches those functions through the type's members.
        var suffixed = calls
            .Where(c => c.Callee.DeclaringType!.Name.EndsWith("Module", StringComparison.Ordinal))
            .Select(c => $"{c.Caller} calls {c.Callee.DeclaringType!.FullName}.{c.Callee.Name}")
            .Distinct()
            .ToList();
        Assert.True(suffixed.Count == 0, "C# calls through an F# module's compiled name:\n" + string.Join("\n", suffixed));
    }

    [Fact]
    public void TheNameCheckReadsCallsFromIL()
    {
        // A closure's call is found (the lambda below is compiled into a nested class).
        Func<int, string> pieceOf = id => Jet.Core.Apps.LogitMetrics.Piece(Jet.Core.Models.CharTokenizer.Instance, id);
        Assert.Equal("a", pieceOf(65));
        var calls = CoreCalls(typeof(PublicSurfaceTests).Assembly).ToList();
        Assert.Contains(calls, c => c.Callee.Name == "Piece" && c.Caller.Contains(nameof(TheNameCheckReadsCallsFromIL)));
        Assert.False(HasDotNetName(typeof(PublicSurfaceTests).GetMethod(nameof(camelCase), BindingFlags.NonPublic | BindingFlags.Static)!));
        Assert.True(HasDotNetName(typeof(Jet.Core.Apps.Readings).GetMethod(nameof(Jet.Core.Apps.Readings.Lens))!));
    }

    /// <summary>A name as F# writes a module function without [&lt;CompiledName&gt;].</summary>
    private static void camelCase() { }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "JetDsl.sln")))
                return dir.FullName;
        throw new DirectoryNotFoundException("JetDsl.sln not found above the test assembly.");
    }

    /// <summary>What a front door must leave to the core: reading tensor data, arithmetic, loops.</summary>
    private static readonly (string What, Regex Pattern)[] CoreWork =
    {
        ("tensor data reads", new Regex(@"data<|\.item<|ToDouble|ToSingle|\.cpu\(|to_type\(|ToArray<")),
        ("arithmetic over values", new Regex(@"\.(Average|Sum|Aggregate|Max|Min|Count)\(\s*\w+\s*=>|\.(Average|Sum|Aggregate)\(|Enumerable\.Range")),
        ("index arithmetic", new Regex(@"[\w\)\]]\s*[-+*/%]\s*[\w(]|\+\+|--|[-+*/%]=")),
        ("loops", new Regex(@"\b(for|foreach|while)\s*\(")),
    };

    private static IEnumerable<string> CodeLines(string file) =>
        File.ReadLines(file)
            .Select(line => Regex.Replace(line, @"//.*$", ""))          // comments and doc comments
            .Select(line => Regex.Replace(line, @"\b\d+(\.\d+)?[eE][-+]?\d+\b", "0"))    // literals such as 1e-5
            .Select(line => Regex.Replace(line, @"""(?:[^""\\]|\\.)*""", "\"\""));   // string literals

    [Fact]
    public void TheFacadeOnlyTranslatesTheCore()
    {
        var files = Directory.GetFiles(System.IO.Path.Combine(RepositoryRoot(), "src", "Jet.CSharp"), "*.cs");
        Assert.True(files.Length >= 10, "the facade's sources are found");
        var offenders = files
            .SelectMany(f => CodeLines(f).Select((line, i) => (File: System.IO.Path.GetFileName(f), Line: i + 1, Text: line)))
            .SelectMany(l => CoreWork.Where(w => w.Pattern.IsMatch(l.Text)).Select(w => $"{l.File}:{l.Line} ({w.What}): {l.Text.Trim()}"))
            .ToList();
        Assert.True(offenders.Count == 0, "The facade does work that belongs in the core:\n" + string.Join("\n", offenders));
    }

    [Fact]
    public void TheTranslationCheckCatchesCoreWork()
    {
        string[] work =
        {
            "var ids = tokens[b].cpu().data<long>().ToArray();",
            "Mean = positions.Average(p => p.Agreement.Kl);",
            "var x = weights[b * seq + p];",
            "for (var i = 0; i < n; i++)",
            "done += models[i].Vocabulary;",
        };
        Assert.All(work, line => Assert.Contains(CoreWork, w => w.Pattern.IsMatch(line)));
        string[] translation =
        {
            "Streams = core.Streams.Zip(reading.Streams, (s, r) => new LensStream(r.Stream, r.Path, s.Logits, Readings.Of(r.Mean))).ToList();",
            "public static Fn Sum(params Fn[] branches) => Fn.NewSum(ListModule.OfSeq(branches));",
            "if (centres.Length == 0)",
        };
        Assert.All(translation, line => Assert.DoesNotContain(CoreWork, w => w.Pattern.IsMatch(line)));
    }
}
