//! The tool calls of a reply: read whole from a non-streamed `choices[0].message.tool_calls`,
//! or assembled from the `choices[0].delta.tool_calls[]` entries of a stream, bounded in number
//! and in the size of their arguments.
//!
//! Streamed, as OpenAI sends them and its own clients put them together (openai-python
//! `src/openai/lib/streaming/_deltas.py`, `accumulate_delta`, and
//! `src/openai/lib/streaming/chat/_completions.py`, `ChoiceEventState.get_done_events`, read
//! at commit e43b422): each entry names the call it belongs to by `index`; the first entry of a
//! call carries its `id`, `type` and `function.name` (and usually `arguments: ""`), the next
//! ones only `function.arguments` fragments, which are concatenated in order. A call is
//! complete when an entry for another index arrives or when the choice gets its
//! `finish_reason`. Where this differs from openai-python, for servers that stray from the
//! protocol: an `id` or `name` repeated in later entries is kept once (openai-python would
//! concatenate it), an entry without `index` belongs to the call with its `id` (a new call for
//! a new id, else the current call) instead of being an error, `arguments` sent as a JSON
//! object rather than text is taken as its JSON text, and a call that never got an id, or got
//! the id of an earlier call of the reply, is given `call_<k>` (its position) so a `tool`
//! message can answer it, and it alone.

use serde_json::Value;

use super::chat::{FunctionCall, MAX_TOOL_CALLS, ToolCall, ToolKind};

/// A reply's tool calls so far.
#[derive(Debug)]
pub(super) struct ToolCalls {
    /// The provider's `index` of each call, the call so far, and whether it is complete.
    calls: Vec<(u64, ToolCall, bool)>,
    /// The index entries are arriving for.
    current: Option<u64>,
    /// Bytes of arguments so far, at most `max_bytes`.
    arg_bytes: usize,
    max_bytes: usize,
}

impl ToolCalls {
    /// No calls yet; their arguments may total `max_bytes`.
    pub(super) fn new(max_bytes: usize) -> Self {
        ToolCalls {
            calls: Vec::new(),
            current: None,
            arg_bytes: 0,
            max_bytes,
        }
    }

    /// The calls of a non-streamed reply's message (`tool_calls` absent or null: none).
    pub(super) fn whole(tool_calls: &Value, max_bytes: usize) -> Result<Vec<ToolCall>, String> {
        let mut calls = ToolCalls::new(max_bytes);
        match tool_calls {
            Value::Null => {}
            Value::Array(items) => {
                for (k, item) in items.iter().enumerate() {
                    let mut entry = item.clone();
                    if entry.is_object() {
                        entry["index"] = Value::from(k);
                    }
                    calls.delta(&entry)?;
                }
            }
            other => return Err(format!("the reply's tool_calls is not an array: {other}")),
        }
        calls.into_calls()
    }

    /// Whether any call has begun.
    pub(super) fn started(&self) -> bool {
        !self.calls.is_empty()
    }

