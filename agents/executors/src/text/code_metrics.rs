//! Offline source-code metrics for the coder worker: line counts (code, comment, blank), the
//! language (from the file name, or guessed from the content), and a cyclomatic complexity
//! estimate (McCabe: one per function plus one per branch keyword or short-circuit operator),
//! counted outside comments and string literals by a small per-language scanner.

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::support::blocking::{checkpoint, run_blocking};
use crate::support::params_schema as schema;
use crate::support::words::check_text;

/// `intelligence.code.metrics` (worker kind coder):
/// `{"code": "...", "filename": "main.rs", "language": "rust"}` (both optional) -> [`CodeMetrics`].
pub struct MeasureCode;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeParams {
    code: String,
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    language: Option<String>,
}

/// What [`MeasureCode`] returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodeMetrics {
    /// `rust`, `python`, `javascript`, `typescript`, `go`, `java`, `c`, `cpp`, `csharp`, `ruby`,
    /// `shell`, or `unknown` (then generic C-like and `#` comment rules apply).
    pub language: String,
    /// Where the language came from: `param`, `filename`, `content` or `unknown`.
    pub language_source: String,
    /// All lines.
    pub lines: usize,
    /// Lines with only whitespace.
    pub blank: usize,
    /// Lines with a comment and no code.
    pub comment: usize,
    /// Lines with code (a trailing comment does not change that).
    pub code: usize,
    /// Longest line in characters.
    pub max_line_length: usize,
    /// Function definitions found (`fn`, `def`, `func`, `function`, ...); `None` for languages
    /// where a definition has no keyword (C, C++, Java, C#).
    pub functions: Option<usize>,
    /// Branch keywords (`if`, `while`, `case`, `catch`, ...) and `&&`/`||` (and `=>` match arms
    /// in Rust) outside comments and strings.
    pub decision_points: usize,
    /// `decision_points` plus one per function (at least one): McCabe's number for the file.
    pub cyclomatic_complexity: usize,
}

/// How one language writes comments, strings, branches and functions.
struct Syntax {
    /// Name in results and in the `language` param.
    name: &'static str,
    /// File extensions, lower case, without the dot.
    extensions: &'static [&'static str],
    /// Line comment markers.
    line_comments: &'static [&'static str],
    /// Block comment start and end.
    block_comment: Option<(&'static str, &'static str)>,
    /// String delimiters, longest first; the first `multiline` of them may span lines.
    strings: &'static [&'static str],
    /// How many of `strings` (from the front) may span lines.
    multiline: usize,
    /// `'` starts a character literal (`'a'`, `'\n'`) or a lifetime, not a string.
    char_literals: bool,
    /// A line starting with `"""` or `'''` opens a docstring, counted as a comment.
    docstrings: bool,
    /// Keywords that add a decision.
    branches: &'static [&'static str],
    /// Operators that add a decision.
    operators: &'static [&'static str],
    /// Keywords that start a function definition.
    functions: &'static [&'static str],
    /// Substrings typical of the language, for guessing it from content.
    markers: &'static [&'static str],
}

const C_LIKE_BRANCHES: &[&str] = &["if", "for", "while", "case", "catch"];
const SHORT_CIRCUIT: &[&str] = &["&&", "||"];
const C_STRINGS: &[&str] = &["\""];
const JS_STRINGS: &[&str] = &["`", "\"", "'"];
const SCRIPT_STRINGS: &[&str] = &["\"", "'"];

