//! Allow-listed local commands (`exec`): a task names a command configured in
//! `[executors.exec.commands.<name>]` and may add arguments, within that command's limits.
//!
//! Arguments go to the program as argv, never through a shell. The environment is cleared
//! except for the variables the command allows. Limits are applied without unsafe code by
//! spawning through util-linux: `prlimit --as=<bytes> --` for the memory limit and
//! `unshare --net --` for `network = "none"` (a fresh network namespace holding only a down
//! `lo`). Both execute the program in place, so the exit status is the program's own. If a
//! limit cannot be applied (the tool is missing, or `unshare` is not permitted because the
//! agent is not root), the task fails with [`ExecError::Fatal`]: the command never runs with
//! less isolation than configured.
//!
//! The command runs in its own process group. When it exits, times out or is cancelled, the
//! whole group is killed, so nothing it started in the background outlives the task.
//!
//! A non-zero exit is a result (`exit_code`, `success: false`), not an error, unless the command
//! sets `fail_on_nonzero`: then it is [`ExecError::Fatal`] with the code and the end of stderr.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cadre_agents::ExecutorRegistry;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::support::params_schema as schema;

/// Longest wall-time limit a command may configure (a day).
const MAX_TIMEOUT_MS: u64 = 24 * 3_600_000;
/// Most output kept per stream, whatever a command configures (64 MiB).
const MAX_OUTPUT_BYTES: usize = 64 << 20;
/// Largest stdin a command may accept (64 MiB).
const MAX_STDIN_BYTES: usize = 64 << 20;
/// Most arguments a task may add (the kernel's own limits are far higher).
const MAX_ARGS: usize = 1024;
/// Longest single argument (Linux's MAX_ARG_STRLEN).
const MAX_ARG_BYTES: usize = 128 << 10;
/// Smallest memory limit accepted: below this not even a dynamic loader starts.
const MIN_MEMORY_LIMIT: u64 = 1 << 20;
/// Where the util-linux tools are looked for (absolute paths only: `PATH` is not consulted).
const TOOL_DIRS: [&str; 4] = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"];

/// Config section for allow-listed local commands (`[executors.exec]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecConfig {
    /// The commands tasks may run, by the name their params use (`{"command": "<name>"}`).
    /// Empty by default: `exec` then refuses every task.
    pub commands: BTreeMap<String, CommandConfig>,
}

/// Whether a command may use the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A fresh network namespace with no interface but `lo` (`unshare --net`); needs root.
    #[default]
    None,
    /// The host's network, as the agent has it.
    Host,
}

/// One allow-listed command (`[executors.exec.commands.<name>]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandConfig {
    /// Absolute path of the program; it is executed directly, never through a shell or `PATH`.
    pub program: PathBuf,
    /// Arguments always passed first, before any the task adds.
    pub args: Vec<String>,
    /// Most arguments a task may add (default 0: the command takes none from params).
    pub max_args: usize,
    /// Longest argument a task may add, in bytes (default 4096).
    pub max_arg_bytes: usize,
    /// Whether task arguments may start with `-` (default false), so a task cannot slip an
    /// option such as `--output=/etc/passwd` to a program that only expects operands.
    pub allow_options: bool,
    /// Working directory (absolute); the agent's own when unset.
    pub working_dir: Option<PathBuf>,
    /// Names of environment variables passed through from the agent's environment; every other
    /// variable is cleared (so `PATH` is unset unless listed).
    pub env: Vec<String>,
    /// Wall-time limit in milliseconds (default 30 000); the process group is killed after it
    /// and the task fails.
    pub timeout_ms: u64,
    /// Address-space limit in bytes applied with `prlimit --as` (default 1 GiB; 0 = none).
    pub memory_limit_bytes: u64,
    /// Most bytes kept of stdout, and of stderr, each (default 1 MiB); the rest is read and
    /// dropped, and the result says the stream was truncated.
    pub max_output_bytes: usize,
    /// Largest `stdin` a task may send, in bytes (default 1 MiB).
    pub max_stdin_bytes: usize,
    /// `"none"` (default): no network; `"host"`: the host's network.
    pub network: Network,
    /// Fail the task (Fatal) when the command exits non-zero or is killed by a signal, instead
    /// of returning the exit status as the result (default false).
    pub fail_on_nonzero: bool,
}

