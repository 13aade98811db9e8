using System.Reflection;
using JetDsl;

namespace JetDsl.Tests;

/// <summary>The facade speaks C#: no F#-only type appears in any public signature.</summary>
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
            typeof(LensBuilder), typeof(LensReading), typeof(LensLayer), typeof(LensPosition), typeof(Agreement), typeof(TokenScore), typeof(PositionTop),
            typeof(JointLensBuilder), typeof(JointLensReading), typeof(JointLensCentre), typeof(WeightedPosition),
            typeof(BigramPath), typeof(BigramSweep), typeof(BigramTable), typeof(Bigram), typeof(ModelMass), typeof(ScoreSpace),
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
}
