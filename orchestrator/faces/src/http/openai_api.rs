//! The OpenAI-compatible face of the model gateway (docs/GATEWAY_API.md): `POST
//! /v1/chat/completions` and `GET /v1/models[/{id}]`, so an application written against the
//! OpenAI SDK points its `base_url` at `http://<node>/v1` and its key at a cadre credential.
//!
//! It only translates: each chat request becomes the params of an `llm` task of the caller's
//! tenant, submitted and followed by the core ([`cadre_core::gateway`]: the normal intake,
//! so permissions, validation, quotas, budgets and audit all apply, and the task is visible
//! in Get, Watch, usage and the dashboard), and the task's end becomes OpenAI's answer
//! ([`super::openai_stream`] for `stream: true`). Errors are OpenAI's shape,
//! `{"error": {"message", "type", "param", "code"}}`, with the statuses the SDK maps to its
//! exception classes ([`super::openai_wire`]; a task's failure: [`failure`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cadre_core::gateway::{ChatFollow, Step};
use cadre_proto::{TaskState, v1};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use cadre_core::auth::{Action, Principal};
use cadre_core::node::Node;

use super::api::bearer;
use super::openai_request::{ChatRequest, parse_request};
use super::openai_wire::{OpenAiError, OpenAiErrorBody, Reply, failure, held, with_task};

type Shared = Arc<Node>;

/// The gateway routes, each with its OpenAPI description, bodies up to `body_limit` bytes.
pub fn routes(body_limit: usize) -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(chat_completions))
        .routes(routes!(list_models))
        .routes(routes!(get_model))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
}

/// A request body, or the error for one that could not be read (413 over the limit).
fn body_bytes(b: Result<Bytes, BytesRejection>) -> Result<Bytes, OpenAiError> {
    b.map_err(|e| {
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "invalid_argument"
        };
        OpenAiError::new(
            status,
            "invalid_request_error",
            code,
            format!("body: {}", e.body_text()),
        )
    })
}

/// Authenticates the request for `action`.
async fn caller(node: &Node, headers: &HeaderMap, action: Action) -> Result<Principal, OpenAiError> {
    Ok(node.authorize(bearer(headers), action).await?)
}

