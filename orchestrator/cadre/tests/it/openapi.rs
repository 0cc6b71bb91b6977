//! The OpenAPI 3.1 description at `/v1/openapi.json`, from the outside: tests/python/
//! openapi_check.py validates it with openapi-spec-validator, probes every path and method it
//! lists, generates a client from it with openapi-python-client and drives a round trip with
//! that client, validating every answer against the description with openapi-core. Here: the
//! description lists exactly the routes the faces' sources register under /v1 (save the two
//! event streams it says it leaves out), every route docs/HTTP_API.md documents, and what the
//! generated client did is what the node stored.

use std::collections::BTreeSet;
use std::path::Path;

use cadre_proto::v1;
use serde_json::Value;

use crate::clients::python_script;
use crate::common::{TestNode, http_exchange, issue, repo_root};

/// The live event streams, which the description leaves out (and says so).
const LEFT_OUT: [&str; 2] = ["/v1/events", "/v1/events/sse"];

/// (method, path) pairs, e.g. ("GET", "/v1/tasks/{id}").
type Routes = BTreeSet<(String, String)>;

/// The description as served, with no credential.
async fn served(node: &TestNode) -> Value {
    let (status, headers, body) = http_exchange(node, "GET", "/v1/openapi.json", &[], None).await;
    assert_eq!(status, 200, "{body}");
    let ct = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    assert_eq!(ct, Some("application/json"), "{headers:?}");
    serde_json::from_str(&body).expect("the description is JSON")
}

/// Every (method, path) the description lists.
fn described(doc: &Value) -> Routes {
    let mut out = Routes::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            out.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    out
}

/// The first string literal at or after `from` in `src`.
fn literal_after(src: &str, from: usize) -> Option<&str> {
    let start = from + src[from..].find('"')? + 1;
    let len = src[start..].find('"')?;
    Some(&src[start..start + len])
}

/// The routes under /v1 a source file registers: `#[utoipa::path(METHOD, path = "...")]`
/// handlers (which `utoipa_axum::routes!` registers) and plain axum `.route("...", get(..))`
/// calls (their methods read from the rest of the statement).
fn routes_in(src: &str, described: &mut Routes, plain: &mut Routes) {
    for (at, _) in src.match_indices("#[utoipa::path(") {
        let rest = &src[at + "#[utoipa::path(".len()..];
        let method = rest.split(',').next().unwrap().trim().to_ascii_uppercase();
        let path_at = rest.find("path =").expect("a path in #[utoipa::path]");
        let path = literal_after(rest, path_at).unwrap();
        described.insert((method, path.to_string()));
    }
    for (at, _) in src.match_indices(".route(") {
        let Some(path) = literal_after(src, at).filter(|p| p.starts_with("/v1")) else {
            continue;
        };
        let statement = &src[at..at + src[at..].find(")\n").unwrap_or(src.len() - at)];
        for m in ["get", "post", "put", "delete", "patch"] {
            if statement.contains(&format!("{m}(")) {
                plain.insert((m.to_ascii_uppercase(), path.to_string()));
            }
        }
    }
}

/// Walks `dir` for .rs files.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The /v1 routes the faces' sources register: (described with `#[utoipa::path]`, plain).
fn registered_routes() -> (Routes, Routes) {
    let mut files = Vec::new();
    sources(&repo_root().join("orchestrator/faces/src"), &mut files);
    let (mut described, mut plain) = (Routes::new(), Routes::new());
    for f in files {
        routes_in(&std::fs::read_to_string(&f).unwrap(), &mut described, &mut plain);
    }
    (described, plain)
}

/// The `| `METHOD /v1/...` |` rows of docs/HTTP_API.md's JSON API table.
fn documented_routes() -> Routes {
    let doc = std::fs::read_to_string(repo_root().join("docs/HTTP_API.md")).unwrap();
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(route, _)| route))
        .filter_map(|r| r.split_once(' '))
        .filter(|(m, p)| ["GET", "POST"].contains(m) && p.starts_with("/v1/"))
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

#[tokio::test]
async fn the_description_lists_exactly_the_routes_the_node_serves() {
    let node = TestNode::start("").await;
    let doc = served(&node).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    let listed = described(&doc);

    let (annotated, plain) = registered_routes();
    assert_eq!(
        listed, annotated,
        "the description vs the #[utoipa::path] handlers"
    );
    let left_out: Routes = LEFT_OUT
        .iter()
        .map(|p| ("GET".to_string(), p.to_string()))
        .collect();
    assert_eq!(plain, left_out, "a /v1 route registered without its description");
    let about = doc["info"]["description"].as_str().unwrap();
    for p in LEFT_OUT {
        assert!(
            about.contains(&format!("`GET {p}`")),
            "the description must say it leaves out {p}"
        );
    }

    let documented = documented_routes();
    assert!(documented.len() >= 14, "docs/HTTP_API.md's table: {documented:?}");
    let missing: Vec<_> = documented.difference(&listed).collect();
    assert!(missing.is_empty(), "documented but not described: {missing:?}");
}

#[tokio::test]
async fn a_generated_client_round_trips_and_every_answer_is_as_described() {
    let node = TestNode::start("").await;
    let token = issue(&node, "acme", "operator").await;
    let stdout = python_script("openapi_check.py", &["--http", &node.http], &token).await;
    assert!(
        stdout.ends_with("OK\n"),
        "openapi_check.py ends with OK:\n{stdout}"
    );

    // It probed every operation of the description...
    let probed: Routes = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("operation: "))
        .filter_map(|l| l.split_once(' '))
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(probed, described(&served(&node).await), "{stdout}");
    // ...and validated each answer it got (probes without a credential, the round trip).
    let validated: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("validated answers: "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of validated answers in:\n{stdout}"));
    assert!(
        validated >= probed.len() - 1 + 8,
        "{validated} answers validated:\n{stdout}"
    );

    // What the generated client did is what the node stored: one acme echo task, finished.
    let mut c = node.tasks().await;
    let tasks = c
        .list(v1::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks;
    let mine: Vec<_> = tasks.iter().filter(|t| t.tenant == "acme").collect();
    assert_eq!(mine.len(), 1, "{tasks:?}");
    assert_eq!(mine[0].state, v1::TaskState::Succeeded as i32, "{mine:?}");
    let spec = mine[0].spec.as_ref().unwrap();
    assert_eq!(spec.task_type, "system.debug.echo");
    let params: Value = serde_json::from_str(&spec.params_json).unwrap();
    assert_eq!(params, serde_json::json!({"text": "through a generated client"}));
}
