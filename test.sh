#!/usr/bin/env bash
# Runs every JetDsl test: the core's Expecto suite, the CLI smoke tests, the C# facade's xunit suite and the
# F# scripts in docs/, then the NuGet packages and the jet tool from a local folder. Ends with one line
# "N passed, N failed" and exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")"
configuration="${CONFIGURATION:-Release}"
passed=0
failed=0
strip() { sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g'; }

echo "== build ($configuration)"
if ! dotnet build JetDsl.sln -c "$configuration" -nologo -v quiet; then
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

# Expecto suites print "N tests run … – P passed, I ignored, F failed, E errored". Ignored tests count as failed:
# a skipped test is not a passing one.
run_expecto() {
  local name="$1" dll="$2"
  echo "== $name"
  local log
  log=$(mktemp)
  dotnet "$dll" --summary --no-spinner --colours 0 2>&1 | strip > "$log"
  grep -E "EXPECTO!" "$log"
  # Every failure with its message and the first lines of its stack.
  grep -E -A14 "\[[0-9:]+ ERR\]" "$log" | head -400
  local line
  line=$(grep -E "tests? run in" "$log" | tail -1)
  if [[ "$line" =~ ([0-9]+)\ passed,\ ([0-9]+)\ ignored,\ ([0-9]+)\ failed,\ ([0-9]+)\ errored ]]; then
    passed=$((passed + BASH_REMATCH[1]))
    failed=$((failed + BASH_REMATCH[2] + BASH_REMATCH[3] + BASH_REMATCH[4]))
  else
    echo "$name did not report a summary (crashed?):"
    tail -40 "$log"
    failed=$((failed + 1))
  fi
  rm -f "$log"
}

run_xunit() {
  local name="$1" project="$2"
  echo "== $name"
  local log
  log=$(mktemp)
  dotnet test "$project" -c "$configuration" --no-build -nologo 2>&1 | strip | tee "$log" | grep -E "Passed!|Failed!|\[FAIL\]|Error Message|Assert" | head -100
  local line
  line=$(grep -E "Failed: +[0-9]+, Passed: +[0-9]+, Skipped: +[0-9]+" "$log" | tail -1)
  if [[ "$line" =~ Failed:\ +([0-9]+),\ Passed:\ +([0-9]+),\ Skipped:\ +([0-9]+) ]]; then
    passed=$((passed + BASH_REMATCH[2]))
    failed=$((failed + BASH_REMATCH[1] + BASH_REMATCH[3]))
  else
    echo "$name did not report a summary:"
    tail -40 "$log"
    failed=$((failed + 1))
  fi
  rm -f "$log"
}

# Each script in docs/ must run to the end under `dotnet fsi`.
run_scripts() {
  echo "== docs scripts"
  shopt -s nullglob
  for script in docs/*.fsx; do
    if JETDSL_CONFIGURATION="$configuration" timeout 900 dotnet fsi --quiet --exec "$script" > /tmp/jetdsl-script.log 2>&1; then
      echo "passed: $script"
      passed=$((passed + 1))
    else
      echo "FAILED: $script"
      tail -30 /tmp/jetdsl-script.log
      failed=$((failed + 1))
    fi
  done
}

# The C# guide's console example must run and exit 0.
run_examples() {
  echo "== docs examples"
  if dotnet "docs/csharp-quickstart/bin/$configuration/net10.0/CSharpQuickstart.dll" > /tmp/jetdsl-example.log 2>&1; then
    echo "passed: docs/csharp-quickstart"
    passed=$((passed + 1))
  else
    echo "FAILED: docs/csharp-quickstart"
    tail -30 /tmp/jetdsl-example.log
    failed=$((failed + 1))
  fi
}

# The F# sources stay as Fantomas formats them (.editorconfig: lines of at most 120 characters).
run_format_check() {
  echo "== formatting (fantomas --check)"
  if dotnet tool restore > /tmp/jetdsl-tools.log 2>&1 && dotnet tool run fantomas --check src tests bench > /tmp/jetdsl-format.log 2>&1; then
    echo "passed: fantomas --check src tests bench"
    passed=$((passed + 1))
  else
    echo "FAILED: fantomas --check (run: dotnet tool run fantomas src tests bench)"
    tail -20 /tmp/jetdsl-tools.log /tmp/jetdsl-format.log
    failed=$((failed + 1))
  fi
}

# The NuGet packages and the jet tool, packed and installed from a local folder as a user would (tests/packages).
run_packages() {
  echo "== packages (tests/packages/run.sh)"
  local log
  log=$(mktemp)
  timeout 1200 tests/packages/run.sh > "$log" 2>&1
  grep -v -E "^packages: " "$log" | tail -80
  local line
  line=$(grep -E "^packages: [0-9]+ passed, [0-9]+ failed" "$log" | tail -1)
  if [[ "$line" =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
    passed=$((passed + BASH_REMATCH[1]))
    failed=$((failed + BASH_REMATCH[2]))
  else
    echo "tests/packages/run.sh did not report a summary"
    failed=$((failed + 1))
  fi
  rm -f "$log"
}

run_expecto "core tests" "tests/Jet.Core.Tests/bin/$configuration/net10.0/Jet.Core.Tests.dll"

run_expecto "CLI tests" "tests/Jet.Cli.Tests/bin/$configuration/net10.0/Jet.Cli.Tests.dll"
run_xunit "C# facade tests" tests/Jet.CSharp.Tests/Jet.CSharp.Tests.csproj
run_scripts
run_examples
run_format_check
run_packages

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
