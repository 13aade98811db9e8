#!/usr/bin/env bash
# Package tests, from packages only (no source references): packs Jet.Core, Jet.CSharp and the jet tool into a
# temporary folder, then (1) a fresh `dotnet new console` C# app adds Jet.CSharp + TorchSharp-cpu from it and runs the
# quickstart carving and a lens on ../shared/fixtures/stories260K; (2) an F# script loads Jet.Core with #r "nuget: …";
# (3) `dotnet tool install --tool-path` installs jet, which runs `jet quickstart` and `jet lens`. Prints one
# "passed: …" / "FAILED: …" line per check and ends with "packages: N passed, N failed".
# NuGet: a throwaway config = the user's NuGet.Config (the machine's default source, no host named here) plus the
# local folder. TorchSharp comes from the global packages folder as usual; the Jet.* entries there are removed first
# so the packages under test are never a stale cached copy.
set -uo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd)"
fixtures="$(cd ../shared/fixtures && pwd)"
work="$(mktemp -d /tmp/jetdsl-packages.XXXXXX)"
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
check() { # name, log file, command...
  local name="$1" log="$2"
  shift 2
  if "$@" > "$log" 2>&1; then
    echo "passed: $name"
    passed=$((passed + 1))
  else
    echo "FAILED: $name"
    tail -30 "$log"
    failed=$((failed + 1))
  fi
}
finish() {
  echo "packages: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit $?
}

start=$SECONDS
check "pack (./pack.sh)" "$work/pack.log" ./pack.sh "$work/feed"
echo "pack: $((SECONDS - start)) s"
[ "$failed" -eq 0 ] || finish
version="$(ls "$work/feed" | sed -n 's/^Jet\.Core\.\(.*\)\.nupkg$/\1/p')"
for id in Jet.Core Jet.CSharp Jet.Cli; do
  for kind in nupkg snupkg; do
    [ -f "$work/feed/$id.$version.$kind" ] || { echo "FAILED: $id.$version.$kind missing"; failed=$((failed + 1)); }
  done
done
rm -rf ~/.nuget/packages/jet.core ~/.nuget/packages/jet.csharp ~/.nuget/packages/jet.cli

user_config="${NUGET_USER_CONFIG:-$HOME/.nuget/NuGet/NuGet.Config}"
if [ -f "$user_config" ]; then cp "$user_config" "$work/nuget.config"; else dotnet new nugetconfig -o "$work" > /dev/null; fi
dotnet nuget add source "$work/feed" --name jetdsl-local --configfile "$work/nuget.config" > /dev/null

# (1) A C# console app, as a new user makes it.
start=$SECONDS
csharp() (
  set -e
  cd "$work"
  dotnet new console -o app -n PackageApp > /dev/null
  cd app
  dotnet add package Jet.CSharp --version "$version"
  dotnet add package TorchSharp-cpu --version 0.107.0
  cp "$root/tests/packages/Program.cs" Program.cs
  dotnet run -c Release -- "$fixtures/stories260K"
)
check "C# console app with Jet.CSharp $version (quickstart carving, lens on stories260K)" "$work/csharp.log" csharp
grep -E "^(carving|lens):" "$work/csharp.log"
echo "C# app: $((SECONDS - start)) s"

# (2) An F# script with #r "nuget: …".
start=$SECONDS
sed -e "s|@FEED@|$work/feed|" -e "s|@VERSION@|$version|" -e "s|@MODEL@|$fixtures/stories260K|" \
  tests/packages/script.fsx > "$work/script.fsx"
check "F# script with #r \"nuget: Jet.Core, $version\"" "$work/fsx.log" \
  bash -c "cd '$work' && dotnet fsi --quiet --exec script.fsx"
grep -E "^(carving|lens):" "$work/fsx.log"
echo "F# script: $((SECONDS - start)) s"

# (3) The jet tool.
start=$SECONDS
check "dotnet tool install --tool-path (Jet.Cli $version)" "$work/tool.log" \
  dotnet tool install Jet.Cli --version "$version" --tool-path "$work/tools" --configfile "$work/nuget.config"
if [ -x "$work/tools/jet" ]; then
  check "jet quickstart (installed tool)" "$work/quickstart.log" bash -c "cd '$work' && ./tools/jet quickstart"
  check "jet lens --model stories260K (installed tool)" "$work/lens.log" \
    bash -c "cd '$work' && ./tools/jet lens --model '$fixtures/stories260K' --prompt 'Once upon a time' --order 1 && grep -q -i 'lens' '$work/lens.log'"
fi
echo "tool: $((SECONDS - start)) s"
finish
