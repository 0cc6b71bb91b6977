//! The reference syntax: `${{ path }}` in any string of a step's params, a `when` condition, a
//! `for_each`, a sleep's `until_ms`, an agent's prompts and the workflow's `output`.
//!
//! A path starts at a root and descends with `.name` and `[index]`:
//!
//! | root | value |
//! |------|-------|
//! | `input` | the instance's input (its task params) |
//! | `steps.<id>.output` | a finished step's output (`null` if it was skipped or failed with `on_failure: continue`) |
//! | `steps.<id>.state` | `"SUCCEEDED"`, `"FAILED"`, `"SKIPPED"`, ... |
//! | `item`, `index` | the current item of a `for_each` step and its index |
//! | `instance` | `{"id", "tenant", "workflow", "version"}` |
//!
//! A string that is one reference and nothing else becomes the referenced value with its JSON
//! type (`"${{ input.count }}"` is the number); references inside longer text are interpolated
//! (strings as they are, other values as compact JSON). Each path compiles to an RFC 6901 JSON
//! Pointer and resolves with [`Value::pointer`]: it names exactly one value, and a missing one is
//! an error naming the path (never a silent empty value). Values are never evaluated as code.

use std::collections::BTreeMap;

use serde_json::Value;

/// Where a path starts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Root {
    /// The instance's input.
    Input,
    /// A step's output.
    Output(String),
    /// A step's state.
    State(String),
    /// The current item of a `for_each`.
    Item,
    /// The current item's index.
    Index,
    /// The instance itself.
    Instance,
}

/// One reference: a root and a pointer below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ref {
    /// Where it starts.
    pub root: Root,
    /// RFC 6901 pointer below the root (`""` for the root itself).
    pub pointer: String,
    /// The path as written, for messages.
    pub text: String,
}

impl Ref {
    /// The step this reference reads, if any.
    pub fn step(&self) -> Option<&str> {
        match &self.root {
            Root::Output(s) | Root::State(s) => Some(s),
            _ => None,
        }
    }
}

/// A parsed string: one whole reference, or text with references in it.
#[derive(Clone, Debug, PartialEq)]
pub enum Template {
    /// No reference.
    Text(String),
    /// Exactly one reference, nothing else (its value keeps its type).
    Whole(Ref),
    /// Text and references, interpolated into a string.
    Parts(Vec<Part>),
}

/// A piece of an interpolated string.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    /// Literal text.
    Text(String),
    /// A reference.
    Ref(Ref),
}

/// What references resolve against.
#[derive(Clone, Debug, Default)]
pub struct Scope<'a> {
    /// The instance's input.
    pub input: Option<&'a Value>,
    /// Finished (or skipped) steps: their state and output.
    pub steps: Option<&'a BTreeMap<String, StepValue>>,
    /// The current `for_each` item.
    pub item: Option<&'a Value>,
    /// The current item's index.
    pub index: Option<usize>,
    /// `{"id", "tenant", "workflow", "version"}`.
    pub instance: Option<&'a Value>,
}

/// What a step contributes to the scope once it is done.
#[derive(Clone, Debug, PartialEq)]
pub struct StepValue {
    /// `SUCCEEDED`, `FAILED`, `SKIPPED`, `CANCELLED`, `TIMED_OUT`.
    pub state: String,
    /// Its output (`null` when it has none).
    pub output: Value,
}

const OPEN: &str = "${{";
const CLOSE: &str = "}}";

/// Parses the references of `s`; an unclosed `${{` or a malformed path is an error.
pub fn parse(s: &str) -> Result<Template, String> {
    if !s.contains(OPEN) {
        return Ok(Template::Text(s.to_string()));
    }
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find(OPEN) {
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_string()));
        }
        let after = &rest[start + OPEN.len()..];
        let end = after
            .find(CLOSE)
            .ok_or_else(|| format!("{s:?}: `${{{{` without a closing `}}}}`"))?;
        parts.push(Part::Ref(parse_path(after[..end].trim())?));
        rest = &after[end + CLOSE.len()..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(match parts.as_slice() {
        [Part::Ref(r)] => Template::Whole(r.clone()),
        _ => Template::Parts(parts),
    })
}

/// Compiles one path (`steps.fetch.output.items[0].id`) into a [`Ref`].
pub fn parse_path(path: &str) -> Result<Ref, String> {
    let bad = |why: &str| format!("reference {path:?}: {why}");
    let accessors = accessors(path).map_err(|e| bad(&e))?;
    let mut it = accessors.into_iter();
    let first = it.next().ok_or_else(|| bad("is empty"))?;
    let root = match first.as_str() {
        "input" => Root::Input,
        "item" => Root::Item,
        "index" => Root::Index,
        "instance" => Root::Instance,
        "steps" => {
            let id = it.next().ok_or_else(|| bad("steps needs a step id"))?;
            match it.next().as_deref() {
                Some("output") => Root::Output(id),
                Some("state") => Root::State(id),
                _ => return Err(bad("after steps.<id> comes .output or .state")),
            }
        }
        other => {
            return Err(bad(&format!(
                "starts with {other:?}; roots are input, steps, item, index, instance"
            )));
        }
    };
    if matches!(root, Root::Index | Root::State(_)) && it.len() > 0 {
        return Err(bad("index and steps.<id>.state have no fields"));
    }
    let pointer: String = it
        .map(|seg| format!("/{}", seg.replace('~', "~0").replace('/', "~1")))
        .collect();
    Ok(Ref {
        root,
        pointer,
        text: path.to_string(),
    })
}

