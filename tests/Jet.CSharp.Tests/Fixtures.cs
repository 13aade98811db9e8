namespace JetDsl.Tests;

/// <summary>The shared fixtures folder: $JETDSL_FIXTURES, else shared/fixtures beside the repository, else
/// /work/shared/fixtures (the same rule as the F# tests).</summary>
internal static class Fixtures
{
    private static IEnumerable<string> Candidates()
    {
        var fromEnvironment = Environment.GetEnvironmentVariable("JETDSL_FIXTURES");
        if (!string.IsNullOrEmpty(fromEnvironment)) yield return fromEnvironment;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "JetDsl.sln")) && dir.Parent is not null)
            {
                yield return System.IO.Path.Combine(dir.Parent.FullName, "shared", "fixtures");
                break;
            }
        yield return "/work/shared/fixtures";
    }

    public static string Path(params string[] parts)
    {
        var root = Candidates().FirstOrDefault(Directory.Exists)
            ?? throw new DirectoryNotFoundException("The shared fixtures were not found; set JETDSL_FIXTURES.");
        return System.IO.Path.Combine(new[] { root }.Concat(parts).ToArray());
    }
}
