//! The config's tests: defaults, layering, validation.

use figment::providers::Env;

use crate::config::*;

#[test]
fn defaults_are_valid_and_route_diagnostics() {
    let c = Config::default();
    c.validate().unwrap();
    let routes = c.effective_routes();
    assert_eq!(routes.resolve("system.debug.echo").unwrap().executor, "echo");
    assert_eq!(
        routes.resolve("intelligence.text.summarize").unwrap().worker,
        "writer"
    );
    let off = Config {
        diagnostics: DiagnosticsConfig { enabled: false },
        ..c
    };
    assert!(off.effective_routes().resolve("system.debug.echo").is_none());
}

#[test]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
fn file_overrides_defaults_and_env_overrides_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cadre.toml");
    std::fs::write(
        &path,
        "[server]\ngrpc_addr = \"127.0.0.1:7000\"\n[supervisors.system.pools]\nmonitor = 9\n",
    )
    .unwrap();
    let env = Env::prefixed("CADRE_TEST_NOTHING_").split("__");
    let c = Config::load_from(Some(&path), env).unwrap();
    assert_eq!(c.server.grpc_addr, "127.0.0.1:7000");
    assert_eq!(c.supervisors["system"].pools["monitor"], 9);
    assert_eq!(
        c.supervisors["system"].pools["audit"], 1,
        "maps merge with the defaults"
    );
    figment::Jail::expect_with(|jail| {
        jail.set_env("CADRE_SERVER__GRPC_ADDR", "127.0.0.1:7001");
        jail.set_env("CADRE_ENDPOINT", "http://elsewhere:1");
        let c = Config::load(Some(&path)).expect("env layered on the file");
        assert_eq!(c.server.grpc_addr, "127.0.0.1:7001");
        Ok(())
    });
}

#[test]
fn inconsistencies_are_all_reported() {
    let err = Config::from_toml_str(
        r#"
            [server]
            grpc_addr = "nope"
            [routes."intelligence.text.translate"]
            supervisor = "intelligence"
            worker = "translator"
            executor = "babel"
            "#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("server.grpc_addr"), "{err}");
    assert!(err.contains("no worker kind \"translator\""), "{err}");
    assert!(err.contains("executor \"babel\" does not exist"), "{err}");
    assert!(
        Config::from_toml_str("[server]\nbogus = 1")
            .unwrap_err()
            .to_string()
            .contains("bogus")
    );
}
