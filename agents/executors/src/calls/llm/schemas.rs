//! The JSON Schemas (draft 2020-12) of the gateway's params and result: intake validates
//! params with the first, and agents and MCP clients read both. They agree with what
//! `chat::check_messages` and `tools` check (the tests hold them to it).

use serde_json::{Value, json};

use super::chat::{MAX_MESSAGES, MAX_TOOL_CALLS};
use super::tools::{MAX_TOOLS, NAME_PATTERN};

/// A tool call in OpenAI's shape (in an assistant message, and in the result).
fn tool_call() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": { "type": "string", "minLength": 1, "description": "What the tool message answering it gives as tool_call_id" },
            "type": { "enum": ["function"] },
            "function": {
                "type": "object",
                "properties": {
                    "name": { "type": "string", "minLength": 1 },
                    "arguments": { "type": "string", "description": "The arguments as the model wrote them: JSON text, not parsed" },
                },
                "required": ["name", "arguments"],
                "additionalProperties": false,
            },
        },
        "required": ["id", "type", "function"],
        "additionalProperties": false,
    })
}

/// One message: system and user messages have text, an assistant message text or
/// `tool_calls` (or both), a tool message answers a call by `tool_call_id`.
fn message() -> Value {
    let role = |roles: Value| json!({ "required": ["role"], "properties": { "role": { "enum": roles } } });
    json!({
        "type": "object",
        "properties": {
            "role": { "enum": ["system", "user", "assistant", "tool"] },
            "content": { "type": ["string", "null"], "description": "The text; null or left out only in an assistant message with tool_calls" },
            "tool_calls": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_TOOL_CALLS,
                "items": tool_call(),
                "description": "The tools an assistant message asked for (the tool_calls of an earlier result)",
            },
            "tool_call_id": { "type": "string", "minLength": 1, "description": "The id of the call a tool message answers" },
        },
        "required": ["role"],
        "additionalProperties": false,
        "allOf": [
            {
                "if": role(json!(["system", "user"])),
                "then": {
                    "required": ["content"],
                    "properties": { "content": { "type": "string" }, "tool_calls": false, "tool_call_id": false },
                },
            },
            {
                "if": role(json!(["assistant"])),
                "then": {
                    "properties": { "tool_call_id": false },
                    "if": { "required": ["tool_calls"] },
                    "else": { "required": ["content"], "properties": { "content": { "type": "string" } } },
                },
            },
            {
                "if": role(json!(["tool"])),
                "then": {
                    "required": ["tool_call_id", "content"],
                    "properties": { "content": { "type": "string" }, "tool_calls": false },
                },
            },
        ],
    })
}

/// A named function, as `tool_choice` names it.
fn named_function() -> Value {
    json!({
        "type": "object",
        "properties": {
            "type": { "enum": ["function"] },
            "function": {
                "type": "object",
                "properties": { "name": { "type": "string", "pattern": NAME_PATTERN } },
                "required": ["name"],
                "additionalProperties": false,
            },
        },
        "required": ["type", "function"],
        "additionalProperties": false,
    })
}

fn tools() -> Value {
    json!({
        "type": "array",
        "maxItems": MAX_TOOLS,
        "description": "Functions the model may call (OpenAI's tools), forwarded as given; when it calls some, the result's tool_calls says which",
        "items": {
            "type": "object",
            "properties": {
                "type": { "enum": ["function"] },
                "function": {
                    "type": "object",
                    "properties": {
                        "name": { "type": "string", "pattern": NAME_PATTERN },
                        "description": { "type": ["string", "null"] },
                        "parameters": { "type": "object", "description": "JSON Schema of the arguments" },
                        "strict": { "type": ["boolean", "null"] },
                    },
                    "required": ["name"],
                    "additionalProperties": false,
                },
            },
            "required": ["type", "function"],
            "additionalProperties": false,
        },
        "examples": [[{
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Today's weather in a city",
                "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] },
            },
        }]],
    })
}

