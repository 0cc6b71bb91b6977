//! MCP's wire: JSON-RPC 2.0 envelopes, error codes, replies, and the 401/403 answer with the
//! challenge MCP clients expect.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cadre_core::error::Error;
use serde_json::{Map, Value, json};

/// Protocol revisions this server speaks, newest first.
pub const PROTOCOL_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];
/// The revision offered to a client that asks for one we do not speak.
pub(crate) const DEFAULT_VERSION: &str = "2025-06-18";
/// Largest JSON-RPC message accepted.
pub(crate) const MAX_BODY: usize = 2 << 20;

// JSON-RPC error codes.
pub(crate) const PARSE_ERROR: i64 = -32700;
pub(crate) const INVALID_REQUEST: i64 = -32600;
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
pub(crate) const INVALID_PARAMS: i64 = -32602;
pub(crate) const INTERNAL_ERROR: i64 = -32603;
/// MCP: the resource does not exist.
pub(crate) const RESOURCE_NOT_FOUND: i64 = -32002;
/// cadre: the credential's role or tenant does not allow this.
pub(crate) const PERMISSION_DENIED: i64 = -32001;

/// An HTTP answer that ends a request early (boxed: a response is large).
pub(crate) type Refused = Box<Response>;

/// What a method answers: a result, or a JSON-RPC error code and message.
pub(crate) type RpcOutcome = Result<Value, (i64, String)>;

pub(crate) fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// 401/403 for a request without a usable credential, with the headers MCP clients expect.
pub(crate) fn auth_refused(headers: &HeaderMap, e: &Error) -> Response {
    let status = match e {
        Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    let challenge = format!(
        "Bearer realm=\"cadre\", resource_metadata=\"{}/.well-known/oauth-protected-resource\"",
        base_url(headers)
    );
    let mut resp = (
        status,
        axum::Json(json!({ "error": { "code": if status == StatusCode::FORBIDDEN { "permission_denied" } else { "unauthenticated" }, "message": e.to_string() } })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

pub(crate) fn rpc_error(id: &Value, code: i64, message: impl Into<String>) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message.into() } })
}

pub(crate) fn rpc_result(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

pub(crate) fn reply(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A protocol error answered at the HTTP level (bad JSON, bad envelope, session problems).
pub(crate) fn http_error(status: StatusCode, id: &Value, code: i64, message: impl Into<String>) -> Response {
    reply(status, rpc_error(id, code, message))
}

/// A JSON-RPC message as it arrived, checked: an object with `jsonrpc` "2.0", an id that is a
/// string or an integer (or none: a notification), a string method, object params.
pub(crate) struct Envelope {
    /// The request id; None for a notification.
    pub id: Option<Value>,
    /// The method.
    pub method: String,
    /// The params (`null` when absent).
    pub params: Value,
}

/// A request envelope, or the HTTP answer for one that is not (`Ok(None)`: a response to a
/// server request, accepted with nothing to do).
pub(crate) fn parse_envelope(body: &[u8]) -> Result<Option<Envelope>, Refused> {
    let bad = |id: &Value, message: &str| {
        Box::new(http_error(StatusCode::BAD_REQUEST, id, INVALID_REQUEST, message))
    };
    let msg: Value = serde_json::from_slice(body).map_err(|e| {
        http_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            PARSE_ERROR,
            format!("Parse error: {e}"),
        )
    })?;
    if msg.is_array() {
        return Err(bad(
            &Value::Null,
            "Invalid Request: batches are not supported; send one message per POST",
        ));
    }
    let Some(obj) = msg.as_object() else {
        return Err(bad(&Value::Null, "Invalid Request: not an object"));
    };
    let id = obj.get("id").cloned();
    let id_or_null = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(bad(&id_or_null, "Invalid Request: jsonrpc must be \"2.0\""));
    }
    if let Some(i) = &id
        && !(i.is_string() || i.is_i64() || i.is_u64())
    {
        return Err(bad(
            &Value::Null,
            "Invalid Request: id must be a string or an integer",
        ));
    }
    let Some(method) = method_of(obj, &id_or_null)? else {
        return Ok(None);
    };
    let params = obj.get("params").cloned().unwrap_or(Value::Null);
    if !(params.is_null() || params.is_object()) {
        return Err(bad(&id_or_null, "Invalid Request: params must be an object"));
    }
    Ok(Some(Envelope { id, method, params }))
}

/// The method of a message; None for a response to a server request (cadre sends none, so
/// there is nothing to match).
fn method_of(obj: &Map<String, Value>, id: &Value) -> Result<Option<String>, Refused> {
    match obj.get("method") {
        Some(Value::String(m)) => Ok(Some(m.clone())),
        Some(_) => Err(Box::new(http_error(
            StatusCode::BAD_REQUEST,
            id,
            INVALID_REQUEST,
            "Invalid Request: method must be a string",
        ))),
        None if obj.contains_key("result") || obj.contains_key("error") => Ok(None),
        None => Err(Box::new(http_error(
            StatusCode::BAD_REQUEST,
            id,
            INVALID_REQUEST,
            "Invalid Request: no method",
        ))),
    }
}

/// A core error as a JSON-RPC error.
pub(crate) fn denied(e: &Error) -> (i64, String) {
    match e {
        Error::PermissionDenied(_) | Error::Unauthenticated(_) => (PERMISSION_DENIED, e.to_string()),
        Error::NotFound(_) => (RESOURCE_NOT_FOUND, format!("Resource not found: {e}")),
        Error::Spec(_) => (INVALID_PARAMS, e.to_string()),
        _ => (INTERNAL_ERROR, e.to_string()),
    }
}
