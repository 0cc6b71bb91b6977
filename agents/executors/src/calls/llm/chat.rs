//! What a chat says: its messages, each with the role of who wrote it, and what one chat asks of
//! a model once its params are checked (the gateway builds it, the wire format sends it).

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
}

/// One chat message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// What it says.
    pub content: String,
}

/// What one chat asks, after params are checked.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Chat {
    pub(super) messages: Vec<Message>,
    pub(super) max_tokens: Option<u32>,
    pub(super) temperature: Option<f64>,
    pub(super) stream: bool,
    pub(super) response_schema: Option<Value>,
}