    /// Takes one entry of a chunk's `delta.tool_calls`. Returns the name of the call it shows
    /// complete (the previous one, when the entry starts another).
    pub(super) fn delta(&mut self, entry: &Value) -> Result<Option<String>, String> {
        let id = entry["id"].as_str().filter(|id| !id.is_empty());
        let index = match entry["index"].as_u64() {
            Some(i) => i,
            None => match id.and_then(|id| self.calls.iter().find(|c| c.1.id == id)) {
                Some(c) => c.0,
                None if id.is_some() || self.current.is_none() => {
                    self.calls.iter().map(|c| c.0 + 1).max().unwrap_or(0)
                }
                None => self.current.unwrap_or(0),
            },
        };
        let mut completed = None;
        if self.current != Some(index) {
            completed = self.finish();
            self.current = Some(index);
        }
        let at = match self.calls.iter().position(|c| c.0 == index) {
            Some(at) => at,
            None if self.calls.len() == MAX_TOOL_CALLS => {
                return Err(format!(
                    "the reply asks for more than {MAX_TOOL_CALLS} tool calls"
                ));
            }
            None => {
                let empty = ToolCall {
                    id: String::new(),
                    kind: ToolKind::Function,
                    function: FunctionCall {
                        name: String::new(),
                        arguments: String::new(),
                    },
                };
                self.calls.push((index, empty, false));
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[at].1;
        if call.id.is_empty()
            && let Some(id) = id
        {
            call.id = id.to_string();
        }
        let f = &entry["function"];
        if call.function.name.is_empty()
            && let Some(name) = f["name"].as_str()
        {
            call.function.name = name.to_string();
        }
        let fragment = match &f["arguments"] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        };
        if let Some(fragment) = fragment {
            self.arg_bytes += fragment.len();
            if self.arg_bytes > self.max_bytes {
                return Err(format!(
                    "the tool calls' arguments exceed the reply-size limit of {} bytes",
                    self.max_bytes
                ));
            }
            call.function.arguments.push_str(&fragment);
        }
        Ok(completed)
    }

    /// The current call is complete (its choice finished, or the stream ended): its name,
    /// the first time only.
    pub(super) fn finish(&mut self) -> Option<String> {
        let current = self.current?;
        let call = self.calls.iter_mut().find(|c| c.0 == current)?;
        if call.2 {
            return None;
        }
        call.2 = true;
        Some(call.1.function.name.clone())
    }

    /// The calls, in the order they began, each with an id of its own; a call without a
    /// function name is an error.
    pub(super) fn into_calls(self) -> Result<Vec<ToolCall>, String> {
        let mut out: Vec<ToolCall> = Vec::with_capacity(self.calls.len());
        for (k, (_, mut call, _)) in self.calls.into_iter().enumerate() {
            if call.function.name.is_empty() {
                return Err(format!("tool call {k} of the reply has no function name"));
            }
            let taken = |id: &str| out.iter().any(|c| c.id == id);
            if call.id.is_empty() || taken(&call.id) {
                let mut n = k;
                while taken(&format!("call_{n}")) {
                    n += MAX_TOOL_CALLS;
                }
                call.id = format!("call_{n}");
            }
            out.push(call);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(calls: &[ToolCall]) -> Vec<(&str, &str, &str)> {
        calls
            .iter()
            .map(|c| {
                (
                    c.id.as_str(),
                    c.function.name.as_str(),
                    c.function.arguments.as_str(),
                )
            })
            .collect()
    }

    /// The deltas of OpenAI's documented parallel-call stream, fragment by fragment.
    #[test]
    fn deltas_are_assembled_by_index_and_complete_when_the_next_call_starts() {
        let mut t = ToolCalls::new(1 << 20);
        let mut done = Vec::new();
        for d in [
            json!({"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}),
            json!({"index": 0, "function": {"arguments": "{\"lo"}}),
            json!({"index": 0, "function": {"arguments": "cation\": \"Paris\"}"}}),
            json!({"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}),
            json!({"index": 1, "function": {"arguments": "{}"}}),
        ] {
            done.extend(t.delta(&d).unwrap());
        }
        assert_eq!(done, ["get_weather"]);
        done.extend(t.finish());
        assert_eq!(done, ["get_weather", "get_time"]);
        assert_eq!(t.finish(), None, "a call completes once");
        assert_eq!(
            names(&t.into_calls().unwrap()),
            [
                ("call_a", "get_weather", "{\"location\": \"Paris\"}"),
                ("call_b", "get_time", "{}")
            ]
        );
    }

    #[test]
    fn servers_that_stray_from_the_protocol_are_read_too() {
        // Repeated id and name, no index (each call whole, one per chunk), object arguments.
        let mut t = ToolCalls::new(1 << 20);
        for d in [
            json!({"id": "x", "function": {"name": "f", "arguments": "{\"a\":"}}),
            json!({"id": "x", "function": {"name": "f", "arguments": "1}"}}),
            json!({"id": "y", "function": {"name": "g", "arguments": {"b": 2}}}),
            json!({"function": {"arguments": ""}}),
        ] {
            t.delta(&d).unwrap();
        }
        assert_eq!(
            names(&t.into_calls().unwrap()),
            [("x", "f", "{\"a\":1}"), ("y", "g", "{\"b\":2}")]
        );
        // A call without an id, or with another call's, gets one of its own; a call without a
        // name is refused.
        let calls = ToolCalls::whole(
            &json!([
                {"function": {"name": "f", "arguments": "{}"}},
                {"id": "call_0", "function": {"name": "g", "arguments": "{}"}},
                {"id": "call_0", "function": {"name": "h", "arguments": "{}"}},
            ]),
            100,
        )
        .unwrap();
        let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["call_0", "call_1", "call_2"]);
        let err = ToolCalls::whole(&json!([{"id": "a", "function": {"arguments": "{}"}}]), 100).unwrap_err();
        assert!(err.contains("no function name"), "{err}");
    }

    #[test]
    fn calls_and_their_arguments_are_bounded() {
        let many: Vec<Value> = (0..=MAX_TOOL_CALLS)
            .map(|k| json!({"id": format!("c{k}"), "type": "function", "function": {"name": "f", "arguments": "{}"}}))
            .collect();
        let err = ToolCalls::whole(&Value::Array(many.clone()), 1 << 20).unwrap_err();
        assert_eq!(
            err,
            format!("the reply asks for more than {MAX_TOOL_CALLS} tool calls")
        );
        assert!(ToolCalls::whole(&Value::Array(many[..MAX_TOOL_CALLS].to_vec()), 1 << 20).is_ok());
        let mut t = ToolCalls::new(10);
        t.delta(&json!({"index": 0, "id": "a", "function": {"name": "f", "arguments": "{\"a\":"}}))
            .unwrap();
        let err = t
            .delta(&json!({"index": 0, "function": {"arguments": "\"123456\"}"}}))
            .unwrap_err();
        assert_eq!(
            err,
            "the tool calls' arguments exceed the reply-size limit of 10 bytes"
        );
    }
}
