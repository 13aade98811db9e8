#!/usr/bin/env bash
# Packs JetDsl's three NuGet packages into one folder (default artifacts/packages): Jet.Core (F#), Jet.CSharp (the C#
# facade, brings Jet.Core) and Jet.Cli (the `jet` .NET tool), each with its .snupkg symbols. The version comes from
# Directory.Build.props (VersionPrefix); VERSION_SUFFIX=rc.1 ./pack.sh makes 0.1.0-rc.1.
set -euo pipefail
cd "$(dirname "$0")"
out="$(mkdir -p "${1:-artifacts/packages}" && cd "${1:-artifacts/packages}" && pwd)"
suffix=()
[ -n "${VERSION_SUFFIX:-}" ] && suffix=(--version-suffix "$VERSION_SUFFIX")
for project in src/Jet.Core/Jet.Core.fsproj src/Jet.CSharp/Jet.CSharp.csproj src/Jet.Cli/Jet.Cli.fsproj; do
  dotnet pack "$project" -c Release -nologo -v quiet -o "$out" "${suffix[@]}"
done
ls -1 "$out"
