//! What a chat says: its messages, each with the role of who wrote it (the tool calls a model
//! asked for and the tool results answering them included), and what one chat asks of a model
//! once its params are checked (the gateway builds it, the wire format sends it).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Most messages one chat may carry.
pub const MAX_MESSAGES: usize = 256;
/// Most tool calls one message (or one reply) may carry.
pub const MAX_TOOL_CALLS: usize = 64;

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The asker.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call the model asked for.
    Tool,
}

/// The kind of a tool (OpenAI's `type`): functions only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolKind {
    /// A function the model calls with JSON arguments.
    #[default]
    Function,
}

/// A function a model asked to call: its name and its arguments, the JSON text the model wrote
/// (not necessarily valid JSON: it is passed on as it came).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// Its arguments as the model wrote them (a JSON object, as text).
    pub arguments: String,
}

/// A tool call, in OpenAI's shape: `{"id", "type": "function", "function": {"name",
/// "arguments"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// The id a `tool` message answers with its `tool_call_id`.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: ToolKind,
    /// What to call.
    pub function: FunctionCall,
}

/// One chat message, in OpenAI's shape, forwarded to the provider as given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// What it says: `None` when the message has no `content`, `Some(None)` when it is `null`
    /// (both only for an assistant message with `tool_calls`).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub content: Option<Option<String>>,
    /// The tools an assistant message asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// A member that is present, `null` or not: `Some(None)` for `null` (absent is `None`, by
/// `default`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl Message {
    /// A message of text.
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: Some(Some(content.into())),
            tool_calls: None,
            tool_call_id: None,
        }
    }

    /// Its text ("" when it has none).
    pub fn content_text(&self) -> &str {
        self.content
            .as_ref()
            .and_then(Option::as_deref)
            .unwrap_or_default()
    }

    /// Characters of its text and of its tool calls' arguments (for estimating tokens).
    pub(super) fn chars(&self) -> usize {
        self.content_text().chars().count()
            + self
                .tool_calls
                .iter()
                .flatten()
                .map(|c| c.function.arguments.chars().count())
                .sum::<usize>()
    }
}

/// Checks `messages` (the task's own, numbered as it gave them) as OpenAI would: each role's
/// fields, and every `tool` message answering a call of the assistant message before it (with
/// only tool messages in between).
pub(super) fn check_messages(messages: &[Message]) -> Result<(), String> {
    // The calls of the last assistant message that made some, while tool messages follow it.
    let mut open: Option<(usize, Vec<&str>)> = None;
    for (i, m) in messages.iter().enumerate() {
        let at = format!("`messages[{i}]`");
        let text = matches!(&m.content, Some(Some(_)));
        if m.role != Role::Assistant && m.tool_calls.is_some() {
            return Err(format!("{at}: only an assistant message has `tool_calls`"));
        }
        if m.role != Role::Tool && m.tool_call_id.is_some() {
            return Err(format!("{at}: only a tool message has `tool_call_id`"));
        }
        if m.role != Role::Tool {
            open = None;
        }
        match m.role {
            Role::System | Role::User if !text => {
                let role = if m.role == Role::System { "system" } else { "user" };
                return Err(format!("{at}: a {role} message needs a string `content`"));
            }
            Role::System | Role::User => {}
            Role::Assistant => match &m.tool_calls {
                None if !text => {
                    return Err(format!(
                        "{at}: an assistant message needs `content` or `tool_calls`"
                    ));
                }
                None => {}
                Some(calls) if calls.is_empty() || calls.len() > MAX_TOOL_CALLS => {
                    return Err(format!(
                        "{at}: `tool_calls` must hold 1 to {MAX_TOOL_CALLS} calls (leave it out for none)"
                    ));
                }
                Some(calls) => {
                    let mut ids: Vec<&str> = Vec::new();
                    for (k, c) in calls.iter().enumerate() {
                        if c.id.is_empty() || ids.contains(&c.id.as_str()) {
                            return Err(format!(
                                "{at}: `tool_calls[{k}].id` must be set and differ from the other calls' ids"
                            ));
                        }
                        if c.function.name.is_empty() {
                            return Err(format!("{at}: `tool_calls[{k}].function.name` is empty"));
                        }
                        ids.push(&c.id);
                    }
                    open = Some((i, ids));
                }
            },
            Role::Tool => {
                let Some(id) = m.tool_call_id.as_deref().filter(|id| !id.is_empty()) else {
                    return Err(format!(
                        "{at}: a tool message needs `tool_call_id`, the id of the call it answers"
                    ));
                };
                if !text {
                    return Err(format!(
                        "{at}: a tool message needs a string `content` (the result)"
                    ));
                }
                match &open {
                    None => {
                        return Err(format!(
                            "{at}: a tool message must follow an assistant message with `tool_calls` \
                             (or another tool message)"
                        ));
                    }
                    Some((j, ids)) if !ids.contains(&id) => {
                        return Err(format!(
                            "{at}: `tool_call_id` {id:?} answers none of the tool calls of `messages[{j}]`"
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
    }
    Ok(())
}

/// What one chat asks, after params are checked.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Chat {
    pub(super) messages: Vec<Message>,
    pub(super) max_tokens: Option<u32>,
    pub(super) temperature: Option<f64>,
    pub(super) stream: bool,
    pub(super) response_schema: Option<Value>,
    /// The tools offered, as the task gave them (OpenAI's `tools`); empty for none.
    pub(super) tools: Vec<Value>,
    /// OpenAI's `tool_choice`, as the task gave it.
    pub(super) tool_choice: Option<Value>,
}
