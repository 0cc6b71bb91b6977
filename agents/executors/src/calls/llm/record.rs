//! What one model call leaves for its record (tier 0's `llm_calls`): the usage report with the
//! provider, the model asked for, the fallbacks taken, timings, finish reason, cache hit and,
//! when the node keeps them, the prompt and reply as text (bounded here, redacted in tier 0).

use std::time::Instant;

use cadre_agents::Usage;
use cadre_agents::executor::{Fallback, MAX_CAPTURE_BYTES, cut_text};

use super::chat::Chat;
use super::wire::Reply;

/// One model tried for a task, and why it did not answer (the result's `failed_attempts`, the
/// record's fallbacks).
#[derive(Clone, Debug, serde::Serialize)]
pub(super) struct Attempt {
    pub model: String,
    pub provider: String,
    pub error: String,
}

/// A call (or a chain of calls ending in one answer) being timed.
pub(super) struct CallClock {
    /// When it started, Unix milliseconds.
    pub started_at_ms: i64,
    /// The same moment, for durations.
    pub started: Instant,
}

impl CallClock {
    /// Starts now.
    pub fn start() -> Self {
        CallClock {
            started_at_ms: cadre_proto::clock::now_ms(),
            started: Instant::now(),
        }
    }
}

/// What the executor knows about one answered call, for [`usage`].
pub(super) struct Answered<'a> {
    /// The model the task asked for.
    pub requested: &'a str,
    /// The model that answered.
    pub served: &'a str,
    /// Its provider.
    pub provider: &'a str,
    /// The models that did not answer before it.
    pub attempts: &'a [Attempt],
    /// When the call started.
    pub clock: &'a CallClock,
    /// What was asked.
    pub chat: &'a Chat,
    /// What came back.
    pub reply: &'a Reply,
}

/// The usage report of an answered call; prompt and reply as text when `capture_bytes` > 0,
/// each at most that many bytes (and at most [`MAX_CAPTURE_BYTES`]).
pub(super) fn usage(a: Answered<'_>, capture_bytes: usize) -> Usage {
    let bound = capture_bytes.min(MAX_CAPTURE_BYTES);
    let first_token_ms = a
        .reply
        .first_token
        .map(|t| t.saturating_duration_since(a.clock.started).as_millis() as u64);
    Usage {
        model: a.served.to_string(),
        tokens_in: a.reply.tokens_in,
        tokens_out: a.reply.tokens_out,
        provider: a.provider.to_string(),
        model_requested: a.requested.to_string(),
        fallbacks: a
            .attempts
            .iter()
            .map(|f| Fallback {
                provider: f.provider.clone(),
                model: f.model.clone(),
                error: cut_text(&f.error, 300).to_string(),
            })
            .collect(),
        started_at_ms: a.clock.started_at_ms,
        first_token_ms,
        total_ms: a.clock.started.elapsed().as_millis() as u64,
        finish_reason: a.reply.finish_reason.clone().unwrap_or_default(),
        prompt: (bound > 0).then(|| prompt_text(a.chat, bound)),
        reply: (bound > 0).then(|| reply_text(a.reply, bound)),
        ..Usage::default()
    }
}

/// The usage report of a reply served from the response cache: no tokens, no provider call.
pub(super) fn cache_hit(requested: &str, cached: &serde_json::Value, clock: &CallClock) -> Usage {
    let text = |k: &str| cached[k].as_str().unwrap_or_default().to_string();
    Usage {
        model: match text("model") {
            m if m.is_empty() => requested.to_string(),
            m => m,
        },
        provider: text("provider"),
        model_requested: requested.to_string(),
        started_at_ms: clock.started_at_ms,
        total_ms: clock.started.elapsed().as_millis() as u64,
        finish_reason: text("finish_reason"),
        cache_hit: true,
        ..Usage::default()
    }
}

/// The chat as text: one `role: text` line per message (tool calls as `name(arguments)`),
/// at most `max` bytes.
fn prompt_text(chat: &Chat, max: usize) -> String {
    let mut out = String::new();
    for m in &chat.messages {
        if out.len() >= max {
            break;
        }
        let role = serde_json::to_value(m.role)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        out.push_str(&role);
        out.push_str(": ");
        out.push_str(m.content_text());
        for c in m.tool_calls.iter().flatten() {
            out.push_str(&format!(" {}({})", c.function.name, c.function.arguments));
        }
        out.push('\n');
    }
    cut_text(&out, max).to_string()
}

/// The reply as text: its content, then the tool calls it asked for, at most `max` bytes.
fn reply_text(reply: &Reply, max: usize) -> String {
    let mut out = cut_text(&reply.content, max).to_string();
    for c in &reply.tool_calls {
        if out.len() >= max {
            break;
        }
        out.push_str(&format!("\n{}({})", c.function.name, c.function.arguments));
    }
    cut_text(&out, max).to_string()
}
