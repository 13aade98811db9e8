/// Hostile command lines: every command with valid arguments, then one to three of them replaced by hostile values
/// (empty, negative, huge, NaN, Inf, folders, missing files, control characters, malformed lists), in both the
/// `--flag value` and `--flag=value` forms. Each run must end within the time limit with exit 0 (and finite output,
/// unless --allow-nonfinite), 1 (one line "error: …"), 2 (a usage error) or 3 (non-finite output, reported on
/// stderr); never a stack trace, never another exit code, never a hang.
///
/// Fixed seed and JETDSL_FUZZ_CLI_CASES cases (default 20, about a second each); JETDSL_FUZZ_SEED picks another seed;
/// JETDSL_FUZZ_CENSUS=1 counts defects instead of failing at the first.
module Jet.Cli.Tests.FuzzCliTests

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open Jet.Cli.Tests.CliRunner

let private caseCount =
    match Int32.TryParse(Environment.GetEnvironmentVariable "JETDSL_FUZZ_CLI_CASES") with
    | true, n when n > 0 -> n
    | _ -> 20

let private seed =
    match UInt64.TryParse(Environment.GetEnvironmentVariable "JETDSL_FUZZ_SEED") with
    | true, s -> s
    | _ -> 20261202UL

let private limitSeconds = 120

/// JETDSL_FUZZ_CENSUS=1 records defects without failing, to count every category in one run.
let private census = Environment.GetEnvironmentVariable "JETDSL_FUZZ_CENSUS" = "1"

let private checkpoint = Jet.Tests.Fixtures.path [ "lm-buddy-tiny-gpt2-toyvocab" ]

/// Each command with valid arguments (option, value; a null value is a flag) that the cases then corrupt.
let private commands =
    [
        "series", [ "--function", "sin"; "--order", "4"; "--at", "0.5"; "--to", "1.0"; "--json", null ]
        "quickstart", [ "--seed", "1"; "--d", "8"; "--order", "1"; "--json", null ]
        "run", [ "--model", "toy"; "--prompt", "hello"; "--top", "3"; "--json", null ]
        "lens", [ "--model", "toy"; "--prompt", "hello"; "--streams", "0,1"; "--order", "1"; "--top", "3" ]
        "joint-lens", [ "--model", "toy"; "--prompt", "hi"; "--order", "0"; "--iters", "3"; "--lr", "0.05" ]
        "bigrams", [ "--model", "toy"; "--path", "embed"; "--top", "3"; "--batch-size", "64"; "--json", null ]
        "mass", [ "--model", "toy"; "--tokens", "tokens.txt"; "--path", "embed"; "--batch-size", "64" ]
        "tokenize", [ "--model", checkpoint; "--text", "the cat"; "--json", null ]
        "info", [ "--model", checkpoint; "--json", null ]
        "skipgrams", [ "--model", checkpoint; "--layer", "1"; "--head", "1"; "--top", "2"; "--json", null ]
        "trigrams",
        [
            "--model", checkpoint
            "--path", "emb>attn1"
            "--first", "0..3"
            "--second", "0..3"
            "--top", "2"
        ]
        "run", [ "--model", checkpoint; "--prompt", "the cat"; "--top", "2"; "--dtype", "float16" ]
    ]

let private hostile =
    [
        ""
        " "
        "-1"
        "0"
        "65"
        "2147483647"
        "-2147483648"
        "99999999999"
        "1e308"
        "-1e308"
        "nan"
        "inf"
        "-inf"
        "1,,2"
        ","
        "0,0"
        "3,1"
        "/"
        "/dev/null"
        "/etc/passwd"
        "/no/such/path"
        "."
        "a\u0007b\u001b[31m"
        "\u202eevil"
        "é\uFFFD"
        "x.png"
        "/proc/x.svg"
        "out.txt"
        String('9', 400)
        String('a', 5000)
        "--json"
        "mlp:0"
        "mlp:99999999999"
        "float8"
        "cuda:-1"
        "toy"
        checkpoint
    ]

