//! MCP sessions (`Mcp-Session-Id`): bound to the credential's subject, bounded in number,
//! dropped when idle, and the tool calls running in each (so `notifications/cancelled` can
//! cancel the task).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use cadre_core::auth::Principal;
use cadre_proto::TaskId;

/// Sessions kept at once; the least recently used goes first.
const MAX_SESSIONS: usize = 1024;
/// A session unused this long is forgotten.
const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// One client session.
struct Session {
    subject: String,
    last_used: Instant,
    /// Running tool calls: JSON-RPC request id (as JSON text) -> task.
    inflight: HashMap<String, TaskId>,
    /// Running tool calls the client cancelled (they get no response).
    cancelled: HashSet<String>,
}

/// Every session of this process; cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Sessions(Arc<Mutex<HashMap<String, Session>>>);

impl Sessions {
    pub(crate) fn new_session(&self, p: &Principal) -> String {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let mut sessions = self.0.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.last_used.elapsed() < SESSION_IDLE);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                subject: p.subject.clone(),
                last_used: Instant::now(),
                inflight: HashMap::new(),
                cancelled: HashSet::new(),
            },
        );
        id
    }

    /// Whether `id` is a live session of `p` (touching it).
    pub(crate) fn touch(&self, id: &str, p: &Principal) -> bool {
        let mut sessions = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.get_mut(id) {
            Some(s) if s.subject == p.subject && s.last_used.elapsed() < SESSION_IDLE => {
                s.last_used = Instant::now();
                true
            }
            _ => false,
        }
    }

    pub(crate) fn start(&self, session: &str, request: &str, task: TaskId) {
        let mut sessions = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sessions.get_mut(session) {
            s.inflight.insert(request.to_string(), task);
        }
    }

    /// Marks a running tool call cancelled by the client; returns its task.
    pub(crate) fn cancel_inflight(&self, session: &str, request: &str) -> Option<TaskId> {
        let mut sessions = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let s = sessions.get_mut(session)?;
        let task = s.inflight.get(request).copied()?;
        s.cancelled.insert(request.to_string());
        Some(task)
    }

    /// Forgets a finished tool call; true when the client had cancelled it.
    pub(crate) fn finish(&self, session: &str, request: &str) -> bool {
        let mut sessions = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.get_mut(session) {
            Some(s) => {
                s.inflight.remove(request);
                s.cancelled.remove(request)
            }
            None => false,
        }
    }

    /// Ends session `id` of `p`; false if there is no such live session.
    pub(crate) fn end(&self, id: &str, p: &Principal) -> bool {
        if !self.touch(id, p) {
            return false;
        }
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        true
    }
}

/// The `Mcp-Session-Id` header of a request.
pub(crate) fn session_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
