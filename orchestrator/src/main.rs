//! The `cadre` binary: see [`cadre_orchestrator::cli`].
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(cadre_orchestrator::cli::main_entry());
}
