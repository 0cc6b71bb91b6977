//! The OpenAPI 3.1 description of the JSON API, generated from the code and served at
//! `GET /v1/openapi.json` (no credential needed, like `/health`: it says what the API is, not
//! what is in it).
//!
//! Each route is registered together with its description: [`super::api::routes`] and
//! [`super::workflows_api::routes`] add every handler through `utoipa_axum::routes!`, which
//! takes the method and path from the handler's `#[utoipa::path]`, so a route cannot be served
//! without being described, nor described without being served. The schemas are the typed
//! structs the handlers serialize ([`super::views`]). [`finish`] adds what is common to every
//! operation: the bearer scheme, and the error answers every credentialed route can give.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cadre_core::node::Node;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Components, Content, Header, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, ResponseBuilder, Tag,
};
use utoipa::{PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::ErrorBody;
use super::{api, bulk_api, openai_api, pauses_api, schedules_api, stats_api, workflows_api};

type Shared = Arc<Node>;

/// The name of the bearer security scheme.
pub const BEARER: &str = "bearer";

/// Where the description is served.
pub const PATH: &str = "/v1/openapi.json";

/// What the description says about the API as a whole.
const DESCRIPTION: &str = "\
The JSON API of a cadre tier-0 node (docs/HTTP_API.md), generated from the node's code.

Every operation except this document's needs `Authorization: Bearer <token or API key>` \
(`cadre token issue`, `cadre key create`), with the same roles and tenant isolation as gRPC.

Every error is `{\"error\": {\"code\", \"message\"}}` (schema `ErrorBody`) with the status of \
its code: invalid_argument 400, unauthenticated 401 (with `WWW-Authenticate: Bearer`), \
permission_denied 403, not_found 404, already_exists and failed_precondition 409, \
payload_too_large 413, resource_exhausted 429 (with `Retry-After` when rate limited), \
unavailable 503, deadline_exceeded 504. The model gateway's routes (tag `gateway`: \
`/v1/chat/completions`, `/v1/models`) answer in OpenAI's error shape instead \
(`OpenAiErrorBody`, docs/GATEWAY_API.md).

Not described here: the live event streams `GET /v1/events` (WebSocket) and \
`GET /v1/events/sse` (Server-Sent Events), whose messages OpenAPI 3.1 cannot express (their \
`event` messages have the `Event` schema below; docs/HTTP_API.md, \"Events\"); the probes \
`/health` and `/ready`, `/metrics`, MCP at `/mcp` (docs/MCP.md) and the dashboard at `/`.";

/// Every described route with its body limits, before the node's state is attached.
fn registered(task_body_limit: usize, workflow_body_limit: usize) -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .merge(api::routes(task_body_limit))
        .merge(workflows_api::routes(workflow_body_limit))
        .merge(pauses_api::routes())
        .merge(bulk_api::routes())
        .merge(super::llm_calls_api::routes())
        .merge(schedules_api::routes(task_body_limit))
        .merge(stats_api::routes())
        .merge(openai_api::routes(task_body_limit))
}

/// The JSON API of `node`, with its description at [`PATH`].
pub fn routes(node: Shared) -> Router {
    let limits = (api::body_limit(&node), workflows_api::body_limit(&node));
    let (router, _) = registered(limits.0, limits.1).split_for_parts();
    router.with_state(node)
}

/// The description, as served.
pub fn document() -> OpenApi {
    finish(registered(0, 0).into_openapi())
}

/// The served text, made once.
fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_pretty_json().expect("the description serializes"))
}

/// `GET /v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    operation_id = "get_openapi",
    summary = "This description (OpenAPI 3.1; no credential needed)",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = serde_json::Value)),
)]
async fn openapi_json() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

/// The reusable error answers: (component name, status, description).
const ERRORS: [(&str, &str, &str); 5] = [
    (
        "InvalidArgument",
        "400",
        "`invalid_argument`: a bad query, path parameter or body (the message names it)",
    ),
    (
        "Unauthenticated",
        "401",
        "`unauthenticated`: no credential, or one the node does not accept",
    ),
    (
        "PermissionDenied",
        "403",
        "`permission_denied`: the credential's role may not do this",
    ),
    (
        "PayloadTooLarge",
        "413",
        "`payload_too_large`: the body or its params are over the limit",
    ),
    (
        "Unavailable",
        "503",
        "`unavailable`: the store or the bus is unreachable",
    ),
];