impl Default for CommandConfig {
    fn default() -> Self {
        CommandConfig {
            program: PathBuf::new(),
            args: Vec::new(),
            max_args: 0,
            max_arg_bytes: 4096,
            allow_options: false,
            working_dir: None,
            env: Vec::new(),
            timeout_ms: 30_000,
            memory_limit_bytes: 1 << 30,
            max_output_bytes: 1 << 20,
            max_stdin_bytes: 1 << 20,
            network: Network::None,
            fail_on_nonzero: false,
        }
    }
}

impl ExecConfig {
    /// Problems with this section, each prefixed with its path under `executors`.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        for (name, c) in &self.commands {
            if !valid_name(name) {
                errs.push(format!(
                    "exec.commands.{name:?}: a command name is 1-64 letters, digits, '_', '-' or '.'"
                ));
            }
            let mut bad =
                |field: &str, what: String| errs.push(format!("exec.commands.{name}.{field}: {what}"));
            if !c.program.is_absolute() {
                bad("program", "must be an absolute path".into());
            }
            if let Some(dir) = &c.working_dir
                && !dir.is_absolute()
            {
                bad("working_dir", "must be an absolute path".into());
            }
            if c.args.iter().any(|a| a.contains('\0')) {
                bad("args", "an argument contains a NUL byte".into());
            }
            if c.max_args > MAX_ARGS {
                bad("max_args", format!("must be at most {MAX_ARGS}"));
            }
            if !(1..=MAX_ARG_BYTES).contains(&c.max_arg_bytes) {
                bad("max_arg_bytes", format!("must be 1-{MAX_ARG_BYTES}"));
            }
            for var in &c.env {
                if var.is_empty() || var.contains(['=', '\0']) {
                    bad("env", format!("{var:?} is not a variable name"));
                }
            }
            if !(1..=MAX_TIMEOUT_MS).contains(&c.timeout_ms) {
                bad("timeout_ms", format!("must be 1-{MAX_TIMEOUT_MS}"));
            }
            if c.memory_limit_bytes != 0 && c.memory_limit_bytes < MIN_MEMORY_LIMIT {
                bad(
                    "memory_limit_bytes",
                    format!("must be 0 (no limit) or at least {MIN_MEMORY_LIMIT}"),
                );
            }
            if !(1..=MAX_OUTPUT_BYTES).contains(&c.max_output_bytes) {
                bad("max_output_bytes", format!("must be 1-{MAX_OUTPUT_BYTES}"));
            }
            if c.max_stdin_bytes > MAX_STDIN_BYTES {
                bad("max_stdin_bytes", format!("must be at most {MAX_STDIN_BYTES}"));
            }
        }
        errs
    }
}

/// Whether `name` may name a configured command (or webhook): 1-64 ASCII letters, digits,
/// `_`, `-` or `.`.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Registers `exec` with the configured commands (always, so a route to it is valid even when
/// no command is configured; its tasks then fail with InvalidParams).
pub(crate) fn register(r: &mut ExecutorRegistry, config: &ExecConfig) {
    r.register("exec", Arc::new(Exec::new(config.clone())));
}

/// How the executor reads the agent's environment (the process environment in production, a
/// map in tests, since setting process variables is unsafe).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<OsString> + Send + Sync>;

/// `system.exec.run`: `{"command": "<name>", "args": [..], "stdin": ".."}` -> [`ExecResult`].
pub struct Exec {
    /// The allow-listed commands.
    config: ExecConfig,
    /// `prlimit`, when found at startup.
    prlimit: Option<PathBuf>,
    /// `unshare`, when found at startup.
    unshare: Option<PathBuf>,
    /// Where allow-listed variables are read from.
    env: EnvLookup,
    /// Whether `unshare --net` works here, found out on first use and then kept.
    isolation: OnceCell<()>,
}

impl Exec {
    /// An executor for `config`, reading variables from the process environment.
    pub fn new(config: ExecConfig) -> Self {
        Exec::with_env(config, Arc::new(|k: &str| std::env::var_os(k)))
    }

    /// An executor for `config` reading allow-listed variables through `env`.
    pub fn with_env(config: ExecConfig, env: EnvLookup) -> Self {
        Exec {
            config,
            prlimit: find_tool("prlimit"),
            unshare: find_tool("unshare"),
            env,
            isolation: OnceCell::new(),
        }
    }

