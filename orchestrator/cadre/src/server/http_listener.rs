//! The HTTP listener's own accept loop, in place of `axum::serve`: TLS (the `[tls]`
//! certificate, client certificates required with `client_ca_file`), a cap on open connections
//! (`server.http_max_connections`), a deadline for each request's headers
//! (`server.http_header_timeout_ms`, slow-loris protection), for each request's body
//! (`server.http_body_timeout_ms`) and for idle kept-alive connections
//! (`server.http_idle_timeout_ms`).
//!
//! The cap and the TLS handshake are [`super::accept`]'s, shared with the gRPC listener. Each
//! connection runs in its own task; the TLS handshake happens there, under the header
//! deadline, so a slow or broken handshake never holds the accept loop. hyper's own
//! `header_read_timeout` is not used: it starts as soon as a kept-alive connection waits for its
//! next request, so it would also close idle connections at the header deadline. The
//! connection's [`Phase`] keeps both clocks instead.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use cadre_core::config::ServerConfig;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::service::{Service as _, service_fn};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::server::accept::{Accepted, Acceptor, Listener, tls_handshake};

/// Connections closed because a request's headers did not arrive in time.
const HEADER_TIMEOUTS: &str = "cadre_http_header_timeouts_total";

/// How the HTTP listener serves its connections.
#[derive(Clone)]
pub(crate) struct HttpOptions {
    /// TLS (None: plaintext).
    pub tls: Option<TlsAcceptor>,
    /// Connections served at once.
    pub max_connections: usize,
    /// Time to send a request's headers (and, first, to finish the TLS handshake).
    pub header_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Time a request's body may take to arrive after its headers.
    pub body_timeout: Duration,
}