static SYNTAXES: &[Syntax] = &[
    Syntax {
        name: "rust",
        extensions: &["rs"],
        line_comments: &["//"],
        block_comment: Some(("/*", "*/")),
        strings: &["\""],
        multiline: 1,
        char_literals: true,
        docstrings: false,
        branches: &["if", "for", "while"],
        operators: &["&&", "||", "=>"],
        functions: &["fn"],
        markers: &[
            "fn ",
            "let mut ",
            "impl ",
            "pub fn",
            "use std::",
            "-> ",
            "&mut ",
            "match ",
            "#[derive",
        ],
    },
    Syntax {
        name: "python",
        extensions: &["py", "pyi"],
        line_comments: &["#"],
        block_comment: None,
        strings: &["\"\"\"", "'''", "\"", "'"],
        multiline: 2,
        char_literals: false,
        docstrings: true,
        branches: &["if", "elif", "for", "while", "except", "and", "or", "case"],
        operators: &[],
        functions: &["def"],
        markers: &[
            "def ", "import ", "self.", "elif ", "None", "print(", "__init__", "):\n",
        ],
    },
    Syntax {
        name: "typescript",
        extensions: &["ts", "tsx", "mts"],
        line_comments: &["//"],
        block_comment: Some(("/*", "*/")),
        strings: JS_STRINGS,
        multiline: 1,
        char_literals: false,
        docstrings: false,
        branches: C_LIKE_BRANCHES,
        operators: SHORT_CIRCUIT,
        functions: &["function"],
        markers: &[
            ": string",
            ": number",
            ": boolean",
            "interface ",
            "export type ",
            "readonly ",
            "<T>",
        ],
    },
    Syntax {
        name: "javascript",
        extensions: &["js", "mjs", "cjs", "jsx"],
        line_comments: &["//"],
        block_comment: Some(("/*", "*/")),
        strings: JS_STRINGS,
        multiline: 1,
        char_literals: false,
        docstrings: false,
        branches: C_LIKE_BRANCHES,
        operators: SHORT_CIRCUIT,
        functions: &["function"],
        markers: &[
            "function ",
            "const ",
            "=> ",
            "console.log",
            "require(",
            "===",
            "document.",
            "module.exports",
        ],
    },
    Syntax {
        name: "go",
        extensions: &["go"],
        line_comments: &["//"],
        block_comment: Some(("/*", "*/")),
        strings: &["`", "\""],
        multiline: 1,
        char_literals: true,
        docstrings: false,
        branches: &["if", "for", "case"],
        operators: SHORT_CIRCUIT,
        functions: &["func"],
        markers: &[
            "package ",
            "func ",
            ":= ",
            "fmt.",
            "go func",
            "chan ",
            "err != nil",
        ],
    },
    Syntax {
        name: "java",
        extensions: &["java"],
        line_comments: &["//"],
        block_comment: Some(("/*", "*/")),
        strings: C_STRINGS,
        multiline: 0,
        char_literals: true,
        docstrings: false,
        branches: C_LIKE_BRANCHES,
        operators: SHORT_CIRCUIT,
        functions: &[],
        markers: &[
            "public class ",
            "public static void",
            "System.out",
            "import java.",
            "@Override",
            "extends ",
        ],
    },
    Syntax {
        name: "csharp",
        extensions: &["cs"],
        line_comments: &["//"],
        block_comment: Some(("/*", "*/")),
        strings: C_STRINGS,
        multiline: 0,
        char_literals: true,
        docstrings: false,
        branches: &["if", "for", "foreach", "while", "case", "catch"],
        operators: SHORT_CIRCUIT,
        functions: &[],
        markers: &[
            "using System",
            "namespace ",
            "Console.",
            "{ get;",
            "public void ",
            "foreach (",
        ],
    },
    Syntax {
        name: "cpp",
        extensions: &["cc", "cpp", "cxx", "hpp", "hh", "hxx"],
        line_comments: &["//"],
        block_comment: Some(("/*", "*/")),
        strings: C_STRINGS,
        multiline: 0,
        char_literals: true,
        docstrings: false,
        branches: C_LIKE_BRANCHES,
        operators: SHORT_CIRCUIT,
        functions: &[],
        markers: &[
            "#include <iostream>",
            "std::",
            "cout <<",
            "template <",
            "template<",
            "nullptr",
            "class ",
        ],
    },
    Syntax {
        name: "c",
        extensions: &["c", "h"],
        line_comments: &["//"],
        block_comment: Some(("/*", "*/")),
        strings: C_STRINGS,
        multiline: 0,
        char_literals: true,
        docstrings: false,
        branches: C_LIKE_BRANCHES,
        operators: SHORT_CIRCUIT,
        functions: &[],
        markers: &[
            "#include <stdio.h>",
            "#include <stdlib.h>",
            "printf(",
            "int main(",
            "malloc(",
            "->",
            "NULL",
        ],
    },
    Syntax {
        name: "ruby",
        extensions: &["rb"],
        line_comments: &["#"],
        block_comment: None,
        strings: SCRIPT_STRINGS,
        multiline: 0,
        char_literals: false,
        docstrings: false,
        branches: &[
            "if", "elsif", "unless", "while", "until", "for", "when", "rescue", "and", "or",
        ],
        operators: SHORT_CIRCUIT,
        functions: &["def"],
        markers: &["def ", "puts ", "require '", "elsif ", "do |", "attr_", "end\n"],
    },
    Syntax {
        name: "shell",
        extensions: &["sh", "bash", "zsh"],
        line_comments: &["#"],
        block_comment: None,
        strings: SCRIPT_STRINGS,
        multiline: 2,
        char_literals: false,
        docstrings: false,
        branches: &["if", "elif", "for", "while", "until", "case"],
        operators: SHORT_CIRCUIT,
        functions: &["function"],
        markers: &["echo ", "fi\n", "then\n", "$(", "esac", "${", "done\n"],
    },
];

