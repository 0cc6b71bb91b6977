//! `llm`: the gateway to chat models: OpenAI-compatible chat-completions providers (OpenAI,
//! Ollama, llama.cpp server, vLLM, ...) and Anthropic's Messages API (a provider of `kind =
//! "anthropic"`, translated both ways by `anthropic`), mixed freely in fallback chains.
//!
//! A task names a model (`[executors.llm.models]`, the same names the budget price table
//! uses); the gateway sends the chat to that model's provider and, when the provider is
//! rate-limited (429), failing (5xx), unreachable or too slow, to the model's fallbacks in
//! order. A 429's `Retry-After` (seconds or an HTTP-date, at most an hour) puts the provider
//! aside for that long, for every task; when the whole chain is rate-limited the gateway waits
//! for the first provider to come back, up to `max_retry_after_ms`, and otherwise ends the
//! attempt as [`ExecError::RateLimited`]: the supervisor puts the task back in the queue without
//! counting the attempt and holds the task type until the first provider comes back.
//!
//! Streamed replies (the default) become progress events as tokens arrive. Token usage is
//! recorded on the task (budgets price it); a reply can be cached by request; with a
//! `response_schema` the reply must be JSON fitting it, and a reply that does not is sent back
//! once with the validation error before the task fails. Each provider call is a `chat` span
//! with the OpenTelemetry GenAI attributes (`gen_ai.*`).
//!
//! Tool calling is OpenAI's: a task offers `tools` (and may set `tool_choice`), its messages may
//! hold the assistant's `tool_calls` and the `tool` messages answering them, all forwarded as
//! given; when the model asks for tools the result's `tool_calls` says which, with the
//! arguments the model wrote (a streamed reply's calls are assembled from their deltas,
//! `assemble`). Running the tools is the caller's part (the workflow agent loop).

mod anthropic;
mod assemble;
mod cache;
mod chat;
mod config;
mod record;
mod schemas;
mod tools;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cadre_agents::executor::decode_params;
use cadre_agents::schema::{check_schema, validate};
use cadre_agents::{ExecContext, ExecError, Executor, ExecutorRegistry};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument;

pub use cache::ResponseCache;
pub use chat::{FunctionCall, MAX_MESSAGES, MAX_TOOL_CALLS, Message, Role, ToolCall, ToolKind};
pub use config::{LlmConfig, MAX_CHAIN, ModelConfig, ProviderConfig, ProviderKind};
pub use tools::{MAX_TOOLS, NAME_PATTERN};

use chat::Chat;
use record::Attempt;
use wire::{CallError, Reply};

/// Rounds over a rate-limited chain (each waits for the first provider to come back).
const MAX_ROUNDS: usize = 3;

/// Registers `llm`, configured by `config`.
pub(crate) fn register(r: &mut ExecutorRegistry, config: &LlmConfig) {
    r.register("llm", Arc::new(Llm::new(config.clone())));
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    model: Option<String>,
    // Each message is decoded on its own, so an error can say which one is wrong.
    #[serde(default)]
    messages: Option<Vec<Value>>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default = "yes")]
    stream: bool,
    #[serde(default)]
    response_schema: Option<Value>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default = "yes")]
    cache: bool,
    // Set by tier 0's budget fallback: the task may run on a cheaper model near a cap.
    #[serde(default)]
    #[allow(dead_code)]
    allow_fallback: bool,
    #[serde(default)]
    fallback_from: Option<String>,
}

/// The chat gateway (OpenAI-compatible and Anthropic providers).
pub struct Llm {
    config: LlmConfig,
    clients: BTreeMap<String, Result<reqwest::Client, String>>,
    /// Provider -> when its `Retry-After` ends.
    cooldown: Mutex<HashMap<String, Instant>>,
    cache: ResponseCache,
}

impl Llm {
    /// The gateway for `config` (one HTTP client per provider, built now).
    pub fn new(config: LlmConfig) -> Self {
        let clients = config
            .providers
            .iter()
            .map(|(name, p)| {
                let client = reqwest::Client::builder()
                    .connect_timeout(Duration::from_millis(p.connect_timeout_ms))
                    .pool_idle_timeout(Duration::from_secs(60))
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client for provider {name}: {e}"));
                (name.clone(), client)
            })
            .collect();
        let cache = ResponseCache::new(config.cache_entries, Duration::from_secs(config.cache_ttl_secs));
        Llm {
            config,
            clients,
            cooldown: Mutex::new(HashMap::new()),
            cache,
        }
    }