impl HttpOptions {
    /// The options of `cfg`, with `tls`.
    pub fn new(cfg: &ServerConfig, tls: Option<TlsAcceptor>) -> HttpOptions {
        HttpOptions {
            tls,
            max_connections: cfg.http_max_connections.max(1),
            header_timeout: Duration::from_millis(cfg.http_header_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(cfg.http_idle_timeout_ms.max(1)),
            body_timeout: Duration::from_millis(cfg.http_body_timeout_ms.max(1)),
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, then lets open requests finish (kept-alive
/// connections close after their current response) and returns when every connection closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    opts: HttpOptions,
    shutdown: CancellationToken,
) {
    metrics::describe_counter!(
        HEADER_TIMEOUTS,
        "HTTP connections closed: request headers late (server.http_header_timeout_ms)."
    );
    metrics::counter!(HEADER_TIMEOUTS).increment(0);
    let mut acceptor = Acceptor::new(listener, Listener::Http, opts.max_connections);
    let opts = Arc::new(opts);
    // Every connection task holds a receiver; `closed()` resolves when the last one ends.
    let (open_tx, open_rx) = watch::channel(());
    while let Some(accepted) = acceptor.next(&shutdown).await {
        let (router, opts, shutdown, open) =
            (router.clone(), opts.clone(), shutdown.clone(), open_rx.clone());
        tokio::spawn(async move {
            connection(accepted, router, &opts, shutdown).await;
            drop(open);
        });
    }
    drop(acceptor);
    drop(open_rx);
    open_tx.closed().await;
}

/// One connection: TLS handshake (under the header deadline), then HTTP/1.1 until it closes.
async fn connection(accepted: Accepted, router: Router, opts: &HttpOptions, shutdown: CancellationToken) {
    let Accepted { stream, peer, permit } = accepted;
    let phase = Arc::new(Phase::new());
    match &opts.tls {
        None => {
            serve_connection(
                Tracked::new(stream, &phase, permit),
                phase,
                router,
                opts,
                shutdown,
            )
            .await
        }
        Some(tls) => {
            let deadline = Instant::now() + opts.header_timeout;
            if let Some(tls) = tls_handshake(Listener::Http, tls, stream, peer, deadline).await {
                serve_connection(Tracked::new(tls, &phase, permit), phase, router, opts, shutdown).await
            }
        }
    }
}

/// Serves HTTP/1.1 (with upgrades, for WebSockets) on `io`, closing it when a request's headers
/// are late or when it stays idle too long; at `shutdown` it closes after its current response.
async fn serve_connection<I>(
    io: Tracked<I>,
    phase: Arc<Phase>,
    router: Router,
    opts: &HttpOptions,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let inner = TowerToHyperService::new(router);
    let svc_phase = phase.clone();
    let body_timeout = opts.body_timeout;
    let svc = service_fn(move |req: hyper::Request<Incoming>| {
        svc_phase.set(State::Busy);
        let phase = svc_phase.clone();
        let due = Instant::now() + body_timeout;
        let fut = inner.call(req.map(|body| {
            Body::new(RequestBody {
                inner: body,
                due,
                sleep: None,
            })
        }));
        async move {
            let resp = fut.await?;
            Ok::<_, std::convert::Infallible>(resp.map(|body| Body::new(ResponseBody { inner: body, phase })))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let (state, deadline) = phase.deadline(opts);
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(deadline) => {
                if phase.deadline(opts) != (state, deadline) {
                    continue; // the connection moved on meanwhile
                }
                match state {
                    State::Headers => {
                        metrics::counter!(HEADER_TIMEOUTS).increment(1);
                        tracing::debug!("HTTP request headers not received in time; closing the connection");
                        return;
                    }
                    // Idle: hyper closes an idle connection at once; if it is somehow still
                    // open at the next deadline, it is dropped.
                    State::Idle if draining => return,
                    State::Idle => {
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                        phase.set(State::Idle);
                    }
                    State::Busy => {}
                }
            }
        }
    }
}

/// Where a connection is: waiting for (the rest of) a request's headers, serving a request, or
/// idle between requests.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Since connect, or since the first byte of a request after an idle spell.
    Headers,
    /// From the complete request head until the response body has been sent.
    Busy,
    /// Since the last response, with no byte of a next request yet.
    Idle,
}

/// A connection's [`State`] and since when.
struct Phase(Mutex<(State, Instant)>);

impl Phase {
    /// A new connection: its first request's headers are due.
    fn new() -> Phase {
        Phase(Mutex::new((State::Headers, Instant::now())))
    }

    /// Enters `state` now.
    fn set(&self, state: State) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = (state, Instant::now());
    }

    /// Bytes arrived: after an idle spell, a next request's headers have started.
    fn bytes_read(&self) {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if p.0 == State::Idle {
            *p = (State::Headers, Instant::now());
        }
    }

    /// The state and when it runs out. A busy connection never runs out: it is looked at
    /// again a whole limit from now (not from when it became busy, which would be in the past
    /// for a long response and fire at once, over and over).
    fn deadline(&self, opts: &HttpOptions) -> (State, Instant) {
        let (state, since) = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        match state {
            State::Headers => (state, since + opts.header_timeout),
            State::Idle => (state, since + opts.idle_timeout),
            State::Busy => (state, Instant::now() + opts.header_timeout.max(opts.idle_timeout)),
        }
    }
}

/// The connection's IO, which notes arriving bytes in its [`Phase`] and holds the connection's
/// place under the cap until it is dropped (after an upgrade, when the WebSocket closes).
struct Tracked<I> {
    /// The TCP or TLS stream.
    inner: I,
    /// The connection's phase.
    phase: Arc<Phase>,
    /// The connection's place under `server.http_max_connections`.
    _permit: OwnedSemaphorePermit,
}

impl<I> Tracked<I> {
    fn new(inner: I, phase: &Arc<Phase>, permit: OwnedSemaphorePermit) -> Tracked<I> {
        Tracked {
            inner,
            phase: phase.clone(),
            _permit: permit,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.phase.bytes_read();
        }
        res
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A response body; when hyper is done with it (sent, or the peer went away) the connection is
/// idle until the next request.
struct ResponseBody {
    /// The router's body.
    inner: Body,
    /// The connection's phase.
    phase: Arc<Phase>,
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.phase.set(State::Idle);
    }
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that must arrive by `due` (`server.http_body_timeout_ms` after its
/// headers); later, reading it fails, which ends the request with 400 and its connection.
struct RequestBody {
    /// The body as hyper reads it.
    inner: Incoming,
    /// When the whole body must be in.
    due: Instant,
    /// The deadline's timer, made when the body first has to be waited for.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let due = this.due;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request body not received within server.http_body_timeout_ms",
            )
            .into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