/// `a.b[2].c` -> `["a", "b", "2", "c"]`; names are `[A-Za-z0-9_-]`, indexes decimal.
fn accessors(path: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = path.chars().peekable();
    let mut name = String::new();
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if name.is_empty() {
                    return Err("an empty name".into());
                }
                out.push(std::mem::take(&mut name));
            }
            '[' => {
                if !name.is_empty() {
                    out.push(std::mem::take(&mut name));
                }
                let mut digits = String::new();
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                    digits.push(d);
                }
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("[{digits}] is not an index"));
                }
                out.push(digits);
                if chars.peek().is_some_and(|n| *n != '.' && *n != '[') {
                    return Err("`]` must be followed by `.`, `[` or the end".into());
                }
                if chars.peek() == Some(&'.') {
                    chars.next();
                    if chars.peek().is_none() {
                        return Err("ends with `.`".into());
                    }
                }
            }
            c if name_char(c) => name.push(c),
            c => return Err(format!("{c:?} is not allowed (names are A-Z a-z 0-9 _ -)")),
        }
    }
    if !name.is_empty() {
        out.push(name);
    } else if path.ends_with('.') {
        return Err("ends with `.`".into());
    }
    Ok(out)
}

impl Scope<'_> {
    /// The value a reference names, or an error naming the path.
    pub fn resolve(&self, r: &Ref) -> Result<Value, String> {
        let base: Value = match &r.root {
            Root::Input => self.input.cloned().unwrap_or(Value::Null),
            Root::Item => self
                .item
                .cloned()
                .ok_or_else(|| format!("{}: item exists only in a for_each step", r.text))?,
            Root::Index => {
                return self
                    .index
                    .map(Value::from)
                    .ok_or_else(|| format!("{}: index exists only in a for_each step", r.text));
            }
            Root::Instance => self.instance.cloned().unwrap_or(Value::Null),
            Root::Output(id) | Root::State(id) => {
                let step = self
                    .steps
                    .and_then(|s| s.get(id))
                    .ok_or_else(|| format!("{}: step {id} has not finished", r.text))?;
                if matches!(r.root, Root::State(_)) {
                    return Ok(Value::from(step.state.clone()));
                }
                if step.output.is_null() {
                    // A skipped step (or one that failed and was let go) has no output: every
                    // path into it is null rather than an error.
                    return Ok(Value::Null);
                }
                step.output.clone()
            }
        };
        base.pointer(&r.pointer)
            .cloned()
            .ok_or_else(|| format!("{}: no such value", r.text))
    }

    /// `value` with every reference in its strings resolved (recursively through arrays and
    /// objects; object keys are not templates).
    pub fn render(&self, value: &Value) -> Result<Value, String> {
        Ok(match value {
            Value::String(s) => match parse(s)? {
                Template::Text(t) => Value::String(t),
                Template::Whole(r) => self.resolve(&r)?,
                Template::Parts(parts) => {
                    let mut out = String::new();
                    for p in parts {
                        match p {
                            Part::Text(t) => out.push_str(&t),
                            Part::Ref(r) => match self.resolve(&r)? {
                                Value::String(s) => out.push_str(&s),
                                other => out.push_str(&other.to_string()),
                            },
                        }
                    }
                    Value::String(out)
                }
            },
            Value::Array(a) => Value::Array(a.iter().map(|v| self.render(v)).collect::<Result<_, _>>()?),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| Ok((k.clone(), self.render(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }
}

/// Every reference of every string in `value` (recursively), and an error for each string
/// holding a malformed one.
pub fn each_reference(value: &Value) -> Vec<Result<Ref, String>> {
    let mut out = Vec::new();
    each_into(value, &mut out);
    out
}

fn each_into(value: &Value, out: &mut Vec<Result<Ref, String>>) {
    match value {
        Value::String(_) => match references(value) {
            Ok(refs) => out.extend(refs.into_iter().map(Ok)),
            Err(e) => out.push(Err(e)),
        },
        Value::Array(a) => a.iter().for_each(|v| each_into(v, out)),
        Value::Object(o) => o.values().for_each(|v| each_into(v, out)),
        _ => {}
    }
}

/// Every reference in the strings of `value` (recursively); the first malformed one is an
/// error.
pub fn references(value: &Value) -> Result<Vec<Ref>, String> {
    let mut out = Vec::new();
    collect(value, &mut out)?;
    Ok(out)
}

fn collect(value: &Value, out: &mut Vec<Ref>) -> Result<(), String> {
    match value {
        Value::String(s) => match parse(s)? {
            Template::Text(_) => {}
            Template::Whole(r) => out.push(r),
            Template::Parts(parts) => out.extend(parts.into_iter().filter_map(|p| match p {
                Part::Ref(r) => Some(r),
                Part::Text(_) => None,
            })),
        },
        Value::Array(a) => a.iter().try_for_each(|v| collect(v, out))?,
        Value::Object(o) => o.values().try_for_each(|v| collect(v, out))?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scope_steps() -> BTreeMap<String, StepValue> {
        BTreeMap::from([
            (
                "fetch".to_string(),
                StepValue {
                    state: "SUCCEEDED".into(),
                    output: json!({"items": [{"id": "a", "n": 1}, {"id": "b", "n": 2}], "a/b": {"~x": 7}}),
                },
            ),
            (
                "skipped".to_string(),
                StepValue {
                    state: "SKIPPED".into(),
                    output: Value::Null,
                },
            ),
        ])
    }

    #[test]
    fn paths_compile_to_pointers() {
        let r = parse_path("steps.fetch.output.items[1].id").unwrap();
        assert_eq!(r.root, Root::Output("fetch".into()));
        assert_eq!(r.pointer, "/items/1/id");
        assert_eq!(parse_path("input").unwrap().pointer, "");
        assert_eq!(parse_path("item.x[0][2]").unwrap().pointer, "/x/0/2");
        for bad in [
            "",
            "nothing.here",
            "steps.fetch",
            "steps.fetch.result",
            "input..a",
            "input.a.",
            "input[x]",
            "input[1]x",
            "input.$a",
            "index.x",
            "steps.fetch.state.x",
        ] {
            assert!(parse_path(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn whole_references_keep_their_type_and_text_interpolates() {
        let input = json!({"count": 3, "name": "ada", "tags": ["x"]});
        let steps = scope_steps();
        let scope = Scope {
            input: Some(&input),
            steps: Some(&steps),
            ..Default::default()
        };
        let params = json!({
            "n": "${{ input.count }}",
            "tags": "${{input.tags}}",
            "greeting": "hi ${{ input.name }}, ${{ input.count }} items: ${{ input.tags }}",
            "first": "${{ steps.fetch.output.items[0] }}",
            "nested": ["${{ steps.fetch.output.items[1].n }}", {"deep": "${{ steps.fetch.output.items[1].id }}"}],
            "escaped": "${{ steps.fetch.output.a/b }}",
            "state": "${{ steps.fetch.state }}",
            "gone": "${{ steps.skipped.output.anything.at_all }}",
            "plain": "no refs",
        });
        let out = scope.render(&params);
        assert!(out.is_err(), "a/b is not a valid name: {out:?}");
        let mut params = params;
        params.as_object_mut().unwrap().remove("escaped");
        let out = scope.render(&params).unwrap();
        assert_eq!(
            out,
            json!({
                "n": 3,
                "tags": ["x"],
                "greeting": "hi ada, 3 items: [\"x\"]",
                "first": {"id": "a", "n": 1},
                "nested": [2, {"deep": "b"}],
                "state": "SUCCEEDED",
                "gone": null,
                "plain": "no refs",
            })
        );
    }

    #[test]
    fn missing_values_and_unfinished_steps_are_errors_naming_the_path() {
        let input = json!({"a": 1});
        let steps = scope_steps();
        let scope = Scope {
            input: Some(&input),
            steps: Some(&steps),
            ..Default::default()
        };
        let e = scope.render(&json!("${{ input.b }}")).unwrap_err();
        assert!(e.contains("input.b") && e.contains("no such value"), "{e}");
        let e = scope
            .render(&json!({"x": "${{ steps.later.output }}"}))
            .unwrap_err();
        assert!(e.contains("step later has not finished"), "{e}");
        let e = scope.render(&json!("${{ item }}")).unwrap_err();
        assert!(e.contains("for_each"), "{e}");
        assert!(parse("${{ input.a").is_err());
    }

    #[test]
    fn items_and_indexes_resolve_in_a_fan_out() {
        let item = json!({"body": "text"});
        let scope = Scope {
            item: Some(&item),
            index: Some(4),
            ..Default::default()
        };
        assert_eq!(
            scope
                .render(&json!({"t": "${{ item.body }}", "i": "${{ index }}", "s": "#${{ index }}"}))
                .unwrap(),
            json!({"t": "text", "i": 4, "s": "#4"})
        );
    }

    #[test]
    fn references_are_collected_from_nested_values() {
        let refs = references(
            &json!({"a": ["${{ input.x }} and ${{ steps.s.output }}"], "b": {"c": "${{ item }}"}}),
        )
        .unwrap();
        let texts: Vec<&str> = refs.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, ["input.x", "steps.s.output", "item"]);
        assert_eq!(refs[1].step(), Some("s"));
    }
}