/// The task spec of a chat request: the `llm` task type, one attempt (the client retries, as
/// the OpenAI SDK does on 429 and 5xx).
fn task_spec(task_type: String, params: &Value) -> v1::TaskSpec {
    v1::TaskSpec {
        task_type,
        params_json: params.to_string(),
        retry: Some(v1::RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `POST /v1/chat/completions`.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "gateway",
    operation_id = "create_chat_completion",
    summary = "An OpenAI chat completion, run as an llm task of the caller's tenant",
    description = "OpenAI's request and answer (docs/GATEWAY_API.md). With `stream: true` the \
        answer is `text/event-stream` of `chat.completion.chunk` frames ending with `data: \
        [DONE]`. The task's id is in the `x-cadre-task-id` header and in the answer's `id` \
        (`chatcmpl-<task id>`). Errors are OpenAI's shape.",
    request_body(content = serde_json::Value, description = "OpenAI's chat completion request", content_type = "application/json"),
    responses(
        (status = 200, description = "A `chat.completion` (or, streamed, `chat.completion.chunk` SSE frames)", body = serde_json::Value, content_type = "application/json"),
        (status = 400, description = "A bad or unsupported request", body = OpenAiErrorBody),
        (status = 401, description = "No credential, or one the node does not accept", body = OpenAiErrorBody),
        (status = 403, description = "The credential's role may not submit tasks", body = OpenAiErrorBody),
        (status = 404, description = "An unknown model", body = OpenAiErrorBody),
        (status = 413, description = "The body is over the limit", body = OpenAiErrorBody),
        (status = 429, description = "A quota or budget refused it, or every provider is rate-limited (`Retry-After`)", body = OpenAiErrorBody),
        (status = 502, description = "Every provider of the chain failed", body = OpenAiErrorBody),
        (status = 503, description = "The node's store or bus is away, or the task was cancelled", body = OpenAiErrorBody),
        (status = 504, description = "The providers, or the task, timed out", body = OpenAiErrorBody),
    ),
)]
async fn chat_completions(
    State(node): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match chat(node, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn chat(
    node: Shared,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let principal = caller(&node, headers, Action::SubmitTask).await?;
    let body = body_bytes(body)?;
    let req = parse_request(&body)?;
    if !node.chat_models().iter().any(|(name, _)| *name == req.model) {
        let mut e = OpenAiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!(
                "The model `{}` does not exist (GET /v1/models lists them)",
                req.model
            ),
        );
        e.param = Some("model".into());
        return Err(e);
    }
    let Some(task_type) = node.chat_task_type() else {
        return Err(OpenAiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "no_llm_route",
            "no task type of this node runs the llm executor",
        )
        .not_retried());
    };
    let follow = node
        .submit_followed(&principal, &task_spec(task_type, &req.params))
        .await?;
    if req.stream {
        return super::openai_stream::answer(follow, req).await;
    }
    completion(follow, &req).await
}

/// The non-streamed answer: the task followed to its end.
async fn completion(mut follow: ChatFollow, req: &ChatRequest) -> Result<Response, OpenAiError> {
    let task = follow.task.clone();
    let record = loop {
        match follow
            .next()
            .await
            .map_err(|e| OpenAiError::from(e).for_task(&task))?
        {
            Step::Progress(..) => continue,
            Step::Held(after, why) => return Err(held(&task, after, &why)),
            Step::Finished(record) => break record,
        }
    };
    if record.state != TaskState::Succeeded {
        return Err(failure(&record));
    }
    let reply = Reply::of(&record, &req.model);
    let mut body = json!({
        "id": reply.id, "object": "chat.completion", "created": reply.created, "model": reply.model,
        "system_fingerprint": null,
        "choices": [{ "index": 0, "message": reply.message(), "finish_reason": reply.finish_reason, "logprobs": null }],
        "usage": reply.usage(),
    });
    if let Some(m) = body["choices"][0]["message"].as_object_mut() {
        m.insert("refusal".into(), Value::Null);
    }
    Ok(with_task(
        (StatusCode::OK, axum::Json(body)).into_response(),
        &record,
    ))
}

/// `GET /v1/models`.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "gateway",
    operation_id = "list_models",
    summary = "The models the gateway serves (`[executors.llm.models]`), OpenAI's list shape",
    responses(
        (status = 200, description = "`{\"object\": \"list\", \"data\": [model]}`", body = serde_json::Value),
        (status = 401, description = "No credential, or one the node does not accept", body = OpenAiErrorBody),
        (status = 403, description = "The credential's role may not list tasks", body = OpenAiErrorBody),
    ),
)]
async fn list_models(State(node): State<Shared>, headers: HeaderMap) -> Response {
    match caller(&node, &headers, Action::ListTasks).await {
        Ok(_) => {
            let data: Vec<Value> = node.chat_models().iter().map(|(n, p)| model_json(n, p)).collect();
            axum::Json(json!({ "object": "list", "data": data })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/models/{id}`.
#[utoipa::path(
    get,
    path = "/v1/models/{id}",
    tag = "gateway",
    operation_id = "get_model",
    summary = "One model the gateway serves",
    params(("id" = String, Path, description = "A model name of `[executors.llm.models]`")),
    responses(
        (status = 200, description = "`{\"id\", \"object\": \"model\", \"created\", \"owned_by\"}`", body = serde_json::Value),
        (status = 401, description = "No credential, or one the node does not accept", body = OpenAiErrorBody),
        (status = 403, description = "The credential's role may not list tasks", body = OpenAiErrorBody),
        (status = 404, description = "No such model", body = OpenAiErrorBody),
    ),
)]
async fn get_model(State(node): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(e) = caller(&node, &headers, Action::ListTasks).await {
        return e.into_response();
    }
    match node.chat_models().iter().find(|(n, _)| *n == id) {
        Some((n, p)) => axum::Json(model_json(n, p)).into_response(),
        None => OpenAiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!("The model `{id}` does not exist"),
        )
        .into_response(),
    }
}

/// One model as OpenAI lists it: owned by its provider.
fn model_json(name: &str, provider: &str) -> Value {
    json!({ "id": name, "object": "model", "created": 0, "owned_by": provider })
}
