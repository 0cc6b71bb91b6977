//! A step's `when`: a small JSON operator tree over references, not an expression language
//! (nothing is ever evaluated as code).
//!
//! | form | true when |
//! |------|-----------|
//! | `{"eq": [a, b]}`, `{"ne": [a, b]}` | the two values are (not) equal as JSON |
//! | `{"gt": [a, b]}`, `{"gte": ...}`, `{"lt": ...}`, `{"lte": ...}` | both are numbers and compare so |
//! | `{"in": [a, [x, y, ...]]}` | `a` equals one of the list (the list may be a reference) |
//! | `{"exists": "${{ path }}"}` | the path resolves to a value other than `null` |
//! | `{"truthy": a}` | `a` is not `null`, `false`, `0`, `""`, `[]` or `{}` |
//! | `{"not": c}`, `{"all": [c, ...]}`, `{"any": [c, ...]}` | as named |
//!
//! Operands are any JSON; strings among them may hold references (see [`crate::reference`]).

use serde_json::Value;

use crate::reference::{self, Scope};

/// Names of the operators, for messages.
const OPERATORS: &str = "eq, ne, gt, gte, lt, lte, in, exists, truthy, not, all, any";

/// Checks the shape of a condition (operators, arity, references); every problem named.
pub fn check(cond: &Value, at: &str) -> Vec<String> {
    let mut problems = Vec::new();
    check_into(cond, at, &mut problems);
    problems
}

fn check_into(cond: &Value, at: &str, problems: &mut Vec<String>) {
    let Some((op, arg)) = single_key(cond) else {
        problems.push(format!(
            "{at}: a condition is an object with one operator ({OPERATORS})"
        ));
        return;
    };
    let mut refs = |v: &Value| {
        if let Err(e) = reference::references(v) {
            problems.push(format!("{at}.{op}: {e}"));
        }
    };
    match op {
        "eq" | "ne" | "gt" | "gte" | "lt" | "lte" | "in" => match arg.as_array() {
            Some(pair) if pair.len() == 2 => pair.iter().for_each(&mut refs),
            _ => problems.push(format!("{at}.{op}: takes a list of two values")),
        },
        "exists" => match arg.as_str().map(reference::parse) {
            Some(Ok(reference::Template::Whole(_))) => {}
            _ => problems.push(format!("{at}.exists: takes one reference, \"${{{{ path }}}}\"")),
        },
        "truthy" => refs(arg),
        "not" => check_into(arg, &format!("{at}.not"), problems),
        "all" | "any" => match arg.as_array() {
            Some(list) if !list.is_empty() => {
                for (i, c) in list.iter().enumerate() {
                    check_into(c, &format!("{at}.{op}[{i}]"), problems);
                }
            }
            _ => problems.push(format!("{at}.{op}: takes a non-empty list of conditions")),
        },
        other => problems.push(format!("{at}: unknown operator {other:?} ({OPERATORS})")),
    }
}

fn single_key(cond: &Value) -> Option<(&str, &Value)> {
    let obj = cond.as_object()?;
    (obj.len() == 1).then(|| obj.iter().next().map(|(k, v)| (k.as_str(), v)))?
}

