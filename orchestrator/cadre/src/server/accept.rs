//! What both listeners (HTTP and gRPC) do with a connection before they serve it: accept it
//! under a cap on open connections (`server.http_max_connections`,
//! `server.grpc_max_connections`; one over the cap is closed at once and counted, the open
//! ones are untouched) and, with `[tls]`, finish its TLS handshake by a deadline (a slow or
//! broken handshake is closed and counted). The handshake runs in the connection's own task,
//! never in the accept loop, so one stalled client holds nothing but its own place.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Which listener: names its log lines, settings and metric series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listener {
    /// The HTTP listener (and the probe listener).
    Http,
    /// The gRPC listener.
    Grpc,
}

impl Listener {
    /// The name in log lines.
    fn name(self) -> &'static str {
        match self {
            Listener::Http => "HTTP",
            Listener::Grpc => "gRPC",
        }
    }

    /// The setting that caps open connections.
    fn cap_setting(self) -> &'static str {
        match self {
            Listener::Http => "server.http_max_connections",
            Listener::Grpc => "server.grpc_max_connections",
        }
    }

    /// Connections refused over the cap.
    fn refused_series(self) -> &'static str {
        match self {
            Listener::Http => "cadre_http_connections_refused_total",
            Listener::Grpc => "cadre_grpc_connections_refused_total",
        }
    }

    /// Connections closed before serving: a TLS handshake (gRPC: or HTTP/2 preface) that
    /// failed or was late.
    fn handshake_series(self) -> &'static str {
        match self {
            Listener::Http => "cadre_http_tls_handshake_failures_total",
            Listener::Grpc => "cadre_grpc_handshake_failures_total",
        }
    }

    /// Counts a connection closed before serving (handshake failed or late); `why` goes to the
    /// debug log.
    pub(crate) fn handshake_failed(self, peer: SocketAddr, why: &str) {
        metrics::counter!(self.handshake_series()).increment(1);
        tracing::debug!(%peer, listener = self.name(), "connection closed before serving: {why}");
    }
}

/// A connection accepted under the cap.
pub(crate) struct Accepted {
    /// The TCP stream (nodelay set).
    pub stream: TcpStream,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The connection's place under the cap: hold it for as long as the connection is open.
    pub permit: OwnedSemaphorePermit,
}

/// A listener's accept loop under its cap on open connections.
pub(crate) struct Acceptor {
    /// The bound socket.
    listener: TcpListener,
    /// Which listener.
    kind: Listener,
    /// One permit per connection that may be open.
    permits: Arc<Semaphore>,
    /// The cap.
    max: usize,
    /// When a refusal was last logged (one line per 10 s at most).
    last_refusal_log: Option<Instant>,
}

impl Acceptor {
    /// Accepts on `listener`, at most `max` connections open at once; exports the listener's
    /// connection series at 0.
    pub(crate) fn new(listener: TcpListener, kind: Listener, max: usize) -> Acceptor {
        metrics::counter!(kind.refused_series()).increment(0);
        metrics::counter!(kind.handshake_series()).increment(0);
        let max = max.max(1);
        Acceptor {
            listener,
            kind,
            permits: Arc::new(Semaphore::new(max)),
            max,
            last_refusal_log: None,
        }
    }

    /// The next connection under the cap, or None once `shutdown` is cancelled. Connections
    /// over the cap are closed at once (the peer sees the connection end) and counted.
    pub(crate) async fn next(&mut self, shutdown: &CancellationToken) -> Option<Accepted> {
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => return None,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        self.accept_error(e).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                drop(stream);
                self.refused(peer);
                continue;
            };
            let _ = stream.set_nodelay(true);
            return Some(Accepted { stream, peer, permit });
        }
    }

    /// Counts (and now and then logs) a connection refused over the cap.
    fn refused(&mut self, peer: SocketAddr) {
        metrics::counter!(self.kind.refused_series()).increment(1);
        if self
            .last_refusal_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            self.last_refusal_log = Some(Instant::now());
            tracing::warn!(
                %peer,
                max = self.max,
                "{} connection refused: {} are open",
                self.kind.name(),
                self.kind.cap_setting()
            );
        }
    }

    /// An accept error: a peer that went away is nothing; anything else (e.g. out of file
    /// descriptors) is logged and the loop pauses before accepting again.
    async fn accept_error(&self, e: io::Error) {
        use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
        if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
            return;
        }
        tracing::error!(error = %e, "{} accept failed; retrying in 1 s", self.kind.name());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The TLS handshake of `stream` from `peer`, done by `deadline`; None (counted on `kind`'s
/// handshake series) when it failed or was late.
pub(crate) async fn tls_handshake(
    kind: Listener,
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    deadline: Instant,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            kind.handshake_failed(peer, &format!("TLS handshake failed: {e}"));
            None
        }
        Err(_) => {
            kind.handshake_failed(peer, "TLS handshake timed out");
            None
        }
    }
}