    /// Checks once that `unshare --net` can create a namespace here.
    async fn network_isolation(&self) -> Result<(), ExecError> {
        // Only success is kept: a probe that failed (or was slow on a loaded host) is tried
        // again by the next task.
        let r = self
            .isolation
            .get_or_try_init(|| async {
                let Some(unshare) = &self.unshare else {
                    return Err(format!("unshare not found in {}", TOOL_DIRS.join(", ")));
                };
                let probe = Command::new(unshare)
                    .args(["--net", "--"])
                    .arg(unshare)
                    .arg("--version")
                    .env_clear()
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .output();
                match tokio::time::timeout(Duration::from_secs(10), probe).await {
                    Ok(Ok(out)) if out.status.success() => Ok(()),
                    Ok(Ok(out)) => Err(format!(
                        "`unshare --net` failed ({}): {} (it needs root or CAP_SYS_ADMIN)",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )),
                    Ok(Err(e)) => Err(format!("cannot run unshare: {e}")),
                    Err(_) => Err("`unshare --net` did not finish in 10 s".into()),
                }
            })
            .await;
        r.map(|_| ()).map_err(|e| {
            ExecError::Fatal(format!(
                "network isolation is configured (network = \"none\") but unavailable: {e}"
            ))
        })
    }
}

fn find_tool(name: &str) -> Option<PathBuf> {
    TOOL_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecParams {
    command: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    stdin: Option<String>,
}

/// What [`Exec`] returns when the command ran to its end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecResult {
    /// The configured command's name.
    pub command: String,
    /// Exit code; null when a signal ended the process.
    pub exit_code: Option<i32>,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    /// Whether it exited with code 0.
    pub success: bool,
    /// Standard output (UTF-8, invalid bytes replaced), at most `max_output_bytes`.
    pub stdout: String,
    /// Standard error, likewise.
    pub stderr: String,
    /// Whether stdout was longer than kept.
    pub stdout_truncated: bool,
    /// Whether stderr was longer than kept.
    pub stderr_truncated: bool,
    /// Wall time from start to exit in milliseconds.
    pub duration_ms: u64,
    /// Whether the command ran without network (`network = "none"`).
    pub network_isolated: bool,
}

#[async_trait]
impl Executor for Exec {
    fn sandboxed(&self, params: &Value) -> Result<(), String> {
        let Some(name) = params.get("command").and_then(Value::as_str) else {
            return Err("tasks must name their command".into());
        };
        let Some(cmd) = self.config.commands.get(name) else {
            return Err(format!("command {name:?} is not configured"));
        };
        if cmd.network != Network::None {
            return Err(format!(
                "needs no network, and command {name:?} has network = \"host\""
            ));
        }
        if cmd.memory_limit_bytes == 0 {
            return Err(format!("needs a memory limit, and command {name:?} has none"));
        }
        Ok(())
    }

    fn params_schema(&self) -> Option<Value> {
        let names: Vec<&str> = self.config.commands.keys().map(String::as_str).collect();
        let command = if names.is_empty() {
            schema::text("a configured command (none is configured)")
        } else {
            schema::one_of(&names, "the configured command to run")
        };
        let most_args = self.config.commands.values().map(|c| c.max_args).max();
        let mut args = schema::array(
            json!({ "type": "string" }),
            "arguments added after the command's fixed ones, as argv (no shell)",
        );
        args["maxItems"] = json!(most_args.unwrap_or(0));
        Some(schema::object(
            &["command"],
            &[
                ("command", command),
                ("args", args),
                (
                    "stdin",
                    schema::string("text written to the command's standard input"),
                ),
            ],
        ))
    }

