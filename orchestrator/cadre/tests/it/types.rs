//! Task types and intake validation: ListTaskTypes, `GET /v1/types` and `cadre types` list every
//! route with its params and result schemas; Submit refuses params that do not fit the schema
//! with INVALID_ARGUMENT naming the failing path, storing nothing.

use cadre_agents::schema::validate;
use cadre_proto::v1;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::common::*;

/// Every route of the default configuration.
const DEFAULT_TYPES: [&str; 26] = [
    "intelligence.code.metrics",
    "intelligence.llm.chat",
    "intelligence.research.describe_image",
    "intelligence.text.keywords",
    "intelligence.text.language",
    "intelligence.text.readability",
    "intelligence.text.sentiment",
    "intelligence.text.summarize",
    "multimodal.artist.chart",
    "multimodal.audio.analyze",
    "multimodal.fusion.combine",
    "multimodal.vision.analyze",
    "multimodal.vision.thumbnail",
    "system.audit.verify",
    "system.config.validate",
    "system.debug.delegate",
    "system.debug.echo",
    "system.debug.fail",
    "system.debug.panic",
    "system.debug.sleep",
    "system.exec.run",
    "system.health.node",
    "system.health.probe",
    "system.http.call",
    "system.mcp.call",
    "system.monitor.metrics",
];

async fn list_types(c: &mut Tasks, prefix: &str) -> Vec<v1::TaskType> {
    c.list_task_types(v1::ListTaskTypesRequest {
        task_type_prefix: prefix.into(),
    })
    .await
    .expect("list_task_types")
    .into_inner()
    .types
}

/// An HTTP request with the node's credential; returns (status, body).
async fn http(node: &TestNode, method: &str, path: &str, body: &str) -> (u16, String) {
    let auth = format!("Bearer {}", node.credential());
    let (code, _, body) = http_exchange(node, method, path, &[("Authorization", &auth)], Some(body)).await;
    (code, body)
}