/// The params schema; `models` are the configured model names (none: any string).
pub(super) fn params(models: &[&str]) -> Value {
    let mut model = json!({
        "type": "string",
        "description": "A model from [executors.llm.models]; default executors.llm.default_model",
    });
    if !models.is_empty() {
        model["enum"] = json!(models);
    }
    json!({
        "type": "object",
        "description": "A chat with an OpenAI-compatible model. Give `messages` or `prompt`.",
        "properties": {
            "model": model,
            "messages": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_MESSAGES,
                "items": message(),
                "examples": [[
                    { "role": "user", "content": "What is the weather in Paris?" },
                    { "role": "assistant", "content": null, "tool_calls": [{ "id": "call_1", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\": \"Paris\"}" } }] },
                    { "role": "tool", "tool_call_id": "call_1", "content": "{\"sky\": \"sunny\"}" },
                ]],
            },
            "prompt": { "type": "string", "description": "One user message (instead of `messages`)" },
            "system": { "type": "string", "description": "A system message put first" },
            "max_tokens": { "type": "integer", "minimum": 1, "maximum": 1_000_000 },
            "temperature": { "type": "number", "minimum": 0, "maximum": 2 },
            "stream": { "type": "boolean", "default": true, "description": "Stream tokens as progress events" },
            "response_schema": {
                "type": "object",
                "description": "JSON Schema a final text reply must fit (not a reply asking for tools); the reply is parsed as JSON and retried once when it does not fit",
            },
            "tools": tools(),
            "tool_choice": {
                "description": "Whether and which tool the model must call (OpenAI's tool_choice); needs tools",
                "anyOf": [{ "enum": ["auto", "none", "required"] }, named_function()],
                "examples": ["auto"],
            },
            "cache": { "type": "boolean", "default": true, "description": "Use the response cache" },
            "allow_fallback": { "type": "boolean", "description": "May run on a cheaper model near a budget cap" },
            "fallback_from": { "type": "string", "description": "Set by cadre when the budget fallback changed the model" },
        },
        "dependentRequired": { "tool_choice": ["tools"] },
        "additionalProperties": false,
    })
}

/// The result schema.
pub(super) fn result() -> Value {
    json!({
        "type": "object",
        "properties": {
            "content": { "type": "string", "description": "The reply text (\"\" when the model only asked for tools)" },
            "tool_calls": {
                "type": "array",
                "maxItems": MAX_TOOL_CALLS,
                "items": tool_call(),
                "description": "The tools the model asked to call, in OpenAI's shape (empty when it asked for none); put them in an assistant message and answer each with a tool message",
            },
            "json": { "description": "The reply parsed as JSON, when a response_schema was given and the model answered in text (else null)" },
            "model": { "type": "string", "description": "The configured model that answered" },
            "provider": { "type": "string" },
            "upstream_model": { "type": "string", "description": "The model id the provider reported" },
            "finish_reason": { "type": ["string", "null"], "description": "Why the model stopped: stop, tool_calls, length, ..." },
            "usage": {
                "type": "object",
                "properties": {
                    "tokens_in": { "type": "integer", "minimum": 0 },
                    "tokens_out": { "type": "integer", "minimum": 0 },
                    "estimated": { "type": "boolean", "description": "The provider reported no usage; counted as characters / 4" },
                },
                "required": ["tokens_in", "tokens_out", "estimated"],
                "additionalProperties": false,
            },
            "cached": { "type": "boolean" },
            "fallback_from": { "type": ["string", "null"] },
            "failed_attempts": {
                "type": "array",
                "description": "Models tried before the one that answered, with why they did not",
                "items": {
                    "type": "object",
                    "properties": {
                        "model": { "type": "string" },
                        "provider": { "type": "string" },
                        "error": { "type": "string" },
                    },
                    "required": ["model", "provider", "error"],
                    "additionalProperties": false,
                },
            },
        },
        "required": ["content", "tool_calls", "json", "model", "provider", "upstream_model", "finish_reason", "usage", "cached", "fallback_from", "failed_attempts"],
        "additionalProperties": false,
    })
}