/// A command line: the command, its valid arguments with 1–3 values replaced (or an option dropped or added).
let private caseGen =
    gen {
        let! command, valid = Gen.elements commands
        let! edits = Gen.choose (1, 3)
        let! picks = Gen.listOfLength edits (Gen.choose (0, valid.Length - 1))
        let! values = Gen.listOfLength edits (Gen.elements hostile)
        let! assigned = Gen.listOfLength edits (Gen.elements [ false; false; true ])
        let! allow = Gen.frequency [ 1, Gen.constant true; 4, Gen.constant false ]
        // Now and then an option the command does not take (a usage error, exit 2) or a picture to write.
        let! extra =
            Gen.frequency
                [
                    8, Gen.constant None
                    1, Gen.constant (Some("--bogus", "1"))
                    1, Gen.constant (Some("--out", "pic.svg"))
                ]
        let extra =
            match extra with
            | Some("--out", _) when not (List.contains command [ "quickstart"; "lens"; "joint-lens"; "bigrams" ]) ->
                None
            | e -> e
        // tokenize reads no weights and computes nothing: it has no --allow-nonfinite.
        let allow = allow && command <> "tokenize"
        let replaced = Map.ofList (List.zip3 picks values assigned |> List.map (fun (p, v, a) -> p, (v, a)))
        let args =
            [
                yield command
                for i, (option, value) in List.indexed valid do
                    match replaced.TryFind i, value with
                    | Some(v, true), _ -> yield option + "=" + v
                    | Some(v, false), _ -> yield! [ option; v ]
                    | None, null -> yield option
                    | None, v -> yield! [ option; v ]
                match extra with
                | Some(option, value) -> yield! [ option; value ]
                | None -> ()
                if allow then
                    yield "--allow-nonfinite"
            ]
        return args
    }

/// What is wrong with how a run ended, if anything.
let private defect (args: string list) (r: CliResult) : string option =
    let stackTrace =
        r.Stderr.Contains "Unhandled exception"
        || r.Stderr.Contains "\n   at "
        || r.Stdout.Contains "\n   at "
    let nonFiniteText (s: string) = s.Contains "NaN" || s.Contains "Infinity" || s.Contains "∞"
    if stackTrace then
        Some(sprintf "a stack trace (exit %d)" r.ExitCode)
    elif not (List.contains r.ExitCode [ 0; 1; 2; 3 ]) then
        Some(sprintf "exit code %d" r.ExitCode)
    elif r.ExitCode = 0 && nonFiniteText r.Stdout && not (List.contains "--allow-nonfinite" args) then
        Some "exit 0 with non-finite output unflagged"
    elif r.ExitCode = 3 && not (r.Stderr.Contains "not finite") then
        Some "exit 3 without saying where the non-finite value is"
    elif
        r.ExitCode = 1
        && not (r.Stderr.TrimEnd().Split('\n') |> Array.last |> (fun l -> l.StartsWith "error: "))
    then
        Some "exit 1 without a one-line error"
    else
        None

[<Tests>]
let tests =
    testList
        "fuzz"
        [
            test "hostile command lines" {
                let outcomes = Collections.Concurrent.ConcurrentBag<string>()
                let property =
                    Prop.forAll (Arb.fromGen caseGen) (fun args ->
                        let dir = tempDir ()
                        IO.File.WriteAllLines(IO.Path.Combine(dir, "tokens.txt"), [| "a"; "b" |])
                        let result =
                            try
                                Ok(runFrom dir limitSeconds args)
                            with e ->
                                Error e.Message
                        match result with
                        | Error why ->
                            outcomes.Add "DEFECT: hang"
                            if not census then
                                failwithf "jet %A: %s" args why
                        | Ok r ->
                            match defect args r with
                            | Some what ->
                                outcomes.Add("DEFECT: " + what)
                                if census then
                                    eprintfn "DEFECT %s: jet %A\nstderr: %s" what args r.Stderr
                                else
                                    failwithf "jet %A: %s\nstdout: %s\nstderr: %s" args what r.Stdout r.Stderr
                            | None -> outcomes.Add(sprintf "exit %d" r.ExitCode))
                let config =
                    Config.QuickThrowOnFailure.WithMaxTest(caseCount).WithReplay(Some { Rnd = Rnd seed; Size = None })
                Check.One(config, property)
                let summary =
                    outcomes
                    |> Seq.countBy id
                    |> Seq.sort
                    |> Seq.map (fun (k, n) -> sprintf "%s ×%d" k n)
                    |> String.concat ", "
                printfn "fuzz hostile command lines: %d cases: %s" outcomes.Count summary
            }
        ]