    fn result_schema(&self) -> Option<Value> {
        Some(schema::record(&[
            ("command", schema::text("the command's name")),
            (
                "exit_code",
                json!({ "type": ["integer", "null"], "description": "exit code; null when killed by a signal" }),
            ),
            (
                "signal",
                schema::nullable(schema::count("the signal that ended it")),
            ),
            ("success", schema::boolean("exit code 0")),
            ("stdout", schema::string("standard output, possibly truncated")),
            ("stderr", schema::string("standard error, possibly truncated")),
            ("stdout_truncated", schema::boolean("stdout was longer than kept")),
            ("stderr_truncated", schema::boolean("stderr was longer than kept")),
            ("duration_ms", schema::count("wall time in milliseconds")),
            ("network_isolated", schema::boolean("ran without network")),
        ]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: ExecParams = decode_params(&params)?;
        let cmd = self.command(&p.command)?;
        check_args(cmd, &p)?;
        if !cmd.program.is_file() {
            return Err(ExecError::Fatal(format!(
                "command {}: program {} does not exist",
                p.command,
                cmd.program.display()
            )));
        }
        let isolated = cmd.network == Network::None;
        let argv = self.argv(cmd, &p, isolated).await?;
        let process = self.process(cmd, &argv, p.stdin.is_some());

        ctx.progress(0.0, format!("running {}", p.command));
        let started = Instant::now();
        let (status, (stdout, stdout_truncated), (stderr, stderr_truncated)) =
            run(&ctx, process, cmd, &p).await?;
        let result = ExecResult {
            command: p.command.clone(),
            exit_code: status.code(),
            signal: status.signal(),
            success: status.success(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            stdout_truncated,
            stderr_truncated,
            duration_ms: started.elapsed().as_millis() as u64,
            network_isolated: isolated,
        };
        if cmd.fail_on_nonzero && !result.success {
            return Err(nonzero(&result));
        }
        serde_json::to_value(result).map_err(|e| ExecError::Fatal(e.to_string()))
    }
}

impl Exec {
    /// The configured command `name`, or the error that lists the configured ones.
    fn command(&self, name: &str) -> Result<&CommandConfig, ExecError> {
        self.config.commands.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.config.commands.keys().map(String::as_str).collect();
            ExecError::InvalidParams(format!(
                "unknown command {:?} (configured: {})",
                name,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// The launcher chain, then the program with its fixed and its task's arguments: each tool
    /// applies its limit and executes the next in place.
    async fn argv(
        &self,
        cmd: &CommandConfig,
        p: &ExecParams,
        isolated: bool,
    ) -> Result<Vec<OsString>, ExecError> {
        let mut argv: Vec<OsString> = Vec::new();
        if cmd.memory_limit_bytes > 0 {
            let Some(prlimit) = &self.prlimit else {
                return Err(ExecError::Fatal(format!(
                    "command {}: a memory limit is configured but prlimit was not found in {}",
                    p.command,
                    TOOL_DIRS.join(", ")
                )));
            };
            argv.push(prlimit.into());
            argv.push(format!("--as={}", cmd.memory_limit_bytes).into());
            argv.push("--".into());
        }
        if isolated {
            self.network_isolation().await?;
            if let Some(unshare) = &self.unshare {
                argv.extend([unshare.into(), "--net".into(), "--".into()]);
            }
        }
        argv.push(cmd.program.clone().into());
        argv.extend(cmd.args.iter().map(OsString::from));
        argv.extend(p.args.iter().map(OsString::from));
        Ok(argv)
    }

    /// The process to start for `argv`: no shell, only the variables the command allows, stdin
    /// piped when the task has some, output piped, in a process group of its own.
    fn process(&self, cmd: &CommandConfig, argv: &[OsString], stdin: bool) -> Command {
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .env_clear()
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for var in &cmd.env {
            if let Some(value) = (self.env)(var) {
                command.env(var, value);
            }
        }
        if let Some(dir) = &cmd.working_dir {
            command.current_dir(dir);
        }
        command
    }
}

/// A command's exit status and its stdout and stderr, each with whether more came than kept.
type Finished = (ExitStatus, (Vec<u8>, bool), (Vec<u8>, bool));

/// Starts `process` and runs it to its end: writes the task's stdin, keeps at most
/// `max_output_bytes` of each stream, and kills the whole group when the command exits, times
/// out or the task is cancelled.
async fn run(
    ctx: &ExecContext,
    mut process: Command,
    cmd: &CommandConfig,
    p: &ExecParams,
) -> Result<Finished, ExecError> {
    let mut child = process
        .spawn()
        .map_err(|e| ExecError::Fatal(format!("command {}: cannot start: {e}", p.command)))?;
    let mut group = Group(child.id());
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let stdin = child.stdin.take();
    let max = cmd.max_output_bytes;

    let ended = {
        let run = async {
            let wait = async {
                let status = child.wait().await;
                // Whatever the command left running in its group goes with it (and lets
                // the pipes it held reach end of file).
                group.kill();
                status
            };
            let feed = async {
                if let (Some(mut w), Some(text)) = (stdin, &p.stdin) {
                    // A command that exits without reading all of stdin is not an error.
                    let _ = w.write_all(text.as_bytes()).await;
                    let _ = w.shutdown().await;
                }
            };
            let (status, out, err, ()) =
                tokio::join!(wait, read_capped(stdout, max), read_capped(stderr, max), feed);
            (status, out, err)
        };
        tokio::select! {
            r = run => Ended::Done(r),
            _ = tokio::time::sleep(Duration::from_millis(cmd.timeout_ms)) => Ended::TimedOut,
            _ = ctx.cancel.cancelled() => Ended::Cancelled,
        }
    };
    let (status, stdout, stderr) = match ended {
        Ended::Done(r) => r,
        Ended::TimedOut | Ended::Cancelled => {
            group.kill();
            // SIGKILL the program itself too (in case it left its group) and reap it.
            let _ = child.kill().await;
            group.disarm();
            return Err(match ended {
                Ended::Cancelled => ExecError::Cancelled,
                _ => ExecError::Fatal(format!(
                    "command {} timed out after {} ms and was killed",
                    p.command, cmd.timeout_ms
                )),
            });
        }
    };
    group.disarm();
    let status =
        status.map_err(|e| ExecError::Fatal(format!("command {}: waiting for it failed: {e}", p.command)))?;
    Ok((status, stdout, stderr))
}

/// The error for a command with `fail_on_nonzero` that did not exit with 0: how it ended and
/// the end of its stderr.
fn nonzero(result: &ExecResult) -> ExecError {
    let how = match (result.exit_code, result.signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => "failed".into(),
    };
    ExecError::Fatal(format!(
        "command {} {how}: {}",
        result.command,
        tail(&result.stderr, 500)
    ))
}

/// How a run ended.
enum Ended<T> {
    /// The command exited and its output was read.
    Done(T),
    /// The wall-time limit passed first.
    TimedOut,
    /// The task was cancelled first.
    Cancelled,
}

/// The command's process group; dropping it armed (the worker dropped the attempt) kills it.
struct Group(Option<u32>);

impl Group {
    /// SIGKILL to every process in the group. The group's leader is not reaped before this runs
    /// on timeout or cancel, so its id cannot have been reused; after a normal exit the kernel
    /// keeps the id while any member lives.
    fn kill(&self) {
        // Never 0 or 1: kill(0) and kill(-1) would signal far more than the command.
        let pid = self
            .0
            .and_then(|id| i32::try_from(id).ok())
            .filter(|id| *id > 1)
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }

    /// The group has been dealt with; dropping no longer kills it.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a stream to its end, keeping at most `max` bytes; the flag says whether more came.
async fn read_capped(reader: Option<impl AsyncRead + Unpin>, max: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let Some(mut reader) = reader else {
        return (kept, truncated);
    };
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
    (kept, truncated)
}

fn check_args(cmd: &CommandConfig, p: &ExecParams) -> Result<(), ExecError> {
    let bad = |what: String| Err(ExecError::InvalidParams(format!("command {}: {what}", p.command)));
    if p.args.len() > cmd.max_args {
        return bad(format!(
            "{} arguments given, at most {} allowed",
            p.args.len(),
            cmd.max_args
        ));
    }
    for (i, a) in p.args.iter().enumerate() {
        if a.len() > cmd.max_arg_bytes {
            return bad(format!(
                "args[{i}] is {} bytes, at most {} allowed",
                a.len(),
                cmd.max_arg_bytes
            ));
        }
        if a.contains('\0') {
            return bad(format!("args[{i}] contains a NUL byte"));
        }
        if a.starts_with('-') && !cmd.allow_options {
            return bad(format!("args[{i}] starts with '-' and options are not allowed"));
        }
    }
    if let Some(stdin) = &p.stdin
        && stdin.len() > cmd.max_stdin_bytes
    {
        return bad(format!(
            "stdin is {} bytes, at most {} allowed",
            stdin.len(),
            cmd.max_stdin_bytes
        ));
    }
    Ok(())
}

/// The last `max` bytes of `s` (at a character boundary), trimmed.
fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].trim()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use cadre_agents::schema::validate;

    use super::*;
    use crate::support::test_support::ctx;

    fn config(commands: &[(&str, CommandConfig)]) -> ExecConfig {
        ExecConfig {
            commands: commands.iter().map(|(n, c)| (n.to_string(), c.clone())).collect(),
        }
    }

    /// What a fortress task may run: only a configured command with no network and a
    /// memory limit.
    #[test]
    fn sandboxed_means_no_network_and_a_memory_limit() {
        let mut open = command("/usr/bin/tr", &[]);
        open.network = Network::Host;
        let mut unbounded = command("/usr/bin/tr", &[]);
        unbounded.memory_limit_bytes = 0;
        let exec = Exec::new(config(&[
            ("sealed", command("/usr/bin/tr", &[])),
            ("open", open),
            ("unbounded", unbounded),
        ]));
        assert_eq!(
            exec.sandboxed(&serde_json::json!({ "command": "sealed" })),
            Ok(())
        );
        for (params, why) in [
            (serde_json::json!({ "command": "open" }), "needs no network"),
            (
                serde_json::json!({ "command": "unbounded" }),
                "needs a memory limit",
            ),
            (serde_json::json!({ "command": "nope" }), "is not configured"),
            (serde_json::json!({}), "must name their command"),
        ] {
            let err = exec.sandboxed(&params).unwrap_err();
            assert!(err.contains(why), "{params}: {err}");
        }
    }

    fn command(program: &str, args: &[&str]) -> CommandConfig {
        CommandConfig {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            max_args: 4,
            timeout_ms: 20_000,
            ..Default::default()
        }
    }

    fn exec(name: &str, c: CommandConfig) -> Exec {
        Exec::new(config(&[(name, c)]))
    }

    /// Runs a task; a result must fit the published result schema.
    async fn run(e: &Exec, params: Value) -> Result<ExecResult, ExecError> {
        validate(&e.params_schema().unwrap(), &params).unwrap();
        let r = e.execute(ctx(), params).await?;
        validate(&e.result_schema().unwrap(), &r).unwrap_or_else(|err| panic!("{r}: {err}"));
        Ok(serde_json::from_value(r).unwrap())
    }

    /// Whether a process exists and is not a zombie.
    fn running(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => false,
            Ok(stat) => {
                let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
                state != Some('Z')
            }
        }
    }

    /// Waits (bounded) until `pid` no longer runs.
    async fn gone(pid: u32) -> bool {
        for _ in 0..200 {
            if !running(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    /// Waits (bounded) until a pid file is written, and reads it.
    async fn pid_from(file: &Path) -> u32 {
        for _ in 0..400 {
            if let Ok(s) = std::fs::read_to_string(file)
                && let Ok(pid) = s.trim().parse()
            {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no pid in {}", file.display());
    }

    /// A shell that starts `sleep 100` in the background, writes its pid to `$1` and waits.
    fn background_sleeper() -> CommandConfig {
        let mut c = command(
            "/bin/sh",
            &["-c", "/usr/bin/sleep 100 & echo $! > \"$1\"; wait", "sh"],
        );
        c.max_arg_bytes = 4096;
        c
    }

    #[tokio::test]
    async fn passes_arguments_as_argv() {
        let e = exec("echo", command("/usr/bin/echo", &["fixed"]));
        let r = run(&e, json!({ "command": "echo", "args": ["a b", "$HOME", ";ls"] }))
            .await
            .unwrap();
        assert_eq!(r.stdout, "fixed a b $HOME ;ls\n");
        assert_eq!((r.exit_code, r.signal, r.success), (Some(0), None, true));
        assert!(!r.stdout_truncated && !r.stderr_truncated);
        assert!(r.network_isolated);
        assert_eq!(r.command, "echo");
    }

    #[tokio::test]
    async fn writes_stdin() {
        let e = exec("cat", command("/usr/bin/cat", &[]));
        let r = run(&e, json!({ "command": "cat", "stdin": "hello\nworld" }))
            .await
            .unwrap();
        assert_eq!(r.stdout, "hello\nworld");
        // Without stdin the command reads end of file at once.
        let r = run(&e, json!({ "command": "cat" })).await.unwrap();
        assert_eq!((r.stdout.as_str(), r.success), ("", true));
    }

    #[tokio::test]
    async fn refuses_what_the_command_does_not_allow() {
        let mut c = command("/usr/bin/echo", &[]);
        c.max_args = 2;
        c.max_arg_bytes = 5;
        c.max_stdin_bytes = 3;
        let e = exec("echo", c);
        let cases = [
            (
                json!({ "command": "rm" }),
                "unknown command \"rm\" (configured: echo)",
            ),
            (
                json!({ "command": "echo", "args": ["a", "b", "c"] }),
                "3 arguments given, at most 2",
            ),
            (
                json!({ "command": "echo", "args": ["123456"] }),
                "args[0] is 6 bytes, at most 5",
            ),
            (
                json!({ "command": "echo", "args": ["a", "-rf"] }),
                "args[1] starts with '-'",
            ),
            (
                json!({ "command": "echo", "args": ["a\u{0}b"] }),
                "args[0] contains a NUL byte",
            ),
            (
                json!({ "command": "echo", "stdin": "long" }),
                "stdin is 4 bytes, at most 3",
            ),
            (json!({ "command": "echo", "argv": [] }), "unknown field `argv`"),
            (json!({ "args": [] }), "missing field `command`"),
        ];
        for (params, want) in cases {
            match e.execute(ctx(), params.clone()).await {
                Err(ExecError::InvalidParams(m)) => assert!(m.contains(want), "{params}: {m}"),
                other => panic!("{params}: {other:?}"),
            }
        }
        let none = Exec::new(ExecConfig::default());
        let err = none.execute(ctx(), json!({ "command": "x" })).await.unwrap_err();
        assert_eq!(
            err,
            ExecError::InvalidParams("unknown command \"x\" (configured: none)".into())
        );
    }

    #[tokio::test]
    async fn options_pass_when_allowed() {
        let mut c = command("/usr/bin/echo", &[]);
        c.allow_options = true;
        let r = run(
            &exec("echo", c),
            json!({ "command": "echo", "args": ["-n", "x"] }),
        )
        .await
        .unwrap();
        assert_eq!(r.stdout, "x");
    }

    #[tokio::test]
    async fn a_nonzero_exit_is_a_result_unless_configured_to_fail() {
        let mut c = command("/bin/sh", &["-c", "echo oops >&2; exit 3"]);
        let r = run(&exec("sh", c.clone()), json!({ "command": "sh" }))
            .await
            .unwrap();
        assert_eq!((r.exit_code, r.success), (Some(3), false));
        assert_eq!(r.stderr, "oops\n");
        c.fail_on_nonzero = true;
        let err = exec("sh", c).execute(ctx(), json!({ "command": "sh" })).await;
        assert_eq!(
            err,
            Err(ExecError::Fatal("command sh exited with code 3: oops".into()))
        );
    }

    #[tokio::test]
    async fn a_signal_is_reported() {
        let c = command("/bin/sh", &["-c", "kill -TERM $$"]);
        let r = run(&exec("sh", c), json!({ "command": "sh" })).await.unwrap();
        assert_eq!((r.exit_code, r.signal, r.success), (None, Some(15), false));
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pid");
        let mut c = background_sleeper();
        c.timeout_ms = 300;
        let e = exec("sleeper", c);
        let err = e
            .execute(ctx(), json!({ "command": "sleeper", "args": [file] }))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ExecError::Fatal("command sleeper timed out after 300 ms and was killed".into())
        );
        let pid = pid_from(&file).await;
        assert!(gone(pid).await, "sleep {pid} outlived the timeout");
    }

    #[tokio::test]
    async fn cancelling_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pid");
        let e = Arc::new(exec("sleeper", background_sleeper()));
        let c = ctx();
        let cancel = c.cancel.clone();
        let task = tokio::spawn({
            let e = e.clone();
            let params = json!({ "command": "sleeper", "args": [file] });
            async move { e.execute(c, params).await }
        });
        let pid = pid_from(&file).await;
        assert!(running(pid));
        cancel.cancel();
        assert_eq!(task.await.unwrap(), Err(ExecError::Cancelled));
        assert!(gone(pid).await, "sleep {pid} outlived the cancel");
    }

    #[tokio::test]
    async fn what_a_finished_command_left_running_is_killed() {
        let c = command("/bin/sh", &["-c", "/usr/bin/sleep 100 & echo $!"]);
        let r = run(&exec("sh", c), json!({ "command": "sh" })).await.unwrap();
        let pid: u32 = r.stdout.trim().parse().unwrap();
        assert!(r.success);
        assert!(gone(pid).await, "sleep {pid} outlived its command");
    }

    #[tokio::test]
    async fn output_is_truncated_to_the_limit() {
        let mut c = command("/usr/bin/head", &["-c", "10M", "/dev/zero"]);
        c.max_output_bytes = 1000;
        let r = run(&exec("zeros", c), json!({ "command": "zeros" }))
            .await
            .unwrap();
        assert_eq!(r.stdout.len(), 1000);
        assert!(r.stdout_truncated && !r.stderr_truncated && r.success);
    }

    #[tokio::test]
    async fn the_memory_limit_holds() {
        let mut c = command(
            "/usr/bin/python3",
            &["-c", "x = bytearray(512 << 20); print(len(x))"],
        );
        c.memory_limit_bytes = 64 << 20;
        let r = run(&exec("py", c.clone()), json!({ "command": "py" }))
            .await
            .unwrap();
        assert!(!r.success, "{r:?}");
        assert!(r.stderr.contains("MemoryError"), "{}", r.stderr);
        // The same program without the limit allocates fine.
        c.memory_limit_bytes = 0;
        let r = run(&exec("py", c), json!({ "command": "py" })).await.unwrap();
        assert_eq!((r.stdout.as_str(), r.success), ("536870912\n", true));
    }

    fn interfaces(proc_net_dev: &str) -> Vec<String> {
        proc_net_dev
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(|i| i.trim().to_string())
            .collect()
    }

    #[tokio::test]
    async fn network_none_sees_only_loopback() {
        let mut c = command("/usr/bin/cat", &["/proc/net/dev"]);
        let r = run(&exec("ifs", c.clone()), json!({ "command": "ifs" }))
            .await
            .unwrap();
        assert!(r.network_isolated);
        assert_eq!(interfaces(&r.stdout), vec!["lo"]);
        c.network = Network::Host;
        let r = run(&exec("ifs", c), json!({ "command": "ifs" })).await.unwrap();
        assert!(!r.network_isolated);
        let own = interfaces(&std::fs::read_to_string("/proc/net/dev").unwrap());
        assert_eq!(interfaces(&r.stdout), own);
    }

    #[tokio::test]
    async fn without_isolation_the_command_does_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let mut c = command("/usr/bin/touch", &[]);
        c.args.push(marker.to_string_lossy().into_owned());
        let mut e = exec("touch", c);
        e.unshare = None;
        let err = e.execute(ctx(), json!({ "command": "touch" })).await.unwrap_err();
        match err {
            ExecError::Fatal(m) => assert!(
                m.starts_with(
                    "network isolation is configured (network = \"none\") but unavailable: unshare not found"
                ),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(!marker.exists());
    }

    #[tokio::test]
    async fn the_environment_is_cleared_but_for_the_allowed() {
        let mut c = command("/usr/bin/env", &[]);
        c.env = vec!["KEEP".into(), "UNSET".into()];
        let vars: HashMap<&str, &str> = [("KEEP", "1"), ("DROP", "2")].into();
        let lookup: EnvLookup = Arc::new(move |k| vars.get(k).map(OsString::from));
        let e = Exec::with_env(config(&[("env", c)]), lookup);
        let r = run(&e, json!({ "command": "env" })).await.unwrap();
        assert_eq!(r.stdout, "KEEP=1\n");
    }

    #[tokio::test]
    async fn a_missing_program_is_fatal() {
        let e = exec("gone", command("/nonexistent/program", &[]));
        let err = e.execute(ctx(), json!({ "command": "gone" })).await.unwrap_err();
        assert_eq!(
            err,
            ExecError::Fatal("command gone: program /nonexistent/program does not exist".into())
        );
    }

    #[test]
    fn config_problems_are_all_reported() {
        let toml_like = json!({
            "commands": {
                "bad name": { "program": "rel/path", "working_dir": "tmp", "timeout_ms": 0,
                              "memory_limit_bytes": 10, "max_output_bytes": 0,
                              "max_arg_bytes": 0, "env": ["A=B"], "max_args": 5000,
                              "network": "host" },
                "ok": { "program": "/usr/bin/true" },
            }
        });
        let c: ExecConfig = serde_json::from_value(toml_like).unwrap();
        assert_eq!(
            c.validate(),
            vec![
                "exec.commands.\"bad name\": a command name is 1-64 letters, digits, '_', '-' or '.'",
                "exec.commands.bad name.program: must be an absolute path",
                "exec.commands.bad name.working_dir: must be an absolute path",
                "exec.commands.bad name.max_args: must be at most 1024",
                "exec.commands.bad name.max_arg_bytes: must be 1-131072",
                "exec.commands.bad name.env: \"A=B\" is not a variable name",
                "exec.commands.bad name.timeout_ms: must be 1-86400000",
                "exec.commands.bad name.memory_limit_bytes: must be 0 (no limit) or at least 1048576",
                "exec.commands.bad name.max_output_bytes: must be 1-67108864",
            ]
        );
        assert_eq!(c.commands["ok"].network, Network::None);
        let unknown = serde_json::from_value::<ExecConfig>(
            json!({ "commands": { "x": { "program": "/p", "shell": true } } }),
        );
        assert!(unknown.unwrap_err().to_string().contains("unknown field `shell`"));
    }
}
