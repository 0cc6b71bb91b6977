//! The web dashboard: one HTML page, its scripts (ES modules: app.js imports the others),
//! stylesheet and icon, compiled into the binary so `cadre serve` needs no separate build or
//! web server.
//!
//! The page is static; everything it shows comes from the JSON API, `/v1/events` and
//! `/v1/status` with the credential pasted into its login form (see docs/HTTP_API.md). Its
//! routes need no credential. Every answer carries a strict Content-Security-Policy (scripts,
//! styles and images from this origin only; connections to this origin and WebSockets) and
//! `X-Content-Type-Options: nosniff`, so no asset can be loaded from elsewhere or run as
//! something it is not.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The policy every dashboard answer carries: nothing from another origin, no inline script
/// or style, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self' ws: wss:; \
     img-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The page at `/`.
const INDEX_HTML: &str = include_str!("dashboard/index.html");

/// The files under `/assets/`: name, content type, body.
const ASSETS: [(&str, &str, &str); 11] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/api.js"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/ui.js"),
    ),
    (
        "workflow.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/workflow.js"),
    ),
    (
        "bulk.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/bulk.js"),
    ),
    (
        "schedules.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/schedules.js"),
    ),
    (
        "pauses.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/pauses.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/charts.js"),
    ),
    (
        "llm_calls.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/llm_calls.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("dashboard/style.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("dashboard/favicon.svg"),
    ),
];

/// The dashboard's routes, `GET /` and `GET /assets/{file}`, for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{file}", get(asset))
}

async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX_HTML)
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => page(content_type, body),
        None => {
            let body = serde_json::json!({
                "error": { "code": "not_found", "message": format!("no asset {file:?}") }
            });
            let mut resp = (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
            secure(&mut resp);
            resp
        }
    }
}

/// A 200 answer with `body`; `no-cache` so a browser revalidates after an upgrade of the node.
fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response();
    secure(&mut resp);
    resp
}

/// Adds the security headers every dashboard answer carries.
fn secure(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `/assets/...` the page or stylesheet names, in order of appearance.
    fn referenced_assets(text: &str) -> Vec<String> {
        text.split("/assets/")
            .skip(1)
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_asset_the_page_names_is_served() {
        let named = referenced_assets(INDEX_HTML);
        assert!(named.contains(&"app.js".to_string()), "{named:?}");
        assert!(named.contains(&"style.css".to_string()), "{named:?}");
        for name in named {
            assert!(
                ASSETS.iter().any(|(n, _, _)| *n == name),
                "index.html names /assets/{name}, which is not served"
            );
        }
    }

    /// Every module a script imports (`from "./x.js"`), in order of appearance.
    fn imported_modules(script: &str) -> Vec<String> {
        script
            .split("from \"./")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn every_module_a_script_imports_is_served_and_preloaded() {
        let mut imported = Vec::new();
        for (name, _, body) in ASSETS.iter().filter(|(n, _, _)| n.ends_with(".js")) {
            for module in imported_modules(body) {
                assert!(
                    ASSETS.iter().any(|(n, _, _)| *n == module),
                    "{name} imports ./{module}, which is not served"
                );
                imported.push(module);
            }
        }
        for module in ["api.js", "ui.js", "workflow.js"] {
            assert!(imported.iter().any(|m| m == module), "nothing imports {module}");
            assert!(
                INDEX_HTML.contains(&format!("<link rel=\"modulepreload\" href=\"/assets/{module}\">")),
                "index.html does not preload {module}"
            );
        }
    }

    #[test]
    fn nothing_is_loaded_from_another_origin() {
        let files = std::iter::once(INDEX_HTML).chain(ASSETS.iter().map(|(_, _, body)| *body));
        for body in files {
            for needle in [
                "src=\"http",
                "href=\"http",
                "src=\"//",
                "href=\"//",
                "@import",
                "url(http",
            ] {
                assert!(!body.contains(needle), "an external reference: {needle}");
            }
        }
    }

    #[test]
    fn no_inline_script_or_style_that_the_policy_would_block() {
        assert!(
            !INDEX_HTML.contains("<style"),
            "inline <style> is blocked by style-src"
        );
        assert!(
            !INDEX_HTML.contains(" style=\""),
            "style attributes are blocked by style-src"
        );
        for (i, _) in INDEX_HTML.match_indices(" on") {
            let name: String = INDEX_HTML[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            let inline_handler = INDEX_HTML[i + 1 + name.len()..].starts_with('=');
            assert!(!inline_handler, "inline handler {name}= is blocked by script-src");
        }
        for script in INDEX_HTML.split("<script").skip(1) {
            let tag = script.split('>').next().unwrap_or_default();
            assert!(tag.contains("src=\"/assets/"), "inline <script{tag}>");
        }
    }
}
