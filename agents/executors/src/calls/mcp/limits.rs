//! The client's fixed bounds: how long a stdio server may take to exit and the goodbyes may
//! take, how much of a server's text an error quotes, and the error for a message above
//! `max_response_bytes`.

use std::time::Duration;

use cadre_agents::ExecError;

/// How long a stdio server may take to exit after its stdin is closed before it is killed.
pub const STDIO_EXIT_GRACE: Duration = Duration::from_secs(2);

/// How long the goodbyes (cancel notification, session DELETE) may take.
pub(super) const GOODBYE_PATIENCE: Duration = Duration::from_secs(2);

/// Most characters of a tool's error text or a server's stderr quoted in an error message.
pub(super) const QUOTE_CHARS: usize = 2_000;

/// `s` cut to [`QUOTE_CHARS`] characters, marked when cut.
pub(super) fn quote(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(QUOTE_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None if s.is_empty() => "(no text)".into(),
        None => s.to_string(),
    }
}

/// The error for a message from server `name` above `max` bytes.
pub(super) fn too_large(name: &str, max: usize) -> ExecError {
    ExecError::Fatal(format!(
        "MCP server {name:?} sent a message larger than max_response_bytes ({max} bytes)"
    ))
}