/// Evaluates a condition (checked with [`check`]) against `scope`.
pub fn eval(cond: &Value, scope: &Scope<'_>) -> Result<bool, String> {
    let (op, arg) = single_key(cond).ok_or_else(|| "not a condition".to_string())?;
    let pair = |arg: &Value| -> Result<(Value, Value), String> {
        match arg.as_array().map(Vec::as_slice) {
            Some([a, b]) => Ok((scope.render(a)?, scope.render(b)?)),
            _ => Err(format!("{op}: takes a list of two values")),
        }
    };
    Ok(match op {
        "eq" => {
            let (a, b) = pair(arg)?;
            a == b
        }
        "ne" => {
            let (a, b) = pair(arg)?;
            a != b
        }
        "gt" | "gte" | "lt" | "lte" => {
            let (a, b) = pair(arg)?;
            match (a.as_f64(), b.as_f64()) {
                (Some(a), Some(b)) => match op {
                    "gt" => a > b,
                    "gte" => a >= b,
                    "lt" => a < b,
                    _ => a <= b,
                },
                _ => false,
            }
        }
        "in" => {
            let (a, list) = pair(arg)?;
            list.as_array().is_some_and(|l| l.contains(&a))
        }
        "exists" => scope.render(arg).is_ok_and(|v| !v.is_null()),
        "truthy" => truthy(&scope.render(arg)?),
        "not" => !eval(arg, scope)?,
        "all" => {
            for c in arg.as_array().into_iter().flatten() {
                if !eval(c, scope)? {
                    return Ok(false);
                }
            }
            true
        }
        "any" => {
            for c in arg.as_array().into_iter().flatten() {
                if eval(c, scope)? {
                    return Ok(true);
                }
            }
            false
        }
        other => return Err(format!("unknown operator {other:?}")),
    })
}

/// JSON truthiness: everything but `null`, `false`, `0`, `""`, `[]` and `{}`.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::reference::StepValue;

    fn eval_with(cond: Value) -> bool {
        let input = json!({"priority": "high", "score": 0.7, "tags": ["a", "b"], "none": null});
        let steps = BTreeMap::from([(
            "s".to_string(),
            StepValue {
                state: "SUCCEEDED".into(),
                output: json!({"ok": true}),
            },
        )]);
        let scope = Scope {
            input: Some(&input),
            steps: Some(&steps),
            ..Default::default()
        };
        assert!(check(&cond, "when").is_empty(), "{:?}", check(&cond, "when"));
        eval(&cond, &scope).unwrap()
    }

    #[test]
    fn operators_evaluate_over_references() {
        assert!(eval_with(json!({"eq": ["${{ input.priority }}", "high"]})));
        assert!(!eval_with(json!({"ne": ["${{ input.priority }}", "high"]})));
        assert!(eval_with(json!({"gt": ["${{ input.score }}", 0.5]})));
        assert!(!eval_with(json!({"lt": ["${{ input.score }}", 0.5]})));
        assert!(eval_with(json!({"gte": [1, 1]})) && eval_with(json!({"lte": [1, 2]})));
        assert!(!eval_with(json!({"gt": ["a", 1]})), "non-numbers do not compare");
        assert!(eval_with(json!({"in": ["a", "${{ input.tags }}"]})));
        assert!(eval_with(json!({"exists": "${{ steps.s.output.ok }}"})));
        assert!(!eval_with(json!({"exists": "${{ input.none }}"})));
        assert!(!eval_with(json!({"exists": "${{ input.missing }}"})));
        assert!(eval_with(json!({"truthy": "${{ steps.s.output.ok }}"})));
        assert!(eval_with(json!({"not": {"truthy": "${{ input.none }}"}})));
        assert!(eval_with(
            json!({"all": [{"eq": [1, 1]}, {"any": [{"eq": [1, 2]}, {"eq": [2, 2]}]}]})
        ));
        assert!(!eval_with(json!({"all": [{"eq": [1, 1]}, {"eq": [1, 2]}]})));
    }

    #[test]
    fn malformed_conditions_are_named() {
        let problems = check(
            &json!({"all": [{"eq": [1]}, {"wat": 1}, {"exists": "plain"}, {"not": {}}, {"in": ["${{ nope }}", []]}]}),
            "steps.x.when",
        );
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(problems[0].contains("steps.x.when.all[0].eq: takes a list of two values"));
        assert!(problems[1].contains("unknown operator \"wat\""));
        assert!(problems[2].contains("exists: takes one reference"));
        assert!(problems[3].contains("steps.x.when.all[3].not"));
        assert!(problems[4].contains("nope"));
        assert!(!check(&json!([1, 2]), "w").is_empty());
    }
}
