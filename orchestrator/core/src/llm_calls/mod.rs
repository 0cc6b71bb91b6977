//! LLM call records (`[llm_calls]`): what tier 0 keeps of each model call, and who may read it.
//!
//! Every usage report ([`cadre_agents::Usage`], from the llm executor through the supervisors and
//! the bus) carries its call's details; the writer stores one `llm_calls` row with the usage row
//! (`cadre_store::llm_calls`). Before that, [`CallCapture::apply`] decides here what of the
//! prompt and reply is kept: nothing unless `capture_prompts`, else each redacted with the
//! configured patterns and cut to `capture_max_bytes`; the other text fields are bounded too (a
//! report may come from another node).
//!
//! Reading: [`list`], `Node::list_llm_calls` (AdminService.ListLlmCalls, `GET /v1/llm-calls`,
//! `cadre calls list`), with the usage permission and its tenant scope: a tenant sees only its
//! own calls, a commander every tenant's or the one it names.

pub mod list;

use cadre_agents::Usage;
use cadre_agents::executor::{MAX_CAPTURE_BYTES, cut_text};
use regex::Regex;
use serde::{Deserialize, Serialize};

/// Most redaction patterns.
pub const MAX_PATTERNS: usize = 64;
/// Longest redaction pattern, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;
/// What a redacted match is replaced with.
pub const REDACTED: &str = "[REDACTED]";
/// Most fallbacks kept per call, and the longest text of each field of one.
const MAX_FALLBACKS: usize = 16;
const MAX_FALLBACK_ERROR_BYTES: usize = 300;
/// Longest name (provider, model, finish reason, trace id) kept, in bytes.
const MAX_NAME_BYTES: usize = 256;

/// `[llm_calls]`: whether prompts and replies are kept with each call's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmCallsConfig {
    /// Keep each call's prompt and reply (as text) with its record. Off by default: records
    /// then hold everything but the text.
    pub capture_prompts: bool,
    /// Most bytes of a prompt, and of a reply, kept (1 to 1048576); cut after redaction.
    pub capture_max_bytes: usize,
    /// Regular expressions (Rust `regex` syntax) whose matches in a kept prompt or reply are
    /// replaced with `[REDACTED]` before it is stored. At most 64, each at most 1024 bytes.
    pub redact: Vec<String>,
}

impl Default for LlmCallsConfig {
    fn default() -> Self {
        LlmCallsConfig {
            capture_prompts: false,
            capture_max_bytes: 16_384,
            redact: Vec::new(),
        }
    }
}

impl LlmCallsConfig {
    /// What is wrong with the section, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if !(1..=MAX_CAPTURE_BYTES).contains(&self.capture_max_bytes) {
            errs.push(format!(
                "llm_calls.capture_max_bytes: must be 1 to {MAX_CAPTURE_BYTES}"
            ));
        }
        if self.redact.len() > MAX_PATTERNS {
            errs.push(format!("llm_calls.redact: at most {MAX_PATTERNS} patterns"));
        }
        for (i, p) in self.redact.iter().enumerate() {
            if let Err(e) = compile(p) {
                errs.push(format!("llm_calls.redact[{i}]: {e}"));
            }
        }
        errs
    }

    /// Bytes of each prompt and reply the llm executor sends with its usage report: 0 when
    /// prompts are not kept, else twice the kept bound plus 4 KiB (at most
    /// [`MAX_CAPTURE_BYTES`]), so a secret across the kept bound is still whole when it is
    /// redacted here.
    pub fn executor_capture_bytes(&self) -> usize {
        if self.capture_prompts {
            (self.capture_max_bytes.saturating_mul(2) + 4096).min(MAX_CAPTURE_BYTES)
        } else {
            0
        }
    }
}

/// One redaction pattern, compiled with a size limit.
fn compile(p: &str) -> std::result::Result<Regex, String> {
    if p.is_empty() || p.len() > MAX_PATTERN_BYTES {
        return Err(format!("a pattern must be 1 to {MAX_PATTERN_BYTES} bytes"));
    }
    let re = regex::RegexBuilder::new(p)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("not a regular expression: {}", e.to_string().replace('\n', " ")))?;
    if re.is_match("") {
        return Err(format!("{p:?} matches the empty string"));
    }
    Ok(re)
}