    fn chat(&self, p: Params) -> Result<(String, Chat), ExecError> {
        let model = match p.model.filter(|m| !m.is_empty()) {
            Some(m) => m,
            None if self.config.default_model.is_empty() => {
                return Err(ExecError::InvalidParams(
                    "no `model` given and executors.llm.default_model is not set".into(),
                ));
            }
            None => self.config.default_model.clone(),
        };
        if self.config.models.is_empty() {
            return Err(ExecError::Fatal(
                "the llm executor has no models configured ([executors.llm.models])".into(),
            ));
        }
        if !self.config.models.contains_key(&model) {
            let known: Vec<&str> = self.config.models.keys().map(String::as_str).collect();
            return Err(ExecError::InvalidParams(format!(
                "unknown model {model:?} (configured: {})",
                known.join(", ")
            )));
        }
        let mut messages = Vec::new();
        if let Some(system) = p.system {
            messages.push(Message::text(Role::System, system));
        }
        match (p.messages, p.prompt) {
            (Some(_), Some(_)) => {
                return Err(ExecError::InvalidParams(
                    "give `messages` or `prompt`, not both".into(),
                ));
            }
            (None, None) => {
                return Err(ExecError::InvalidParams("give `messages` or `prompt`".into()));
            }
            (Some(m), None) if m.is_empty() || m.len() > MAX_MESSAGES => {
                return Err(ExecError::InvalidParams(format!(
                    "`messages` must hold 1 to {MAX_MESSAGES} messages"
                )));
            }
            (Some(m), None) => messages.extend(decode_messages(&m)?),
            (None, Some(prompt)) => messages.push(Message::text(Role::User, prompt)),
        }
        let tools = p.tools.unwrap_or_default();
        let names = tools::check_tools(&tools).map_err(ExecError::InvalidParams)?;
        if let Some(choice) = &p.tool_choice {
            tools::check_tool_choice(choice, &names).map_err(ExecError::InvalidParams)?;
        }
        if let Some(schema) = &p.response_schema
            && let Err(e) = check_schema(schema)
        {
            return Err(ExecError::InvalidParams(format!("`response_schema`: {e}")));
        }
        if let Some(t) = p.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ExecError::InvalidParams(
                "`temperature` must be between 0 and 2".into(),
            ));
        }
        Ok((
            model,
            Chat {
                messages,
                max_tokens: p.max_tokens,
                temperature: p.temperature,
                stream: p.stream,
                response_schema: p.response_schema,
                tools,
                tool_choice: p.tool_choice,
            },
        ))
    }

    /// How long `provider` is still rate-limited.
    fn cooling(&self, provider: &str) -> Option<Duration> {
        let mut cd = self.cooldown.lock().unwrap_or_else(|e| e.into_inner());
        let until = *cd.get(provider)?;
        let left = until.checked_duration_since(Instant::now());
        if left.is_none() {
            cd.remove(provider);
        }
        left
    }

    fn cool(&self, provider: &str, for_: Duration) {
        let mut cd = self.cooldown.lock().unwrap_or_else(|e| e.into_inner());
        let until = Instant::now() + for_;
        let entry = cd.entry(provider.to_string()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Sends `chat` along `model`'s chain until one model answers.
    async fn call_chain(
        &self,
        ctx: &ExecContext,
        model: &str,
        chat: &Chat,
        attempts: &mut Vec<Attempt>,
    ) -> Result<(String, Reply), ExecError> {
        let chain = self.config.chain(model);
        let max_wait = Duration::from_millis(self.config.max_retry_after_ms);
        for round in 0..MAX_ROUNDS {
            let mut soonest: Option<Duration> = None;
            let mut transient = false;
            for name in &chain {
                let m = &self.config.models[name];
                if let Some(left) = self.cooling(&m.provider) {
                    soonest = Some(soonest.map_or(left, |s| s.min(left)));
                    attempts.push(Attempt {
                        model: name.clone(),
                        provider: m.provider.clone(),
                        error: format!("rate-limited for {} ms more", left.as_millis()),
                    });
                    continue;
                }
                match self.call(ctx, name, m, chat).await {
                    Ok(reply) => return Ok((name.clone(), reply)),
                    Err(CallError::Cancelled) => return Err(ExecError::Cancelled),
                    Err(CallError::Refused(msg)) => {
                        return Err(ExecError::Fatal(format!(
                            "model {name} ({}) refused the request: {msg}",
                            m.provider
                        )));
                    }
                    Err(CallError::Unusable(msg)) => {
                        return Err(ExecError::Fatal(format!(
                            "model {name} ({}) gave a reply that cannot be used: {msg}",
                            m.provider
                        )));
                    }
                    Err(e) => {
                        if let CallError::Transient {
                            retry_after: Some(after),
                            ..
                        } = &e
                        {
                            self.cool(&m.provider, *after);
                            soonest = Some(soonest.map_or(*after, |s| s.min(*after)));
                        }
                        transient |= matches!(e, CallError::Transient { .. });
                        tracing::info!(model = %name, provider = %m.provider, error = %e, "llm model did not answer; trying the next");
                        attempts.push(Attempt {
                            model: name.clone(),
                            provider: m.provider.clone(),
                            error: e.to_string(),
                        });
                    }
                }
            }
            let summary = attempts
                .iter()
                .map(|a| format!("{} ({}): {}", a.model, a.provider, a.error))
                .collect::<Vec<_>>()
                .join("; ");
            match soonest {
                Some(wait) if wait <= max_wait && round + 1 < MAX_ROUNDS => {
                    ctx.progress(0.0, format!("rate-limited; waiting {} ms", wait.as_millis()));
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => return Err(ExecError::Cancelled),
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                Some(wait) => {
                    return Err(ExecError::RateLimited {
                        message: format!("every model is rate-limited: {summary}"),
                        retry_after: wait,
                    });
                }
                None if transient => {
                    return Err(ExecError::Retryable(format!("no model answered: {summary}")));
                }
                None => return Err(ExecError::Fatal(format!("no model answered: {summary}"))),
            }
        }
        let soonest = chain
            .iter()
            .filter_map(|name| self.cooling(&self.config.models[name].provider))
            .min();
        Err(match soonest {
            Some(wait) => ExecError::RateLimited {
                message: "every model stayed rate-limited".to_string(),
                retry_after: wait,
            },
            None => ExecError::Retryable("every model stayed rate-limited".to_string()),
        })
    }

    /// One request to one model, in a GenAI `chat` span.
    async fn call(
        &self,
        ctx: &ExecContext,
        name: &str,
        m: &ModelConfig,
        chat: &Chat,
    ) -> Result<Reply, CallError> {
        let provider = &self.config.providers[&m.provider];
        let client = match &self.clients[&m.provider] {
            Ok(c) => c,
            Err(e) => return Err(CallError::Misconfigured(e.clone())),
        };
        let url = provider.endpoint();
        let (host, port) = reqwest::Url::parse(&url)
            .map(|u| (u.host_str().unwrap_or("").to_string(), u.port_or_known_default()))
            .unwrap_or_default();
        let span = tracing::info_span!(
            "chat",
            otel.name = %format!("chat {}", m.model),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            "gen_ai.operation.name" = "chat",
            "gen_ai.provider.name" = %m.provider,
            "gen_ai.request.model" = %m.model,
            "gen_ai.request.max_tokens" = chat.max_tokens.map(i64::from),
            "gen_ai.request.temperature" = chat.temperature,
            "gen_ai.output.type" = if chat.response_schema.is_some() { "json" } else { "text" },
            "gen_ai.response.id" = tracing::field::Empty,
            "gen_ai.response.model" = tracing::field::Empty,
            "gen_ai.response.finish_reasons" = tracing::field::Empty,
            "gen_ai.usage.input_tokens" = tracing::field::Empty,
            "gen_ai.usage.output_tokens" = tracing::field::Empty,
            "server.address" = %host,
            "server.port" = port.map(i64::from),
            "error.type" = tracing::field::Empty,
            cadre.llm.model = %name,
            task_id = %ctx.task_id,
            task_type = %ctx.task_type,
            tenant = %ctx.tenant,
        );
        let key = if provider.api_key_env.is_empty() {
            None
        } else {
            match std::env::var(&provider.api_key_env) {
                Ok(k) if !k.is_empty() => Some(k),
                _ => {
                    return Err(CallError::Misconfigured(format!(
                        "environment variable {} (the API key) is not set",
                        provider.api_key_env
                    )));
                }
            }
        };
        let request = wire::Request {
            client,
            url: &url,
            api_key: key.as_deref(),
            model: &m.model,
            chat,
            timeout: Duration::from_millis(provider.timeout_ms),
            max_bytes: self.config.max_response_bytes,
        };
        let out = match provider.kind {
            ProviderKind::Openai => wire::send(ctx, request).instrument(span.clone()).await,
            ProviderKind::Anthropic => {
                anthropic::send(ctx, request, provider.default_max_tokens)
                    .instrument(span.clone())
                    .await
            }
        };
        match &out {
            Ok(r) => {
                // A reply that used up a rate limit: later calls wait for its reset.
                if let Some(rest) = r.exhausted_for {
                    self.cool(&m.provider, rest);
                }
                span.record("gen_ai.response.id", r.id.as_str());
                span.record("gen_ai.response.model", r.upstream_model.as_str());
                if let Some(f) = &r.finish_reason {
                    span.record("gen_ai.response.finish_reasons", format!("[\"{f}\"]"));
                }
                span.record("gen_ai.usage.input_tokens", r.tokens_in as i64);
                span.record("gen_ai.usage.output_tokens", r.tokens_out as i64);
            }
            Err(e) => {
                span.record("otel.status_code", "error");
                span.record("error.type", e.kind());
            }
        }
        out
    }
}

/// The task's `messages`, each decoded and all checked together (`chat::check_messages`).
fn decode_messages(raw: &[Value]) -> Result<Vec<Message>, ExecError> {
    let messages = raw
        .iter()
        .enumerate()
        .map(|(i, m)| {
            Message::deserialize(m).map_err(|e| ExecError::InvalidParams(format!("`messages[{i}]`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    chat::check_messages(&messages).map_err(ExecError::InvalidParams)?;
    Ok(messages)
}

/// The reply text as JSON: the whole text, or the inside of a ```json fence around it.
fn reply_json(text: &str) -> Result<Value, String> {
    let t = text.trim();
    let inner = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|s| s.strip_suffix("```"))
        .unwrap_or(t);
    serde_json::from_str(inner.trim()).map_err(|e| format!("the reply is not JSON: {e}"))
}

#[async_trait]
impl Executor for Llm {
    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: Params = decode_params(&params)?;
        let use_cache = p.cache;
        let fallback_from = p.fallback_from.clone();
        let (model, mut chat) = self.chat(p)?;
        // Per tenant: a cached reply is free, and must not reveal another tenant's prompts.
        let cache_key = cache::key(&json!({
            "tenant": ctx.tenant,
            "model": model,
            "messages": chat.messages,
            "max_tokens": chat.max_tokens,
            "temperature": chat.temperature,
            "response_schema": chat.response_schema,
            "tools": chat.tools,
            "tool_choice": chat.tool_choice,
        }));
        let clock = record::CallClock::start();
        if use_cache && let Some(mut hit) = self.cache.get(&cache_key) {
            hit["cached"] = json!(true);
            ctx.progress(1.0, "cached reply");
            ctx.usage(record::cache_hit(&model, &hit, &clock));
            return Ok(hit);
        }
        let mut attempts = Vec::new();
        let (served, reply) = self.call_chain(&ctx, &model, &chat, &mut attempts).await?;
        self.record_usage(&ctx, &model, &served, &attempts, &clock, &chat, &reply);
        let (reply, structured, tokens) = self.structured(&ctx, &served, &mut chat, reply).await?;
        let m = &self.config.models[&served];
        let result = json!({
            "content": reply.content,
            "tool_calls": reply.tool_calls,
            "json": structured,
            "model": served,
            "provider": m.provider,
            "upstream_model": reply.upstream_model,
            "finish_reason": reply.finish_reason,
            "usage": { "tokens_in": tokens.0, "tokens_out": tokens.1, "estimated": tokens.2 },
            "cached": false,
            "fallback_from": fallback_from,
            "failed_attempts": attempts,
        });
        if use_cache {
            let mut stored = result.clone();
            stored["failed_attempts"] = json!([]);
            self.cache.put(cache_key, stored);
        }
        Ok(result)
    }

    fn params_schema(&self) -> Option<Value> {
        let models: Vec<&str> = self.config.models.keys().map(String::as_str).collect();
        Some(schemas::params(&models))
    }

    fn result_schema(&self) -> Option<Value> {
        Some(schemas::result())
    }
}

impl Llm {
    /// Applies `response_schema` to a final text answer (never to a reply that asks for
    /// tools): the reply parsed as JSON, asked once more of `served` when it does not fit.
    /// Returns the reply kept, its JSON (null without a schema or for tool calls) and the
    /// tokens of both calls (in, out, estimated).
    async fn structured(
        &self,
        ctx: &ExecContext,
        served: &str,
        chat: &mut Chat,
        mut reply: Reply,
    ) -> Result<(Reply, Value, (u64, u64, bool)), ExecError> {
        let mut tokens = (reply.tokens_in, reply.tokens_out, reply.usage_estimated);
        let Some(schema) = chat.response_schema.clone() else {
            return Ok((reply, Value::Null, tokens));
        };
        if !reply.tool_calls.is_empty() {
            return Ok((reply, Value::Null, tokens));
        }
        let check = |text: &str| {
            reply_json(text).and_then(|v| validate(&schema, &v).map(|()| v).map_err(|e| e.to_string()))
        };
        let why = match check(&reply.content) {
            Ok(v) => return Ok((reply, v, tokens)),
            Err(why) => why,
        };
        // Once more, on the model that answered, with what was wrong.
        ctx.progress(
            0.5,
            format!("reply did not fit response_schema ({why}); asking again"),
        );
        chat.messages
            .push(Message::text(Role::Assistant, reply.content.clone()));
        chat.messages.push(Message::text(
            Role::User,
            format!(
                "That reply does not fit the required JSON Schema ({why}). Reply with \
                 only a JSON value that fits this schema: {schema}"
            ),
        ));
        let m = &self.config.models[served];
        let clock = record::CallClock::start();
        reply = match self.call(ctx, served, m, chat).await {
            Ok(r) => r,
            Err(CallError::Cancelled) => return Err(ExecError::Cancelled),
            Err(CallError::Unusable(msg)) => {
                return Err(ExecError::Fatal(format!(
                    "model {served} gave a schema retry reply that cannot be used: {msg}"
                )));
            }
            Err(e) => {
                return Err(ExecError::Retryable(format!(
                    "model {served} did not answer the schema retry: {e}"
                )));
            }
        };
        self.record_usage(ctx, served, served, &[], &clock, chat, &reply);
        tokens.0 += reply.tokens_in;
        tokens.1 += reply.tokens_out;
        tokens.2 |= reply.usage_estimated;
        if !reply.tool_calls.is_empty() {
            return Ok((reply, Value::Null, tokens));
        }
        let structured = check(&reply.content).map_err(|why| {
            ExecError::Fatal(format!(
                "the reply does not fit response_schema after one retry: {why}"
            ))
        })?;
        Ok((reply, structured, tokens))
    }

    /// Reports the tokens of an answered call with its record (`record::usage`): `requested`
    /// is the model the task asked for, `attempts` the models that did not answer first.
    #[allow(clippy::too_many_arguments)]
    fn record_usage(
        &self,
        ctx: &ExecContext,
        requested: &str,
        served: &str,
        attempts: &[Attempt],
        clock: &record::CallClock,
        chat: &Chat,
        reply: &Reply,
    ) {
        let provider = self.config.models.get(served).map_or("", |m| m.provider.as_str());
        let answered = record::Answered {
            requested,
            served,
            provider,
            attempts,
            clock,
            chat,
            reply,
        };
        ctx.usage(record::usage(answered, self.config.capture_bytes));
    }
}
