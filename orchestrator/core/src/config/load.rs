//! Loading the config: defaults < file < `CADRE_*` environment < `serve` flags, and writing
//! it back as TOML.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use crate::config::model::{Config, NodeRole};

/// Where a node's configuration came from: the file and the command-line overrides, so a
/// reload reads it exactly the way start-up did.
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    /// The file given with `--config` (None: `./cadre.toml` if present).
    pub path: Option<PathBuf>,
    /// `serve` flags, applied over file and environment.
    pub overrides: Overrides,
}

/// `cadre serve` flags that override the file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--grpc-addr`.
    pub grpc_addr: Option<String>,
    /// `--http-addr`.
    pub http_addr: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--log-json`.
    pub log_json: bool,
    /// `--role`.
    pub role: Option<NodeRole>,
    /// `--supervisor` (repeatable).
    pub supervisors: Vec<String>,
}

impl ConfigSource {
    /// Loads file and environment, applies the overrides, validates.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut cfg = Config::load(self.path.as_deref())?;
        let o = &self.overrides;
        if let Some(a) = &o.grpc_addr {
            cfg.server.grpc_addr = a.clone();
        }
        if let Some(a) = &o.http_addr {
            cfg.server.http_addr = a.clone();
        }
        if let Some(d) = &o.data_dir {
            cfg.node.data_dir = d.clone();
        }
        cfg.log.json |= o.log_json;
        if let Some(r) = o.role {
            cfg.node.role = r;
        }
        if !o.supervisors.is_empty() {
            cfg.node.supervisors = o.supervisors.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Why a configuration was refused: every problem found, one per line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be read or parsed.
    #[error("cannot load config: {0}")]
    Load(String),
    /// The values are inconsistent or out of range.
    #[error("invalid config:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Loads defaults < `path` (or `cadre.toml` in the working directory if present) <
    /// `CADRE_*` environment, then validates. Only variables with a `__` (a section and a key,
    /// like `CADRE_SERVER__GRPC_ADDR`) are config; `CADRE_ENDPOINT` and friends belong to the CLI.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(
            path,
            Env::prefixed("CADRE_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        )
    }

    /// Like [`Config::load`] with an explicit environment provider (tests use a fixed map).
    pub fn load_from(path: Option<&Path>, env: Env) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(p) => {
                if !p.is_file() {
                    return Err(ConfigError::Load(format!(
                        "{} does not exist or is not a file",
                        p.display()
                    )));
                }
                fig = fig.merge(Toml::file_exact(p));
            }
            None => fig = fig.merge(Toml::file("cadre.toml")),
        }
        let cfg: Config = fig
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a TOML document on top of the defaults (no environment), then validates.
    pub fn from_toml_str(toml: &str) -> Result<Config, ConfigError> {
        let cfg: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The effective configuration as TOML, as `cadre config check` prints it.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }
}