/// The error answers of one operation: every credentialed one can be refused (401, 403) or
/// find the store away (503); one with parameters or a body can be a bad request (400); one
/// with a body can be too large (413).
fn error_statuses(op: &Operation) -> Vec<&'static str> {
    let mut out = vec!["401", "403", "503"];
    if op.request_body.is_some() || op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
        out.push("400");
    }
    if op.request_body.is_some() {
        out.push("413");
    }
    out
}

/// The operations of a path item, whichever methods it has.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The error answer components, each an [`ErrorBody`].
fn error_components(components: &mut Components) {
    let mut schemas = vec![(ErrorBody::name().into_owned(), ErrorBody::schema())];
    ErrorBody::schemas(&mut schemas);
    components.schemas.extend(schemas);
    for (name, status, description) in ERRORS {
        let mut resp = ResponseBuilder::new().description(description).content(
            "application/json",
            Content::new(Some(Ref::from_schema_name(ErrorBody::name()))),
        );
        if status == "401" {
            let mut challenge = Header::new(String::schema());
            challenge.description = Some("`Bearer`".to_string());
            resp = resp.header("WWW-Authenticate", challenge);
        }
        components
            .responses
            .insert(name.to_string(), RefOr::T(resp.build()));
    }
}

/// Adds what every operation shares: title and description, the bearer scheme (required by
/// every operation that does not say otherwise), the common error answers, the tags.
fn finish(mut doc: OpenApi) -> OpenApi {
    doc.info = InfoBuilder::new()
        .title("cadre JSON API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(DESCRIPTION))
        .build();
    let components = doc.components.get_or_insert_with(Components::new);
    let scheme = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .description(Some(
            "A token (`cadre token issue`) or an API key (`cadre key create`).",
        ))
        .build();
    components
        .security_schemes
        .insert(BEARER.to_string(), RefOr::T(SecurityScheme::Http(scheme)));
    error_components(components);
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            if op.security.is_some() {
                continue;
            }
            op.security = Some(vec![SecurityRequirement::new::<_, _, &str>(BEARER, [])]);
            for status in error_statuses(op) {
                let (name, _, _) = ERRORS.iter().find(|(_, s, _)| *s == status).expect("listed");
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
            }
        }
    }
    let tags = [
        ("tasks", "Submit, read, list and cancel tasks; task types."),
        (
            "workflows",
            "Workflow definitions and signals to instances (docs/WORKFLOWS.md).",
        ),
        (
            "schedules",
            "Cron and interval schedules that submit a task or start a workflow (docs/SCHEDULES.md).",
        ),
        ("admin", "The supervisor tree, scaling and usage."),
        (
            "stats",
            "What the dashboard's charts show: finished tasks, latencies, queue depths, usage per day.",
        ),
        (
            "gateway",
            "The OpenAI-compatible model gateway (docs/GATEWAY_API.md); its errors are OpenAI's shape.",
        ),
        ("meta", "The credential and this description."),
    ];
    let tags = tags.map(|(name, about)| {
        let mut tag = Tag::new(name);
        tag.description = Some(about.to_string());
        tag
    });
    OpenApiBuilder::from(doc).tags(Some(tags)).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn doc() -> Value {
        serde_json::from_str(document_json()).unwrap()
    }

    #[test]
    fn is_openapi_3_1_with_the_bearer_scheme() {
        let d = doc();
        assert!(
            d["openapi"].as_str().unwrap().starts_with("3.1."),
            "{}",
            d["openapi"]
        );
        assert_eq!(d["components"]["securitySchemes"][BEARER]["scheme"], "bearer");
        // Only the description itself is open.
        let own = &d["paths"][PATH]["get"];
        assert_eq!(own["security"], serde_json::json!([{}]));
        assert!(own["responses"].get("401").is_none());
        let submit = &d["paths"]["/v1/tasks"]["post"];
        assert_eq!(submit["security"], serde_json::json!([{ BEARER: [] }]));
        for status in ["400", "401", "403", "413", "503"] {
            assert!(submit["responses"].get(status).is_some(), "{status}: {submit}");
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let d = doc();
        let mut ids = Vec::new();
        for item in d["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                ids.push(op["operationId"].as_str().unwrap().to_string());
            }
        }
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "{ids:?}");
    }
}
