namespace Jet.Core

/// How indices and orders are written in path names and pictures: h₃, J²γ₁₂.
[<RequireQualifiedAccess>]
module Notation =
    /// A non-negative integer in subscript digits ("₁₂" for 12).
    let subscript (n: int) = string n |> String.map (fun c -> "₀₁₂₃₄₅₆₇₈₉".[int c - int '0'])

    /// A non-negative integer in superscript digits ("¹²" for 12).
    let superscript (n: int) = string n |> String.map (fun c -> "⁰¹²³⁴⁵⁶⁷⁸⁹".[int c - int '0'])
