//! deploy/: every cadre process that docker-compose.yml and the Helm chart start must get a
//! configuration `cadre config check` accepts, with the same file, environment and `serve`
//! flags it is started with; and the compose file must wire the distributed mode (NATS with
//! JetStream, PostgreSQL, an orchestrator, one supervisor service per kind).
//!
//! Needs nothing but the `cadre` binary. Where more is on the machine it checks more, and says
//! so on stderr:
//! - python3 with PyYAML (system, `$CADRE_DEPLOY_PYTHON`, or the venv `deploy/validate.sh`
//!   makes in `target/deploy-tools`): the compose file and the rendered chart are also read by a
//!   real YAML parser, and what it reads must equal what the line reader below reads.
//! - helm (`$CADRE_HELM`, `target/deploy-tools/bin/helm` from `deploy/validate.sh`, or PATH):
//!   the chart is rendered (default values and overridden ones) and every Deployment's config
//!   checked. Without helm only the chart's static `files/cadre.toml` is checked, and a notice
//!   says the chart was not rendered.

use crate::common::repo_root;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The supervisor kinds built into cadre, each of which gets its own compose service and
/// Helm Deployment.
const KINDS: [&str; 3] = ["intelligence", "multimodal", "system"];

fn tools_dir() -> PathBuf {
    std::env::var_os("CADRE_DEPLOY_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/deploy-tools"))
}

// ---------------------------------------------------------------------------------------------
// Running `cadre config check` the way a container would start.

/// What one cadre process is started with.
#[derive(Debug, Clone, PartialEq)]
struct Process {
    /// Where it comes from, for messages.
    name: String,
    /// The config file on this machine (the one mounted at `--config`).
    config: PathBuf,
    /// Image ENV, then the service's / container's environment (later wins).
    env: BTreeMap<String, String>,
    /// `serve` arguments after `serve`.
    serve_args: Vec<String>,
}

/// `serve` flags that are not environment-equivalent here are refused, so a new flag in a
/// deploy file makes this test fail instead of being ignored.
fn serve_flags_as_env(args: &[String]) -> (Option<String>, BTreeMap<String, String>) {
    let mut config = None;
    let mut env = BTreeMap::new();
    let mut supervisors = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| panic!("serve flag {flag} has no value in {args:?}"))
                .clone()
        };
        match flag.as_str() {
            "--config" | "-c" => config = Some(value()),
            "--role" => {
                env.insert("CADRE_NODE__ROLE".into(), value());
            }
            "--supervisor" => supervisors.push(value()),
            "--grpc-addr" => {
                env.insert("CADRE_SERVER__GRPC_ADDR".into(), value());
            }
            "--http-addr" => {
                env.insert("CADRE_SERVER__HTTP_ADDR".into(), value());
            }
            "--log-json" => {
                env.insert("CADRE_LOG__JSON".into(), "true".into());
            }
            other => panic!("serve flag {other:?} in a deploy file: teach deploy.rs what it sets"),
        }
    }
    if !supervisors.is_empty() {
        env.insert(
            "CADRE_NODE__SUPERVISORS".into(),
            format!("[{}]", supervisors.join(",")),
        );
    }
    (config, env)
}

/// Runs `cadre config check` for `p` in a clean environment (no CADRE_* from the caller) and
/// returns the effective configuration it prints.
fn config_check(p: &Process) -> toml::Value {
    let (_, flag_env) = serve_flags_as_env(&p.serve_args);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cadre"));
    cmd.args(["config", "check"])
        .arg(&p.config)
        .current_dir(dir.path());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CADRE_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(&p.env).envs(&flag_env);
    let out = cmd.output().expect("run cadre config check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: `cadre config check {}` with env {:?} + {:?} failed:\n{}{}",
        p.name,
        p.config.display(),
        p.env,
        flag_env,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    toml::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{}: effective config is not TOML: {e}\n{stdout}", p.name))
}

fn get<'a>(v: &'a toml::Value, path: &str) -> &'a toml::Value {
    path.split('.').fold(v, |v, k| {
        v.get(k)
            .unwrap_or_else(|| panic!("effective config has no {path}"))
    })
}