/// Rules for code in no known language: C-like and `#` comments, C-like branches.
static UNKNOWN: Syntax = Syntax {
    name: "unknown",
    extensions: &[],
    line_comments: &["//", "#"],
    block_comment: Some(("/*", "*/")),
    strings: SCRIPT_STRINGS,
    multiline: 0,
    char_literals: false,
    docstrings: false,
    branches: C_LIKE_BRANCHES,
    operators: SHORT_CIRCUIT,
    functions: &[],
    markers: &[],
};

/// Content guesses below this marker score are `unknown`.
const MIN_GUESS_SCORE: usize = 2;

#[async_trait]
impl Executor for MeasureCode {
    fn params_schema(&self) -> Option<Value> {
        let names: Vec<&str> = SYNTAXES.iter().map(|s| s.name).collect();
        Some(schema::object(
            &["code"],
            &[
                ("code", schema::text("the source code")),
                ("filename", schema::string("its file name, for the language")),
                (
                    "language",
                    schema::one_of(&names, "its language (from filename or content when absent)"),
                ),
            ],
        ))
    }

    fn result_schema(&self) -> Option<Value> {
        let mut names: Vec<&str> = SYNTAXES.iter().map(|s| s.name).collect();
        names.push(UNKNOWN.name);
        Some(schema::record(&[
            ("language", schema::one_of(&names, "the language measured")),
            (
                "language_source",
                schema::one_of(
                    &["param", "filename", "content", "unknown"],
                    "where the language came from",
                ),
            ),
            ("lines", schema::count("all lines")),
            ("blank", schema::count("lines with only whitespace")),
            ("comment", schema::count("lines with a comment and no code")),
            ("code", schema::count("lines with code")),
            ("max_line_length", schema::count("longest line in characters")),
            (
                "functions",
                schema::nullable(schema::count(
                    "function definitions; null where a definition has no keyword",
                )),
            ),
            (
                "decision_points",
                schema::count("branches and short-circuit operators"),
            ),
            (
                "cyclomatic_complexity",
                schema::int_range(1, i64::MAX, "McCabe's number for the file"),
            ),
        ]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: CodeParams = decode_params(&params)?;
        check_text("code", &p.code)?;
        let given = match p.language.as_deref() {
            None => None,
            Some(name) => Some(SYNTAXES.iter().find(|s| s.name == name).ok_or_else(|| {
                let known: Vec<&str> = SYNTAXES.iter().map(|s| s.name).collect();
                ExecError::InvalidParams(format!(
                    "language {name:?} is not known (known: {})",
                    known.join(", ")
                ))
            })?),
        };
        let m = run_blocking(&ctx, "code metrics", move |cancel| {
            let (syntax, source) = match given {
                Some(s) => (s, "param"),
                None => identify(p.filename.as_deref(), &p.code),
            };
            measure(&p.code, syntax, source, cancel)
        })
        .await?;
        serde_json::to_value(m).map_err(|e| ExecError::Fatal(e.to_string()))
    }
}

/// The syntax of a file: from its extension if known, else guessed from the content.
fn identify(filename: Option<&str>, code: &str) -> (&'static Syntax, &'static str) {
    let ext = filename
        .and_then(|f| f.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    if let Some(s) = ext.and_then(|e| SYNTAXES.iter().find(|s| s.extensions.contains(&e.as_str()))) {
        return (s, "filename");
    }
    match guess(code) {
        Some(s) => (s, "content"),
        None => (&UNKNOWN, "unknown"),
    }
}

/// Guesses the language from a shebang line or, failing that, from typical substrings.
fn guess(code: &str) -> Option<&'static Syntax> {
    let by_name = |n: &str| SYNTAXES.iter().find(|s| s.name == n);
    if let Some(shebang) = code.lines().next().and_then(|l| l.strip_prefix("#!")) {
        for (needle, name) in [
            ("python", "python"),
            ("node", "javascript"),
            ("ruby", "ruby"),
            ("sh", "shell"),
        ] {
            if shebang.contains(needle) {
                return by_name(name);
            }
        }
    }
    SYNTAXES
        .iter()
        .map(|s| {
            let score: usize = s.markers.iter().map(|m| code.matches(m).count().min(3)).sum();
            (s, score)
        })
        .filter(|(_, score)| *score >= MIN_GUESS_SCORE)
        // max_by_key keeps the last maximum; reversing makes table order break ties.
        .rev()
        .max_by_key(|(_, score)| *score)
        .map(|(s, _)| s)
}

/// Where the scanner is at a line boundary.
#[derive(Clone, Copy, PartialEq)]
enum State {
    Code,
    /// Inside a block comment (or docstring) ending with this delimiter.
    Comment(&'static str),
    /// Inside a string literal ending with this delimiter.
    Str(&'static str),
}

/// Counts lines and decisions of `code` read with `syntax`.
fn measure(
    code: &str,
    syntax: &'static Syntax,
    source: &str,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<CodeMetrics, ExecError> {
    let mut m = CodeMetrics {
        language: syntax.name.into(),
        language_source: source.into(),
        lines: 0,
        blank: 0,
        comment: 0,
        code: 0,
        max_line_length: 0,
        functions: (!syntax.functions.is_empty()).then_some(0),
        decision_points: 0,
        cyclomatic_complexity: 0,
    };
    let mut state = State::Code;
    for (n, line) in code.lines().enumerate() {
        if n % 10_000 == 0 {
            checkpoint(cancel)?;
        }
        m.lines += 1;
        m.max_line_length = m.max_line_length.max(line.chars().count());
        if line.trim().is_empty() {
            m.blank += 1;
            continue;
        }
        let (code_text, has_code, has_comment) = scan_line(line, syntax, &mut state);
        if has_code {
            m.code += 1;
        } else if has_comment {
            m.comment += 1;
        }
        let (decisions, functions) = count_decisions(&code_text, syntax);
        m.decision_points += decisions;
        if let Some(f) = m.functions.as_mut() {
            *f += functions;
        }
    }
    m.cyclomatic_complexity = m.decision_points + m.functions.unwrap_or(1).max(1);
    Ok(m)
}

/// Scans one line, carrying block comments and multi-line strings in `state`. Returns the
/// line's code with comments removed and string contents blanked, and whether it had code and
/// whether it had a comment.
fn scan_line(line: &str, syntax: &Syntax, state: &mut State) -> (String, bool, bool) {
    let mut code = String::new();
    let (mut has_code, mut has_comment) = (false, false);
    let mut i = 0;
    while i < line.len() {
        let rest = &line[i..];
        let c = rest.chars().next().unwrap_or(' ');
        match *state {
            State::Comment(end) => {
                has_comment |= !c.is_whitespace();
                if rest.starts_with(end) {
                    *state = State::Code;
                    i += end.len();
                    continue;
                }
            }
            State::Str(end) => {
                has_code = true;
                if c == '\\' {
                    i += 1 + rest[1..].chars().next().map_or(0, char::len_utf8);
                    continue;
                }
                if rest.starts_with(end) {
                    *state = State::Code;
                    code.push(' ');
                    i += end.len();
                    continue;
                }
            }
            State::Code => {
                let at_line_start = line[..i].trim().is_empty();
                if let Some(m) = syntax.line_comments.iter().find(|m| rest.starts_with(**m)) {
                    // `#` opens a comment only at a word start: `$#` and `${#x}` are shell code.
                    let word_start =
                        *m != "#" || line[..i].ends_with(|p: char| p.is_whitespace() || p == ';');
                    if word_start || at_line_start {
                        has_comment = true;
                        break;
                    }
                }
                if let Some((start, end)) = syntax.block_comment
                    && rest.starts_with(start)
                {
                    *state = State::Comment(end);
                    has_comment = true;
                    i += start.len();
                    continue;
                }
                if syntax.docstrings
                    && at_line_start
                    && let Some(d) = ["\"\"\"", "'''"].into_iter().find(|d| rest.starts_with(d))
                {
                    *state = State::Comment(d);
                    has_comment = true;
                    i += 3;
                    continue;
                }
                if let Some(d) = syntax.strings.iter().find(|d| rest.starts_with(**d)) {
                    *state = State::Str(d);
                    has_code = true;
                    i += d.len();
                    continue;
                }
                if c == '\'' && syntax.char_literals {
                    has_code = true;
                    code.push(' ');
                    i += char_literal_len(rest);
                    continue;
                }
                has_code |= !c.is_whitespace();
                code.push(c);
            }
        }
        i += c.len_utf8();
    }
    if let State::Str(d) = *state
        && !syntax.strings[..syntax.multiline].contains(&d)
    {
        *state = State::Code;
    }
    (code, has_code, has_comment)
}

/// Length in bytes of a character literal at the start of `rest` (`'a'`, `'\n'`, `'\u{1F600}'`),
/// or 1 when the quote is a lifetime (`'a`) or stray.
fn char_literal_len(rest: &str) -> usize {
    let mut chars = rest.char_indices().skip(1);
    match (chars.next(), chars.next()) {
        (Some((_, '\\')), _) => rest[2..].find('\'').map_or(1, |p| p + 3),
        (Some(_), Some((j, '\''))) => j + 1,
        _ => 1,
    }
}

/// Decisions and function definitions in one line of code (comments and strings removed).
fn count_decisions(code: &str, syntax: &Syntax) -> (usize, usize) {
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let mut decisions = 0;
    for (k, w) in words.iter().enumerate() {
        if syntax.branches.contains(w) {
            // Rust's `impl Trait for Type` is not a loop: a loop's `for` has an `in` after it.
            let is_impl_for = syntax.name == "rust" && *w == "for" && !words[k..].contains(&"in");
            decisions += usize::from(!is_impl_for);
        }
    }
    decisions += syntax
        .operators
        .iter()
        .map(|op| code.matches(op).count())
        .sum::<usize>();
    let functions = words.iter().filter(|w| syntax.functions.contains(w)).count();
    (decisions, functions)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::support::test_support::ctx;

    const RUST: &str = r#"//! A module.

/// Doc.
pub fn classify(n: i32) -> &'static str {
    let quote = '"'; // a char literal, not a string
    /* a block
       comment with if and while */
    if n < 0 && n > -10 {
        "small negative // not a comment"
    } else if n == 0 {
        "zero"
    } else {
        match n { 1 => "one", _ => "many" }
    }
}

impl Clone for Thing {
    fn clone(&self) -> Self { for x in 0..3 {} Thing }
}
"#;

    async fn run(params: Value) -> Result<CodeMetrics, ExecError> {
        let v = MeasureCode.execute(ctx(), params).await?;
        Ok(serde_json::from_value(v).unwrap())
    }

    #[tokio::test]
    async fn rust_lines_and_complexity() {
        let m = run(json!({ "code": RUST, "filename": "src/lib.RS" }))
            .await
            .unwrap();
        assert_eq!(
            (m.language.as_str(), m.language_source.as_str()),
            ("rust", "filename")
        );
        assert_eq!((m.lines, m.blank, m.comment, m.code), (19, 2, 4, 13));
        assert_eq!(m.functions, Some(2));
        // if, else if, &&, two match arms, the `for` loop (not `impl Clone for`).
        assert_eq!(m.decision_points, 6);
        assert_eq!(m.cyclomatic_complexity, 8);
    }

    #[tokio::test]
    async fn python_with_docstrings_and_guessing() {
        let py = "#!/usr/bin/env python3\nimport os\n\ndef f(x):\n    \"\"\"Doc if\n    string.\"\"\"\n    \
                  if x and os.path.exists(x):  # if in comment\n        return 'a # b'\n    elif x:\n        \
                  return [y for y in x if y]\n    return None\n";
        let m = run(json!({ "code": py })).await.unwrap();
        assert_eq!(
            (m.language.as_str(), m.language_source.as_str()),
            ("python", "content")
        );
        assert_eq!((m.lines, m.blank, m.comment, m.code), (11, 1, 3, 7));
        // if, and, elif, for, if (comprehension).
        assert_eq!(
            (m.decision_points, m.functions, m.cyclomatic_complexity),
            (5, Some(1), 6)
        );
    }

    #[test]
    fn guesses_languages_from_content() {
        for (code, want) in [
            (
                "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tx := 1\n\tfmt.Println(x)\n}\n",
                "go",
            ),
            (
                "public class A {\n  public static void main(String[] a) { System.out.println(1); }\n}",
                "java",
            ),
            (
                "#include <stdio.h>\nint main() { printf(\"hi\"); return 0; }",
                "c",
            ),
            ("#include <iostream>\nint main() { std::cout << 1; }", "cpp"),
            ("const f = (x) => x + 1;\nconsole.log(f(1));\n", "javascript"),
            (
                "interface A { name: string; age: number }\nexport type B = A;\n",
                "typescript",
            ),
            ("#!/bin/bash\necho hi\n", "shell"),
            ("def x\n  puts 'a'\nend\n", "ruby"),
            (
                "using System;\nnamespace A { class B { void C() { Console.WriteLine(1); } } }",
                "csharp",
            ),
        ] {
            assert_eq!(guess(code).map(|s| s.name), Some(want), "{code}");
        }
        assert!(guess("hello world").is_none());
    }

    #[tokio::test]
    async fn shell_hash_and_unknown_language() {
        let sh = "if [ $# -gt 0 ] && [ \"${#1}\" -gt 2 ]; then # args\n  echo \"#1\"\nfi\n";
        let m = run(json!({ "code": sh, "language": "shell" })).await.unwrap();
        assert_eq!((m.code, m.comment, m.decision_points), (3, 0, 2));
        assert_eq!(m.language_source, "param");
        let m = run(json!({ "code": "some text\n# note\n", "filename": "notes.txt" }))
            .await
            .unwrap();
        assert_eq!(
            (m.language.as_str(), m.language_source.as_str()),
            ("unknown", "unknown")
        );
        assert_eq!(
            (m.code, m.comment, m.functions, m.cyclomatic_complexity),
            (1, 1, None, 1)
        );
    }

    #[tokio::test]
    async fn params_and_cancel() {
        for (params, want) in [
            (json!({ "code": "" }), "code must not be empty"),
            (
                json!({ "code": "x", "language": "cobol" }),
                "\"cobol\" is not known (known: rust, python",
            ),
            (json!({ "code": "x", "path": "a.rs" }), "unknown field `path`"),
        ] {
            let err = run(params).await.unwrap_err();
            assert!(
                matches!(&err, ExecError::InvalidParams(m) if m.contains(want)),
                "{err:?}"
            );
        }
        let c = ctx();
        c.cancel.cancel();
        let res = MeasureCode.execute(c, json!({ "code": "x" })).await;
        assert_eq!(res, Err(ExecError::Cancelled));
    }

    #[test]
    fn random_source_never_panics_and_lines_add_up() {
        let pieces = [
            "//", "/*", "*/", "#", "\"", "'", "`", "\"\"\"", "'''", "\\", "\n", " ", "if", "é", "x", "&&",
            "=>", "for", "in", "fn", "def", "\n\n", "'a'", "$#",
        ];
        let mut rng = crate::support::test_support::Rng::new(3);
        let cancel = tokio_util::sync::CancellationToken::new();
        for _ in 0..2000 {
            let code: String = (0..rng.below(40))
                .map(|_| pieces[rng.below(pieces.len())])
                .collect();
            for syntax in SYNTAXES.iter().chain([&UNKNOWN]) {
                let m = measure(&code, syntax, "param", &cancel).unwrap();
                // A non-blank line has code or a comment, so the classes cover every line.
                assert_eq!(m.lines, m.blank + m.comment + m.code, "{code:?}");
            }
        }
    }

    #[test]
    fn char_literals_and_lifetimes() {
        assert_eq!(char_literal_len("'a' + 1"), 3);
        assert_eq!(char_literal_len("'\\n'"), 4);
        assert_eq!(char_literal_len("'\\u{1F600}'"), 11);
        assert_eq!(char_literal_len("'static str"), 1);
        assert_eq!(char_literal_len("'é'"), 4);
    }
}