/// `[llm_calls]` compiled: what the writer applies to each usage report before it is stored.
#[derive(Clone, Debug, Default)]
pub struct CallCapture {
    /// Keep prompts and replies.
    capture: bool,
    /// Their bound, in bytes.
    max_bytes: usize,
    /// The redaction patterns.
    redact: Vec<Regex>,
}

impl CallCapture {
    /// The policy of `config` (an invalid pattern is an error naming it; the config check
    /// reports it before this is built).
    pub fn new(config: &LlmCallsConfig) -> std::result::Result<Self, String> {
        let redact = config
            .redact
            .iter()
            .enumerate()
            .map(|(i, p)| compile(p).map_err(|e| format!("llm_calls.redact[{i}]: {e}")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(CallCapture {
            capture: config.capture_prompts,
            max_bytes: config.capture_max_bytes.min(MAX_CAPTURE_BYTES),
            redact,
        })
    }

    /// Makes `usage` what is stored: prompt and reply dropped, or redacted and cut; names,
    /// fallbacks and their errors bounded.
    pub fn apply(&self, usage: &mut Usage) {
        for text in [&mut usage.prompt, &mut usage.reply] {
            *text = match text.take() {
                Some(t) if self.capture => Some(self.redacted(&t)),
                _ => None,
            };
        }
        for name in [
            &mut usage.provider,
            &mut usage.model_requested,
            &mut usage.finish_reason,
            &mut usage.trace_id,
        ] {
            bound(name, MAX_NAME_BYTES);
        }
        usage.fallbacks.truncate(MAX_FALLBACKS);
        for f in &mut usage.fallbacks {
            bound(&mut f.provider, MAX_NAME_BYTES);
            bound(&mut f.model, MAX_NAME_BYTES);
            bound(&mut f.error, MAX_FALLBACK_ERROR_BYTES);
        }
    }

    /// `text` with every pattern's matches replaced, then cut to the bound.
    fn redacted(&self, text: &str) -> String {
        let mut out = text.to_string();
        for re in &self.redact {
            if let std::borrow::Cow::Owned(s) = re.replace_all(&out, REDACTED) {
                out = s;
            }
        }
        cut_text(&out, self.max_bytes).to_string()
    }
}

/// Cuts `s` to at most `max` bytes in place.
fn bound(s: &mut String, max: usize) {
    let end = cut_text(s, max).len();
    s.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(patterns: &[&str], max: usize) -> LlmCallsConfig {
        LlmCallsConfig {
            capture_prompts: true,
            capture_max_bytes: max,
            redact: patterns.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(LlmCallsConfig::default().problems().is_empty());
        let errs = config(&["sk-[a-z", "", "a*"], 0).problems();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[0].starts_with("llm_calls.capture_max_bytes"));
        assert!(errs[1].starts_with("llm_calls.redact[0]: not a regular expression"));
        assert!(errs[2].starts_with("llm_calls.redact[1]"));
        assert!(errs[3].contains("matches the empty string"));
        let many = vec!["x"; MAX_PATTERNS + 1];
        assert!(config(&many, 10).problems()[0].contains("at most 64"));
        assert!(CallCapture::new(&config(&["("], 10)).is_err());
    }

    #[test]
    fn kept_text_is_redacted_then_cut_and_dropped_when_not_kept() {
        let c = CallCapture::new(&config(&[r"sk-[A-Za-z0-9]+", r"\d{3}-\d{4}"], 24)).unwrap();
        let mut u = Usage {
            prompt: Some("key sk-abcDEF123 and 555-1234 and more text after".into()),
            reply: Some("héhé".repeat(10)),
            finish_reason: "x".repeat(1000),
            ..Usage::default()
        };
        c.apply(&mut u);
        assert_eq!(u.prompt.as_deref(), Some("key [REDACTED] and [REDA"));
        let reply = u.reply.unwrap();
        assert!(reply.len() <= 24 && reply.starts_with("héhé"));
        assert_eq!(u.finish_reason.len(), MAX_NAME_BYTES);

        let off = CallCapture::new(&LlmCallsConfig::default()).unwrap();
        let mut u = Usage {
            prompt: Some("secret".into()),
            reply: Some("secret".into()),
            ..Usage::default()
        };
        off.apply(&mut u);
        assert_eq!((u.prompt, u.reply), (None, None));
        assert_eq!(LlmCallsConfig::default().executor_capture_bytes(), 0);
        assert_eq!(config(&[], 100).executor_capture_bytes(), 4296);
    }
}