fn get_str<'a>(v: &'a toml::Value, path: &str) -> &'a str {
    get(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

/// The checks every deployed process must pass, whatever started it.
fn assert_deployed_process(p: &Process, cfg: &toml::Value) {
    let role = get_str(cfg, "node.role");
    let supervisors: Vec<&str> = get(cfg, "node.supervisors")
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(get_str(cfg, "server.grpc_addr"), "0.0.0.0:50051", "{}", p.name);
    assert_eq!(get_str(cfg, "server.http_addr"), "0.0.0.0:8080", "{}", p.name);
    // Probes reach the plain-HTTP probe listener: on loopback where the container checks
    // itself (compose), on every interface where the kubelet probes (Helm).
    assert!(
        ["127.0.0.1:8081", "0.0.0.0:8081"].contains(&get_str(cfg, "server.probe_addr")),
        "{}",
        p.name
    );
    assert_eq!(get_str(cfg, "node.data_dir"), "/var/lib/cadre", "{}", p.name);
    assert!(
        get_str(cfg, "bus.nats_url").starts_with("nats://"),
        "{}: no NATS",
        p.name
    );
    assert!(!get_str(cfg, "node.id").is_empty(), "{}", p.name);
    assert_ne!(
        get_str(cfg, "node.id"),
        "cadre-1",
        "{}: every process needs its own node.id",
        p.name
    );
    assert!(
        get_str(cfg, "node.advertise_addr").ends_with(":50051"),
        "{}: advertise_addr",
        p.name
    );
    match role {
        "orchestrator" => {
            assert!(supervisors.is_empty(), "{}", p.name);
            assert!(
                get_str(cfg, "store.url").starts_with("postgres://"),
                "{}: the orchestrator keeps its store in PostgreSQL",
                p.name
            );
        }
        "supervisor" => assert_eq!(supervisors.len(), 1, "{}: one kind per process", p.name),
        other => panic!("{}: role {other:?} in distributed mode", p.name),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading YAML: a line reader for the shapes our files use, cross-checked by PyYAML when present.

/// python3 with PyYAML, if this machine has one.
fn python_with_yaml() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("CADRE_DEPLOY_PYTHON") {
        candidates.push(p.into());
    }
    candidates.push(tools_dir().join("venv/bin/python3"));
    candidates.push("python3".into());
    candidates.into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import yaml"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

/// Every document of a YAML file or text, as JSON, read by PyYAML.
fn pyyaml_docs(py: &Path, text: &str) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.yaml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(py)
        .args([
            "-c",
            "import json, sys, yaml\n\
             docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
             print(json.dumps(docs))",
        ])
        .arg(&file)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "PyYAML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A YAML scalar as written on one line: a double-quoted (JSON-compatible) string or a plain one.
fn scalar(s: &str) -> String {
    let s = s.trim();
    if s.starts_with('"') {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("quoted scalar {s:?}: {e}"))
    } else if let Some(inner) = s.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        inner.replace("''", "'")
    } else {
        s.to_string()
    }
}

/// A one-line flow sequence of double-quoted strings, `["a", "b"]` (valid JSON as written).
fn flow_list(s: &str) -> Vec<String> {
    serde_json::from_str(s.trim())
        .unwrap_or_else(|e| panic!("{s:?} is not a one-line list of double-quoted strings: {e}"))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// One compose service: the keys this test looks at.
#[derive(Debug, Default, Clone, PartialEq)]
struct ComposeService {
    image: String,
    command: Vec<String>,
    environment: BTreeMap<String, String>,
    volumes: Vec<String>,
    /// service -> condition
    depends_on: BTreeMap<String, String>,
    healthcheck: Vec<String>,
    has_build: bool,
}

/// Reads `services:` of deploy/docker-compose.yml. The file is written in plain block style
/// (two-space indents, no anchors, commands and healthchecks as one-line JSON-style lists);
/// anything else makes this reader panic rather than guess.
fn read_compose(text: &str) -> (BTreeMap<String, ComposeService>, Vec<String>) {
    let mut services: BTreeMap<String, ComposeService> = BTreeMap::new();
    let mut volumes_top = Vec::new();
    let mut top = String::new();
    let mut svc = String::new();
    let mut key = String::new();
    let mut dep = String::new();
    for (no, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        assert!(
            !t.starts_with("<<") && !t.contains(": &") && !t.contains(": *"),
            "line {}: this reader does not resolve anchors, aliases or merge keys: {line}",
            no + 1
        );
        let (k, v) = match t.split_once(':') {
            Some((k, v)) if !t.starts_with("- ") => (k.trim(), v.trim()),
            _ => ("", t),
        };
        match indent(line) {
            0 => {
                top = k.to_string();
            }
            2 if top == "services" => {
                svc = k.to_string();
                assert!(v.is_empty(), "line {}: service {svc} must be a block", no + 1);
                services.insert(svc.clone(), ComposeService::default());
            }
            2 if top == "volumes" => volumes_top.push(k.to_string()),
            4 if top == "services" => {
                key = k.to_string();
                let s = services.get_mut(&svc).unwrap();
                match k {
                    "image" => s.image = scalar(v),
                    "command" => s.command = flow_list(v),
                    "build" => s.has_build = true,
                    _ => {}
                }
            }
            6 if top == "services" => {
                let s = services.get_mut(&svc).unwrap();
                match key.as_str() {
                    "environment" => {
                        assert!(!k.is_empty(), "line {}: environment is a map here", no + 1);
                        s.environment.insert(k.to_string(), scalar(v));
                    }
                    "volumes" => s.volumes.push(scalar(t.trim_start_matches("- "))),
                    "depends_on" => {
                        dep = k.to_string();
                        s.depends_on.insert(dep.clone(), String::new());
                    }
                    "healthcheck" if k == "test" => s.healthcheck = flow_list(v),
                    _ => {}
                }
            }
            8 if top == "services" && key == "depends_on" && k == "condition" => {
                services
                    .get_mut(&svc)
                    .unwrap()
                    .depends_on
                    .insert(dep.clone(), scalar(v));
            }
            _ => {}
        }
    }
    (services, volumes_top)
}

/// The same fields, as PyYAML reads them.
fn compose_via_pyyaml(py: &Path, text: &str) -> BTreeMap<String, ComposeService> {
    let doc = pyyaml_docs(py, text).remove(0);
    let strs = |v: Option<&serde_json::Value>| -> Vec<String> {
        v.and_then(|v| v.as_array())
            .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    doc["services"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, s)| {
            let environment = s
                .get("environment")
                .and_then(|e| e.as_object())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                            (k.clone(), v)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let depends_on = s
                .get("depends_on")
                .and_then(|d| d.as_object())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v["condition"].as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let svc = ComposeService {
                image: s["image"].as_str().unwrap_or("").to_string(),
                command: strs(s.get("command")),
                environment,
                volumes: strs(s.get("volumes")),
                depends_on,
                healthcheck: strs(s.get("healthcheck").and_then(|h| h.get("test"))),
                has_build: s.get("build").is_some(),
            };
            (name.clone(), svc)
        })
        .collect()
}

/// Compose's `${VAR:-default}` / `${VAR}` interpolation, with the defaults (this test must not
/// depend on the caller's environment). A variable without a default is an error here.
fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("unclosed ${") + start;
        let inner = &rest[start + 2..end];
        match inner.split_once(":-") {
            Some((_, default)) => out.push_str(default),
            None => panic!("${{{inner}}} has no default in docker-compose.yml"),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `ENV` of the runtime stage of deploy/Dockerfile (`K=V` pairs, `\` continuations).
fn dockerfile_env(text: &str) -> BTreeMap<String, String> {
    let runtime = text
        .split("AS runtime")
        .nth(1)
        .expect("deploy/Dockerfile has a stage named runtime");
    let joined = runtime.replace("\\\n", " ");
    let mut env = BTreeMap::new();
    for line in joined.lines() {
        if let Some(rest) = line.trim().strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("ENV {pair:?}: use K=V"));
                env.insert(k.to_string(), v.to_string());
            }
        }
    }
    env
}

// ---------------------------------------------------------------------------------------------

#[test]
fn dockerfile_runs_cadre_serve_as_a_non_root_user_on_all_interfaces() {
    let text = std::fs::read_to_string(repo_root().join("deploy/Dockerfile")).unwrap();
    let env = dockerfile_env(&text);
    assert_eq!(env["CADRE_SERVER__GRPC_ADDR"], "0.0.0.0:50051");
    assert_eq!(env["CADRE_SERVER__HTTP_ADDR"], "0.0.0.0:8080");
    assert_eq!(env["CADRE_SERVER__PROBE_ADDR"], "127.0.0.1:8081");
    assert!(
        text.contains("/dev/tcp/127.0.0.1/8081"),
        "the HEALTHCHECK asks the probe listener"
    );
    assert_eq!(env["CADRE_NODE__DATA_DIR"], "/var/lib/cadre");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(lines.contains(&"USER 10001:10001"), "runs as uid/gid 10001");
    assert!(lines.contains(&"EXPOSE 50051 8080"));
    assert!(lines.contains(&r#"ENTRYPOINT ["cadre"]"#));
    assert!(lines.contains(&r#"CMD ["serve"]"#));
    assert!(text.contains("cargo build --release --locked -p cadre --bin cadre"));
    assert!(text.contains("FROM debian:${DEBIAN_RELEASE}-slim AS runtime"));
    assert!(text.contains("ARG DEBIAN_RELEASE=bookworm"));
    let ignore = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l.trim() == "target/"),
        ".dockerignore excludes target/"
    );
    // The dependency layer copies every workspace member's manifest (a member it misses
    // breaks `cargo fetch` in the image build, which no machine here can run).
    for member in workspace_members() {
        let copy = format!("COPY {member}/Cargo.toml {member}/Cargo.toml");
        assert!(lines.contains(&copy.as_str()), "deploy/Dockerfile lacks `{copy}`");
        assert!(text.contains(&member), "the stand-in sources cover {member}");
    }
}

/// The `members` of the root Cargo.toml.
fn workspace_members() -> Vec<String> {
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let root: toml::Value = toml::from_str(&manifest).unwrap();
    root["workspace"]["members"]
        .as_array()
        .expect("workspace.members")
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn compose_wires_nats_postgres_an_orchestrator_and_one_supervisor_per_kind() {
    let path = repo_root().join("deploy/docker-compose.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let (services, volumes) = read_compose(&text);

    match python_with_yaml() {
        Some(py) => {
            eprintln!("deploy: compose file also read with PyYAML ({})", py.display());
            assert_eq!(
                compose_via_pyyaml(&py, &text),
                services,
                "the line reader and PyYAML disagree about docker-compose.yml"
            );
        }
        None => eprintln!(
            "deploy: NOTICE no python3 with PyYAML here; docker-compose.yml read by the line \
             reader only (deploy/validate.sh installs PyYAML and checks it with docker compose)"
        ),
    }

    let nats = &services["nats"];
    assert!(nats.image.starts_with("nats:"), "{}", nats.image);
    assert!(
        nats.command.iter().any(|a| a == "-js" || a == "--jetstream"),
        "NATS runs with JetStream: {:?}",
        nats.command
    );
    assert!(
        nats.volumes.iter().any(|v| v.starts_with("nats-data:")),
        "JetStream keeps its store on a volume"
    );
    assert!(!nats.healthcheck.is_empty());
    let pg = &services["postgres"];
    assert!(pg.image.starts_with("postgres:"), "{}", pg.image);
    assert!(pg.healthcheck.join(" ").contains("pg_isready"));
    for v in ["nats-data", "postgres-data", "orchestrator-data"] {
        assert!(volumes.iter().any(|x| x == v), "volume {v}");
    }

    let dockerfile = std::fs::read_to_string(repo_root().join("deploy/Dockerfile")).unwrap();
    let image_env = dockerfile_env(&dockerfile);
    let mut cadre_services = Vec::new();
    for (name, s) in &services {
        if s.command.first().map(String::as_str) != Some("serve") {
            continue;
        }
        assert!(s.has_build, "{name}: builds deploy/Dockerfile");
        assert!(
            s.healthcheck.join(" ").contains("/health"),
            "{name}: healthcheck on /health"
        );
        let args = &s.command[1..];
        let (config, _) = serve_flags_as_env(args);
        let config = config.unwrap_or_else(|| panic!("{name}: serve --config"));
        // The config file is bind-mounted from deploy/: map the container path back.
        let host = s
            .volumes
            .iter()
            .find_map(|v| {
                let mut parts = v.split(':');
                let (src, dst) = (parts.next()?, parts.next()?);
                (dst == config).then(|| repo_root().join("deploy").join(src))
            })
            .unwrap_or_else(|| panic!("{name}: {config} is not mounted from deploy/"));
        let mut env = image_env.clone();
        env.extend(s.environment.iter().map(|(k, v)| (k.clone(), interpolate(v))));
        let p = Process {
            name: format!("compose service {name}"),
            config: host,
            env,
            serve_args: args.to_vec(),
        };
        let cfg = config_check(&p);
        assert_deployed_process(&p, &cfg);
        assert_eq!(get_str(&cfg, "bus.nats_url"), "nats://nats:4222", "{name}");
        assert_eq!(
            s.depends_on.get("nats").map(String::as_str),
            Some("service_healthy"),
            "{name}: waits for NATS to be healthy"
        );
        let role = get_str(&cfg, "node.role").to_string();
        if role == "orchestrator" {
            assert_eq!(
                s.depends_on.get("postgres").map(String::as_str),
                Some("service_healthy"),
                "{name}: waits for PostgreSQL to be healthy"
            );
            assert!(get_str(&cfg, "store.url").contains("@postgres:5432/"), "{name}");
        }
        let kinds: Vec<String> = get(&cfg, "node.supervisors")
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        cadre_services.push((name.clone(), role, kinds));
    }

    let orchestrators: Vec<_> = cadre_services
        .iter()
        .filter(|(_, r, _)| r == "orchestrator")
        .collect();
    assert_eq!(
        orchestrators.len(),
        1,
        "one orchestrator service: {cadre_services:?}"
    );
    let orch = &services[&orchestrators[0].0];
    assert!(
        orch.command.windows(2).any(|w| w == ["--role", "orchestrator"]),
        "the orchestrator's role is on its command line"
    );
    for kind in KINDS {
        let matching: Vec<_> = cadre_services
            .iter()
            .filter(|(_, r, k)| r == "supervisor" && k == &[kind.to_string()])
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "one supervisor service for {kind}: {cadre_services:?}"
        );
        let cmd = &services[&matching[0].0].command;
        assert!(
            cmd.windows(2).any(|w| w == ["--role", "supervisor"])
                && cmd.windows(2).any(|w| w == ["--supervisor", kind]),
            "{kind}: serve --role supervisor --supervisor {kind}, got {cmd:?}"
        );
    }
    assert_eq!(cadre_services.len(), 1 + KINDS.len(), "{cadre_services:?}");
}

/// helm, if this machine has one.
fn helm() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("CADRE_HELM") {
        candidates.push(p.into());
    }
    candidates.push(tools_dir().join("bin/helm"));
    candidates.push("helm".into());
    candidates.into_iter().find(|h| {
        Command::new(h)
            .arg("version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

/// What one rendered Deployment starts.
#[derive(Debug, Clone, PartialEq)]
struct RenderedDeployment {
    name: String,
    replicas: u32,
    args: Vec<String>,
    /// `value:` entries in order (later ones may refer to earlier ones as `$(NAME)`);
    /// `valueFrom` ones are recorded as `valueFrom:<secret>/<key>` or `valueFrom:field`.
    env: Vec<(String, String)>,
    probes: BTreeMap<String, String>,
    run_as_non_root: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Rendered {
    cadre_toml: String,
    /// Secret name -> key -> value (stringData).
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    deployments: Vec<RenderedDeployment>,
}

/// Reads `helm template` output with a line reader written for this chart's templates.
fn read_rendered(text: &str) -> Rendered {
    let mut r = Rendered {
        cadre_toml: String::new(),
        secrets: BTreeMap::new(),
        deployments: Vec::new(),
    };
    for doc in text.split("\n---\n") {
        let lines: Vec<&str> = doc
            .lines()
            .filter(|l| !l.trim_start().starts_with("# Source:"))
            .collect();
        let kind = lines.iter().find_map(|l| l.strip_prefix("kind: ")).unwrap_or("");
        let name = lines
            .iter()
            .skip_while(|l| **l != "metadata:")
            .find_map(|l| l.strip_prefix("  name: "))
            .map(scalar)
            .unwrap_or_default();
        match kind {
            "ConfigMap" => {
                let start = lines
                    .iter()
                    .position(|l| l.trim() == "cadre.toml: |")
                    .expect("ConfigMap has cadre.toml");
                let body: Vec<&str> = lines[start + 1..]
                    .iter()
                    .take_while(|l| l.trim().is_empty() || indent(l) >= 4)
                    .map(|l| if l.len() >= 4 { &l[4..] } else { "" })
                    .collect();
                r.cadre_toml = body.join("\n").trim_end().to_string() + "\n";
            }
            "Secret" => {
                let data = lines
                    .iter()
                    .skip_while(|l| **l != "stringData:")
                    .skip(1)
                    .take_while(|l| indent(l) == 2)
                    .filter_map(|l| l.trim().split_once(": "))
                    .map(|(k, v)| (k.to_string(), scalar(v)))
                    .collect();
                r.secrets.insert(name, data);
            }
            "Deployment" => {
                let find = |prefix: &str| {
                    lines
                        .iter()
                        .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_string))
                };
                let mut env = Vec::new();
                let mut probes = BTreeMap::new();
                for (i, l) in lines.iter().enumerate() {
                    let t = l.trim();
                    if let Some(n) = t.strip_prefix("- name: ")
                        && lines[..i]
                            .iter()
                            .rev()
                            .find(|p| indent(p) < indent(l))
                            .map(|p| p.trim())
                            == Some("env:")
                    {
                        let next = lines[i + 1].trim();
                        let v = if let Some(v) = next.strip_prefix("value: ") {
                            scalar(v)
                        } else if lines[i + 2].trim() == "secretKeyRef:" {
                            let sname = lines[i + 3].trim().strip_prefix("name: ").unwrap();
                            let skey = lines[i + 4].trim().strip_prefix("key: ").unwrap();
                            format!("valueFrom:{}/{}", scalar(sname), scalar(skey))
                        } else {
                            "valueFrom:field".to_string()
                        };
                        env.push((scalar(n), v));
                    }
                    if let Some(probe) = t.strip_suffix(':').filter(|p| p.ends_with("Probe")) {
                        let path = lines[i + 2].trim().strip_prefix("path: ").unwrap_or("?");
                        probes.insert(probe.to_string(), path.to_string());
                    }
                }
                r.deployments.push(RenderedDeployment {
                    name,
                    replicas: find("replicas: ").expect("replicas").parse().unwrap(),
                    args: flow_list(&find("args: ").expect("args")),
                    env,
                    probes,
                    run_as_non_root: find("runAsNonRoot: ").as_deref() == Some("true"),
                });
            }
            _ => {}
        }
    }
    r
}

/// The same, read by PyYAML.
fn rendered_via_pyyaml(py: &Path, text: &str) -> Rendered {
    let docs = pyyaml_docs(py, text);
    let mut r = Rendered {
        cadre_toml: String::new(),
        secrets: BTreeMap::new(),
        deployments: Vec::new(),
    };
    for d in docs {
        let name = d["metadata"]["name"].as_str().unwrap_or("").to_string();
        match d["kind"].as_str().unwrap_or("") {
            "ConfigMap" => {
                r.cadre_toml = d["data"]["cadre.toml"].as_str().unwrap().trim_end().to_string() + "\n"
            }
            "Secret" => {
                let data = d["stringData"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                r.secrets.insert(name, data);
            }
            "Deployment" => {
                let pod = &d["spec"]["template"]["spec"];
                let c = &pod["containers"][0];
                let env = c["env"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| {
                        let v = if let Some(v) = e.get("value") {
                            v.as_str().unwrap().to_string()
                        } else if let Some(s) = e["valueFrom"].get("secretKeyRef") {
                            format!(
                                "valueFrom:{}/{}",
                                s["name"].as_str().unwrap(),
                                s["key"].as_str().unwrap()
                            )
                        } else {
                            "valueFrom:field".to_string()
                        };
                        (e["name"].as_str().unwrap().to_string(), v)
                    })
                    .collect();
                let probes = ["livenessProbe", "readinessProbe"]
                    .iter()
                    .filter_map(|p| {
                        c.get(*p).map(|v| {
                            (
                                p.to_string(),
                                v["httpGet"]["path"].as_str().unwrap_or("?").to_string(),
                            )
                        })
                    })
                    .collect();
                r.deployments.push(RenderedDeployment {
                    name,
                    replicas: d["spec"]["replicas"].as_u64().unwrap() as u32,
                    args: c["args"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a.as_str().unwrap().to_string())
                        .collect(),
                    env,
                    probes,
                    run_as_non_root: pod["securityContext"]["runAsNonRoot"].as_bool() == Some(true),
                });
            }
            _ => {}
        }
    }
    r
}

/// Renders the chart with `set` overrides and checks every Deployment's configuration.
/// Returns the effective config per Deployment name and the rendered Deployments.
fn render_and_check(
    helm: &Path,
    py: Option<&Path>,
    set: &[&str],
) -> (BTreeMap<String, toml::Value>, Vec<RenderedDeployment>) {
    let chart = repo_root().join("deploy/helm/cadre");
    let mut cmd = Command::new(helm);
    cmd.args(["template", "cadre"]).arg(&chart);
    for s in set {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("run helm template");
    assert!(
        out.status.success(),
        "helm template {set:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let rendered = read_rendered(&text);
    if let Some(py) = py {
        assert_eq!(
            rendered_via_pyyaml(py, &text),
            rendered,
            "the line reader and PyYAML disagree about the rendered chart ({set:?})"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let toml_path = dir.path().join("cadre.toml");
    std::fs::write(&toml_path, &rendered.cadre_toml).unwrap();
    let dockerfile = std::fs::read_to_string(repo_root().join("deploy/Dockerfile")).unwrap();
    let mut effective = BTreeMap::new();
    for d in &rendered.deployments {
        assert_eq!(d.args[0], "serve", "{}", d.name);
        assert_eq!(
            d.probes,
            BTreeMap::from([
                ("livenessProbe".to_string(), "/health".to_string()),
                ("readinessProbe".to_string(), "/ready".to_string()),
            ]),
            "{}",
            d.name
        );
        assert!(d.run_as_non_root, "{}: runAsNonRoot", d.name);
        // The kubelet's view of the container's environment: image ENV, then the container's
        // env with $(VAR) references expanded; fields and secrets as the cluster would fill them.
        let mut env = dockerfile_env(&dockerfile);
        for (k, v) in &d.env {
            let v = if let Some(secret) = v.strip_prefix("valueFrom:") {
                match secret.split_once('/') {
                    Some((name, key)) => rendered.secrets[name][key].clone(),
                    None if k == "POD_IP" => "192.0.2.10".to_string(),
                    None => format!("{}-5d8f7c9b4-x2x7q", d.name),
                }
            } else {
                let mut v = v.clone();
                for (rk, rv) in &env {
                    v = v.replace(&format!("$({rk})"), rv);
                }
                v
            };
            env.insert(k.clone(), v);
        }
        let (config, _) = serve_flags_as_env(&d.args[1..]);
        assert_eq!(config.as_deref(), Some("/etc/cadre/cadre.toml"), "{}", d.name);
        let p = Process {
            name: format!("helm Deployment {} ({set:?})", d.name),
            config: toml_path.clone(),
            env,
            serve_args: d.args[1..].to_vec(),
        };
        let cfg = config_check(&p);
        assert_deployed_process(&p, &cfg);
        effective.insert(d.name.clone(), cfg);
    }
    (effective, rendered.deployments)
}

#[test]
fn helm_chart_renders_a_valid_config_for_every_deployment() {
    let chart = repo_root().join("deploy/helm/cadre");
    // The chart's static part is a plain TOML file: valid on its own, with either role.
    let files_toml = chart.join("files/cadre.toml");
    let text = std::fs::read_to_string(&files_toml).unwrap();
    assert!(
        !text.contains("{{"),
        "files/cadre.toml has no template directives"
    );
    for (role, extra) in [("orchestrator", None), ("supervisor", Some("[system]"))] {
        let mut env = BTreeMap::from([
            ("CADRE_NODE__ROLE".to_string(), role.to_string()),
            ("CADRE_BUS__NATS_URL".to_string(), "nats://nats:4222".to_string()),
        ]);
        if let Some(s) = extra {
            env.insert("CADRE_NODE__SUPERVISORS".into(), s.into());
        }
        config_check(&Process {
            name: format!("files/cadre.toml as {role}"),
            config: files_toml.clone(),
            env,
            serve_args: vec![],
        });
    }

    let Some(helm) = helm() else {
        eprintln!(
            "deploy: NOTICE helm not found ($CADRE_HELM, {}, PATH): the chart was NOT rendered by \
             this test, only files/cadre.toml was checked; deploy/validate.sh installs helm and \
             renders it",
            tools_dir().join("bin/helm").display()
        );
        return;
    };
    let py = python_with_yaml();
    eprintln!(
        "deploy: rendering the chart with {} (PyYAML cross-check: {})",
        helm.display(),
        py.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "none".into())
    );

    let (effective, deployments) = render_and_check(&helm, py.as_deref(), &[]);
    assert_eq!(deployments.len(), 1 + KINDS.len(), "{deployments:?}");
    let orch = &effective["cadre-orchestrator"];
    assert_eq!(get_str(orch, "node.role"), "orchestrator");
    assert_eq!(
        get_str(orch, "store.url"),
        "postgres://cadre:cadre@postgres:5432/cadre"
    );
    for kind in KINDS {
        let cfg = &effective[&format!("cadre-supervisor-{kind}")];
        assert_eq!(get_str(cfg, "node.role"), "supervisor");
        assert_eq!(
            get(cfg, "node.supervisors").as_array().unwrap()[0].as_str(),
            Some(kind)
        );
    }
    // The default pool sizes of values.yaml are the built-in ones.
    assert_eq!(
        get(orch, "supervisors.system.pools.monitor").as_integer(),
        Some(4)
    );

    // Values reach the processes: replicas, pool sizes, NATS URL, a shared JWT key.
    let (effective, deployments) = render_and_check(
        &helm,
        py.as_deref(),
        &[
            "orchestrator.replicas=2",
            "supervisors.system.replicas=3",
            "supervisors.system.pools.monitor=7",
            "supervisors.intelligence.pools.writer=9",
            "nats.url=nats://nats.messaging.svc:4222",
            "auth.hs256Secret.existingSecret=cadre-jwt",
        ],
    );
    let replicas: BTreeMap<&str, u32> = deployments
        .iter()
        .map(|d| (d.name.as_str(), d.replicas))
        .collect();
    assert_eq!(replicas["cadre-orchestrator"], 2);
    assert_eq!(replicas["cadre-supervisor-system"], 3);
    assert_eq!(replicas["cadre-supervisor-intelligence"], 1);
    for (name, cfg) in &effective {
        assert_eq!(
            get(cfg, "supervisors.system.pools.monitor").as_integer(),
            Some(7),
            "{name}"
        );
        assert_eq!(
            get(cfg, "supervisors.intelligence.pools.writer").as_integer(),
            Some(9),
            "{name}"
        );
        assert_eq!(
            get(cfg, "supervisors.system.pools.audit").as_integer(),
            Some(1),
            "{name}"
        );
        assert_eq!(
            get_str(cfg, "bus.nats_url"),
            "nats://nats.messaging.svc:4222",
            "{name}"
        );
        assert_eq!(
            get_str(cfg, "auth.hs256_secret_file"),
            "/etc/cadre/auth/hs256.key",
            "{name}"
        );
    }
}
