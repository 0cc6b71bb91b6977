//! The `[executors.llm]` config section: providers (where to send requests) and models (what
//! tasks name, with their fallback chains).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most models a fallback chain may visit, the first included.
pub const MAX_CHAIN: usize = 8;

/// Config section for the chat gateway (`llm`): OpenAI-compatible and Anthropic providers.
///
/// ```toml
/// [executors.llm]
/// default_model = "local"
///
/// [executors.llm.providers.ollama]
/// base_url = "http://127.0.0.1:11434/v1"
///
/// [executors.llm.providers.openai]
/// base_url = "https://api.openai.com/v1"
/// api_key_env = "OPENAI_API_KEY"
///
/// [executors.llm.providers.anthropic]
/// kind = "anthropic"
/// base_url = "https://api.anthropic.com"
/// api_key_env = "ANTHROPIC_API_KEY"
///
/// [executors.llm.models.local]
/// provider = "ollama"
/// model = "llama3.2"
/// fallback = ["mini"]
///
/// [executors.llm.models.mini]
/// provider = "openai"
/// model = "gpt-4o-mini"
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// The model a task gets when its params name none ("" = tasks must name one).
    pub default_model: String,
    /// Where requests go, by provider name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// The model names tasks use (and the budget price table prices), by name.
    pub models: BTreeMap<String, ModelConfig>,
    /// Replies kept by the response cache (0 turns it off).
    pub cache_entries: usize,
    /// How long a cached reply stays valid.
    pub cache_ttl_secs: u64,
    /// The longest `Retry-After` the gateway waits out before giving up on a rate-limited chain
    /// (the task then fails as retryable and its retry policy takes over).
    pub max_retry_after_ms: u64,
    /// Largest reply body read from a provider (streamed or not).
    pub max_response_bytes: usize,
    /// Bytes of each call's prompt and reply sent with its usage report for the call record
    /// (0: none). Not read from this section: the node sets it from `[llm_calls]`.
    #[serde(skip)]
    pub capture_bytes: usize,
}

/// The wire format a provider speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI's chat completions (`POST <base_url>/chat/completions`): OpenAI, Ollama,
    /// llama.cpp server, vLLM, LiteLLM, ...
    #[default]
    Openai,
    /// Anthropic's Messages API (`POST <base_url>/v1/messages`).
    Anthropic,
}

/// One endpoint: OpenAI-compatible (OpenAI, Ollama, llama.cpp server, vLLM, ...) or
/// Anthropic's Messages API (`kind = "anthropic"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The wire format: `openai` (the default) or `anthropic`.
    #[serde(default)]
    pub kind: ProviderKind,
    /// `openai`: the base URL up to and including the version, e.g.
    /// `http://127.0.0.1:11434/v1`; requests go to `<base_url>/chat/completions`.
    /// `anthropic`: the base URL without the version, e.g. `https://api.anthropic.com`;
    /// requests go to `<base_url>/v1/messages`.
    pub base_url: String,
    /// Environment variable holding the API key ("" = none), sent as `Authorization: Bearer`
    /// (`openai`) or `x-api-key` (`anthropic`).
    #[serde(default)]
    pub api_key_env: String,
    /// `anthropic` only: the `max_tokens` sent when a task gives none (Anthropic requires it).
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u32,
    /// Time allowed to connect.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time allowed for the reply to start, and between two chunks of a streamed reply.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// A model as tasks name it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The provider that serves it.
    pub provider: String,
    /// The provider's id for it (`gpt-4o-mini`, `llama3.2`, ...).
    pub model: String,
    /// Models tried next, in order, when this one is rate-limited (429), failing (5xx),
    /// unreachable or too slow.
    #[serde(default)]
    pub fallback: Vec<String>,
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

fn default_max_tokens() -> u32 {
    4_096
}

fn default_timeout_ms() -> u64 {
    60_000
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            default_model: String::new(),
            providers: BTreeMap::new(),
            models: BTreeMap::new(),
            cache_entries: 256,
            cache_ttl_secs: 3_600,
            max_retry_after_ms: 30_000,
            max_response_bytes: 4 << 20,
            capture_bytes: 0,
        }
    }
}

impl ProviderConfig {
    /// The URL requests go to: `<base_url>/chat/completions` or `<base_url>/v1/messages`.
    pub fn endpoint(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        match self.kind {
            ProviderKind::Openai => format!("{base}/chat/completions"),
            ProviderKind::Anthropic => format!("{base}/v1/messages"),
        }
    }
}

impl LlmConfig {
    /// Problems with this section, each prefixed with its path under `executors`.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if !self.default_model.is_empty() && !self.models.contains_key(&self.default_model) {
            errs.push(format!(
                "llm.default_model: {:?} is not in llm.models",
                self.default_model
            ));
        }
        for (name, p) in &self.providers {
            match reqwest::Url::parse(&p.base_url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => errs.push(format!(
                    "llm.providers.{name}.base_url: {:?} is not an http(s) URL",
                    p.base_url
                )),
            }
            if !p.api_key_env.is_empty()
                && !p
                    .api_key_env
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                errs.push(format!(
                    "llm.providers.{name}.api_key_env: {:?} is not an environment variable name",
                    p.api_key_env
                ));
            }
            if p.kind == ProviderKind::Anthropic
                && reqwest::Url::parse(&p.base_url)
                    .is_ok_and(|u| u.path().trim_end_matches('/').ends_with("/v1"))
            {
                errs.push(format!(
                    "llm.providers.{name}.base_url: {:?} ends in /v1; an anthropic provider's base \
                     URL has no version (requests go to <base_url>/v1/messages)",
                    p.base_url
                ));
            }
            if !(1..=1_000_000).contains(&p.default_max_tokens) {
                errs.push(format!(
                    "llm.providers.{name}.default_max_tokens: must be 1 to 1000000, got {}",
                    p.default_max_tokens
                ));
            }
            if p.timeout_ms == 0 || p.connect_timeout_ms == 0 {
                errs.push(format!("llm.providers.{name}: timeouts must be above 0"));
            }
        }
        for (name, m) in &self.models {
            if !self.providers.contains_key(&m.provider) {
                errs.push(format!(
                    "llm.models.{name}.provider: {:?} is not in llm.providers",
                    m.provider
                ));
            }
            if m.model.is_empty() {
                errs.push(format!("llm.models.{name}.model: must not be empty"));
            }
            for f in &m.fallback {
                if !self.models.contains_key(f) {
                    errs.push(format!("llm.models.{name}.fallback: {f:?} is not in llm.models"));
                }
            }
            if self.chain(name).len() > MAX_CHAIN {
                errs.push(format!(
                    "llm.models.{name}.fallback: the chain visits more than {MAX_CHAIN} models"
                ));
            }
        }
        if self.max_response_bytes < 1024 || self.max_response_bytes > 64 << 20 {
            errs.push("llm.max_response_bytes: must be between 1 KiB and 64 MiB".into());
        }
        if self.cache_entries > 100_000 {
            errs.push("llm.cache_entries: at most 100000".into());
        }
        errs
    }

    /// The models tried for `name`, in order: itself, then its fallbacks and theirs
    /// (depth first), each once, unknown names skipped.
    pub fn chain(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut stack = vec![name.to_string()];
        while let Some(n) = stack.pop() {
            if out.contains(&n) || out.len() > MAX_CHAIN {
                continue;
            }
            let Some(m) = self.models.get(&n) else {
                continue;
            };
            out.push(n);
            stack.extend(m.fallback.iter().rev().cloned());
        }
        out
    }
}
