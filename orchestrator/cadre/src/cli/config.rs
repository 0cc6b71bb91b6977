//! `cadre config check`: validates a config file (with defaults and `CADRE_*` env applied) and
//! prints the effective configuration. Needs no node.

use anyhow::Result;
use cadre_core::config::Config;

use super::args::ConfigCommand;

/// Runs a `cadre config` subcommand; exit code 0 when the config is valid.
pub(super) fn config(command: ConfigCommand) -> Result<i32> {
    match command {
        ConfigCommand::Check { file } => {
            let cfg = Config::load(file.as_deref())?;
            println!("# effective configuration (defaults < file < CADRE_* env): valid");
            print!("{}", cfg.to_toml());
            Ok(0)
        }
    }
}
