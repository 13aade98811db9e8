module Jet.Cli.Tests.SeriesTests

open System
open Expecto
open Jet.Cli.Tests.CliRunner

[<Tests>]
let tests =
    testList
        "jet series"
        [
            test "prints the Taylor coefficients of sin and converges to sin(y)" {
                let r = run [ "series"; "--function"; "sin"; "--order"; "6"; "--json" ]
                let root = json r
                let sums = [ for s in root.GetProperty("partial_sums").EnumerateArray() -> s.GetDouble() ]
                Expect.equal sums.Length 7 "orders 0..6"
                Expect.floatClose Accuracy.high (root.GetProperty("exact").GetDouble()) (sin 1.0) "exact value"
                // Lagrange: |sin(y) − J⁶| ≤ |y − x|⁷ / 7!.
                Expect.isLessThan
                    (abs (List.last sums - sin 1.0))
                    (0.5 ** 7.0 / 5040.0)
                    "the order-6 jet is within the Lagrange bound"
                let c1 = root.GetProperty("coefficients").[1].GetDouble()
                Expect.floatClose Accuracy.high c1 (cos 0.5 * 0.5) "c₁ = cos(x)(y − x)"
            }
            test "an unknown function is a one-line error with exit code 1" {
                let r = run [ "series"; "--function"; "nope" ]
                Expect.equal r.ExitCode 1 "exit code"
                Expect.stringContains r.Stderr "choose one of" "the error lists the valid functions"
            }
            test "a negative order is rejected" {
                let r = run [ "series"; "--order"; "-2" ]
                Expect.equal r.ExitCode 1 "exit code"
                Expect.stringContains r.Stderr "0..64" "the error states the valid range"
            }
        ]