#[tokio::test]
async fn list_task_types_shows_every_route_with_its_schemas() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    let types = list_types(&mut c, "").await;
    let names: Vec<&str> = types.iter().map(|t| t.task_type.as_str()).collect();
    assert_eq!(names, DEFAULT_TYPES);
    for t in &types {
        assert!(
            !t.supervisor.is_empty() && !t.worker_kind.is_empty() && !t.executor.is_empty(),
            "{t:?}"
        );
        assert!(t.task_type.starts_with(&format!("{}.", t.supervisor)), "{t:?}");
        let params: Value = serde_json::from_str(&t.params_schema_json).unwrap();
        let result: Value = serde_json::from_str(&t.result_schema_json).unwrap();
        assert_eq!(params["type"], "object", "{}", t.task_type);
        assert!(result.is_object() || result == json!(false), "{}", t.task_type);
    }
    let summarize = types
        .iter()
        .find(|t| t.task_type == "intelligence.text.summarize")
        .unwrap();
    assert_eq!(
        (
            summarize.supervisor.as_str(),
            summarize.worker_kind.as_str(),
            summarize.executor.as_str()
        ),
        ("intelligence", "writer", "summarize")
    );
    let params: Value = serde_json::from_str(&summarize.params_schema_json).unwrap();
    assert_eq!(params["required"], json!(["text"]));
    let result: Value = serde_json::from_str(&summarize.result_schema_json).unwrap();
    assert!(result["properties"]["summary"].is_object(), "{result}");

    // A prefix narrows the list.
    let vision: Vec<String> = list_types(&mut c, "multimodal.vision")
        .await
        .into_iter()
        .map(|t| t.task_type)
        .collect();
    assert_eq!(
        vision,
        ["multimodal.vision.analyze", "multimodal.vision.thumbnail"]
    );
    assert!(list_types(&mut c, "nothing.").await.is_empty());

    // A configured route shows up under its own name, with its executor's schemas.
    let node2 = TestNode::start(
        "[routes.\"intelligence.debug.nap\"]\nsupervisor = \"intelligence\"\nworker = \"writer\"\nexecutor = \"sleep\"\n",
    )
    .await;
    let mut c2 = node2.tasks().await;
    let nap = list_types(&mut c2, "intelligence.debug").await;
    assert_eq!(nap.len(), 1, "{nap:?}");
    assert_eq!(
        (nap[0].worker_kind.as_str(), nap[0].executor.as_str()),
        ("writer", "sleep")
    );
    assert!(nap[0].params_schema_json.contains("\"ms\""), "{:?}", nap[0]);
    let err = c2
        .submit(v1::SubmitRequest {
            spec: Some(spec("intelligence.debug.nap", r#"{"ms": -1}"#)),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "spec.params_json: /ms: -1 is below the minimum 0");
}

#[tokio::test]
async fn submit_refuses_params_that_do_not_fit_naming_the_path_and_stores_nothing() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    let cases = [
        ("intelligence.text.summarize", r#"{}"#, "/text: is required"),
        (
            "intelligence.text.summarize",
            r#"{"text": ""}"#,
            "/text: is empty; the minimum length is 1",
        ),
        (
            "intelligence.text.summarize",
            r#"{"text": "a", "sentences": 500}"#,
            "/sentences: 500 is above the maximum 100",
        ),
        (
            "intelligence.text.summarize",
            r#"{"text": "a", "sentences": 2.5}"#,
            "/sentences: expected an integer, got a number",
        ),
        (
            "intelligence.text.keywords",
            r#"{"text": "a", "language": "xx"}"#,
            r#"/language: "xx" is not one of "en", "de", "fr", "es", "it", "pt", "nl""#,
        ),
        (
            "multimodal.vision.thumbnail",
            r#"{"max_side": 64}"#,
            "/image_base64: is required",
        ),
        (
            "multimodal.vision.thumbnail",
            r#"{"image_base64": "aGk=", "max_side": 5000}"#,
            "/max_side: 5000 is above the maximum 1024",
        ),
        (
            "multimodal.vision.thumbnail",
            r#"{"image_base64": "aGk=", "colour": true}"#,
            "/colour: is not allowed (known: image_base64, max_side)",
        ),
        (
            "multimodal.audio.analyze",
            r#"{"audio_base64": "aGk=", "silence_threshold_db": 3}"#,
            "/silence_threshold_db: 3 is above the maximum 0.0",
        ),
        (
            "intelligence.code.metrics",
            r#"{"code": 42}"#,
            "/code: expected a string, got an integer",
        ),
        (
            "system.debug.sleep",
            r#"{"ms": 99999999}"#,
            "/ms: 99999999 is above the maximum 3600000",
        ),
        (
            "system.debug.sleep",
            r#"{"ms": 5, "ignore_cancel": "yes"}"#,
            "/ignore_cancel: expected a boolean, got a string",
        ),
        (
            "system.debug.echo",
            r#"[1, 2]"#,
            "expected an object, got an array",
        ),
        (
            "system.debug.echo",
            r#"{"usage": {"model": "m", "tokens_in": 1}}"#,
            "/usage/tokens_out: is required",
        ),
        (
            "system.debug.delegate",
            r#"{"params": {}}"#,
            "/task_type: is required",
        ),
    ];
    for (task_type, params, why) in cases {
        let err = c
            .submit(v1::SubmitRequest {
                spec: Some(spec(task_type, params)),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{task_type} {params}: {err:?}");
        assert_eq!(
            err.message(),
            format!("spec.params_json: {why}"),
            "{task_type} {params}"
        );
    }
    // SubmitAndWait and the JSON API refuse the same way.
    let err = c
        .submit_and_wait(v1::SubmitAndWaitRequest {
            spec: Some(spec("system.debug.sleep", "{}")),
            wait_ms: 1000,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "spec.params_json: /ms: is required")
    );
    let (code, body) = http(
        &node,
        "POST",
        "/v1/tasks",
        r#"{"task_type": "intelligence.text.summarize", "params": {"text": 1}}"#,
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("spec.params_json: /text: expected a string, got an integer"),
        "{body}"
    );

    // Nothing was stored.
    let listed = c
        .list(v1::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert!(listed.is_empty(), "{listed:?}");

    // Good params still run, and their results fit the result schema.
    let types = list_types(&mut c, "").await;
    let result_schema = |task_type: &str| -> Value {
        let t = types.iter().find(|t| t.task_type == task_type).unwrap();
        serde_json::from_str(&t.result_schema_json).unwrap()
    };
    for (task_type, params) in [
        (
            "intelligence.text.summarize",
            r#"{"text": "One thing. Another thing.", "sentences": 1}"#,
        ),
        (
            "intelligence.text.keywords",
            r#"{"text": "actors supervise actors", "language": "en"}"#,
        ),
        ("system.debug.sleep", r#"{"ms": 5}"#),
        ("system.debug.echo", r#"{"anything": [1, {"goes": null}]}"#),
        (
            "intelligence.code.metrics",
            r#"{"code": "def f():\n    return 1\n", "filename": "f.py"}"#,
        ),
    ] {
        let t = run(&mut c, spec(task_type, params)).await;
        assert_eq!(state(&t), v1::TaskState::Succeeded, "{task_type}: {t:?}");
        let result: Value = serde_json::from_str(&t.result_json).unwrap();
        validate(&result_schema(task_type), &result).unwrap_or_else(|e| panic!("{task_type}: {e}"));
    }
}

#[tokio::test]
async fn cadre_types_and_get_v1_types_list_the_schemas() {
    let node = TestNode::start("").await;
    let data = node.dir.join("data");
    let cadre = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .unwrap()
    };
    let out = cadre(&["types"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("TYPE") && lines[0].contains("SUPERVISOR/WORKER"),
        "{text}"
    );
    assert_eq!(lines.len(), 1 + DEFAULT_TYPES.len(), "{text}");
    let row = |t: &str| -> Vec<String> {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{t} ")))
            .unwrap_or_else(|| panic!("no {t} in {text}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        row("multimodal.vision.thumbnail"),
        [
            "multimodal.vision.thumbnail",
            "multimodal/vision",
            "image_base64",
            "max_side"
        ]
    );
    assert_eq!(
        row("system.debug.sleep"),
        ["system.debug.sleep", "system/monitor", "ms", "ignore_cancel"]
    );
    assert_eq!(
        row("system.debug.echo"),
        ["system.debug.echo", "system/monitor", "-", "usage,..."]
    );

    let out = cadre(&["types", "intelligence.text", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let types = v["types"].as_array().unwrap();
    assert_eq!(types.len(), 5, "{v}");
    for t in types {
        assert!(
            t["task_type"].as_str().unwrap().starts_with("intelligence.text."),
            "{t}"
        );
        assert_eq!(t["supervisor"], "intelligence");
        assert_eq!(t["params_schema"]["type"], "object", "{t}");
        assert_eq!(t["result_schema"]["type"], "object", "{t}");
    }

    // GET /v1/types: the same list as JSON; a prefix narrows it; a credential is needed.
    let (code, body) = node.http_get("/v1/types").await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = v["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_type"].as_str().unwrap())
        .collect();
    assert_eq!(names, DEFAULT_TYPES);
    let analyze = &v["types"][names
        .iter()
        .position(|n| *n == "multimodal.vision.analyze")
        .unwrap()];
    assert_eq!(
        (
            &analyze["supervisor"],
            &analyze["worker_kind"],
            &analyze["executor"]
        ),
        (&json!("multimodal"), &json!("vision"), &json!("image_analyze"))
    );
    assert_eq!(analyze["params_schema"]["required"], json!(["image_base64"]));
    assert!(
        analyze["result_schema"]["properties"]["perceptual_hash"].is_object(),
        "{analyze}"
    );
    let (code, body) = node.http_get("/v1/types?type_prefix=system.debug.s").await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["types"].as_array().unwrap().len(), 1, "{v}");
    let addr = node.http.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET /v1/types HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    assert!(
        buf.starts_with("HTTP/1.0 401") || buf.starts_with("HTTP/1.1 401"),
        "{buf}"
    );
}
