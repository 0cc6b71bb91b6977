//! The gRPC listener's connections, handed to tonic as its incoming stream (in place of
//! tonic's own accept loop and TLS, which cap nothing and wait for a handshake for ever): a cap
//! on open connections (`server.grpc_max_connections`) and, from connect, a deadline
//! (`server.grpc_handshake_timeout_ms`) for the TLS handshake (with `[tls]`) and the HTTP/2
//! connection preface. A connection over the cap, a late or failed handshake and bytes that
//! are not HTTP/2 are closed before tonic sees them; the cap and the handshake are
//! [`super::accept`]'s, shared with the HTTP listener.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use cadre_core::config::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::server::accept::{Accepted, Acceptor, Listener, tls_handshake};

/// What every HTTP/2 connection starts with (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How the gRPC listener takes its connections.
#[derive(Clone)]
pub(crate) struct GrpcOptions {
    /// TLS (None: plaintext), offering `h2` by ALPN.
    pub tls: Option<TlsAcceptor>,
    /// Connections served at once.
    pub max_connections: usize,
    /// Time from connect to a finished TLS handshake and HTTP/2 preface.
    pub handshake_timeout: Duration,
}

impl GrpcOptions {
    /// The options of `cfg`, with `tls`.
    pub fn new(cfg: &ServerConfig, tls: Option<TlsAcceptor>) -> GrpcOptions {
        GrpcOptions {
            tls,
            max_connections: cfg.grpc_max_connections.max(1),
            handshake_timeout: Duration::from_millis(cfg.grpc_handshake_timeout_ms.max(1)),
        }
    }
}

/// The connections accepted on `listener` that finished their handshake, for tonic's
/// `serve_with_incoming_shutdown`; accepting stops at `shutdown` or when tonic drops the
/// stream (which closes the socket).
pub(crate) fn incoming(listener: TcpListener, opts: GrpcOptions, shutdown: CancellationToken) -> Incoming {
    // Bounded: a handshake task waits while tonic is behind (each holds a place under the cap).
    let (tx, rx) = mpsc::channel(64);
    let mut acceptor = Acceptor::new(listener, Listener::Grpc, opts.max_connections);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => break,
                a = acceptor.next(&shutdown) => match a {
                    Some(a) => a,
                    None => break,
                },
            };
            let (tx, opts) = (tx.clone(), opts.clone());
            tokio::spawn(async move {
                if let Some(io) = handshake(accepted, &opts).await {
                    let _ = tx.send(io).await;
                }
            });
        }
    });
    Incoming(rx)
}

/// The stream [`incoming`] returns.
pub(crate) struct Incoming(mpsc::Receiver<GrpcIo>);

impl tokio_stream::Stream for Incoming {
    type Item = io::Result<GrpcIo>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().0.poll_recv(cx).map(|io| io.map(Ok))
    }
}

/// TLS (if configured) and the HTTP/2 preface of `accepted`, both by the deadline; None (the
/// connection closed, counted) when either failed or was late.
async fn handshake(accepted: Accepted, opts: &GrpcOptions) -> Option<GrpcIo> {
    let Accepted { stream, peer, permit } = accepted;
    let deadline = Instant::now() + opts.handshake_timeout;
    let local = stream.local_addr().ok();
    let mut io = match &opts.tls {
        None => Io::Plain(stream),
        Some(tls) => Io::Tls(Box::new(
            tls_handshake(Listener::Grpc, tls, stream, peer, deadline).await?,
        )),
    };
    let mut preface = [0u8; PREFACE.len()];
    match tokio::time::timeout_at(deadline, io.read_exact(&mut preface)).await {
        Ok(Ok(_)) if &preface == PREFACE => Some(GrpcIo {
            inner: io,
            replayed: 0,
            info: TcpConnectInfo {
                local_addr: local,
                remote_addr: Some(peer),
            },
            _permit: permit,
        }),
        Ok(Ok(_)) => {
            Listener::Grpc.handshake_failed(peer, "not an HTTP/2 connection preface");
            None
        }
        Ok(Err(e)) => {
            Listener::Grpc.handshake_failed(peer, &format!("connection preface unread: {e}"));
            None
        }
        Err(_) => {
            Listener::Grpc.handshake_failed(peer, "connection preface timed out");
            None
        }
    }
}

/// A plaintext or TLS connection.
enum Io {
    /// Plaintext.
    Plain(TcpStream),
    /// TLS, handshake done.
    Tls(Box<TlsStream<TcpStream>>),
}

/// A connection tonic serves: its preface (already read and checked) is replayed first, and it
/// holds its place under `server.grpc_max_connections` until tonic drops it.
pub(crate) struct GrpcIo {
    /// The stream.
    inner: Io,
    /// How much of the preface tonic has been given back.
    replayed: usize,
    /// The addresses, for tonic's request extensions.
    info: TcpConnectInfo,
    /// The connection's place under the cap.
    _permit: OwnedSemaphorePermit,
}

impl Connected for GrpcIo {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncRead for GrpcIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.replayed < PREFACE.len() {
            let rest = &PREFACE[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GrpcIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[tokio::test]
    async fn the_preface_is_replayed_before_the_stream() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let opts = GrpcOptions {
            tls: None,
            max_connections: 1,
            handshake_timeout: Duration::from_secs(30),
        };
        let mut rx = incoming(listener, opts, CancellationToken::new());
        let mut client = TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut client, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nafter")
            .await
            .unwrap();
        let mut io = rx.0.recv().await.unwrap();
        let mut got = [0u8; 29];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nafter");
        assert_eq!(io.connect_info().remote_addr, Some(client.local_addr().unwrap()));
    }
}
