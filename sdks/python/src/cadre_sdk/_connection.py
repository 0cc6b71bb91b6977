"""Where and how to connect: the endpoint, the credential and TLS, from arguments or the same
environment variables the `cadre` CLI reads, and the channel options both clients and the
worker use."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import grpc

#: A PEM given as bytes, as text, or as the path of a file.
Pem = Union[bytes, str, Path]

#: The CLI's default endpoint.
DEFAULT_ENDPOINT = "http://127.0.0.1:50051"

#: Reconnect fast after the node comes back: grpc's own default waits up to two minutes.
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def _read_pem(value: Pem | None) -> bytes | None:
    """The PEM bytes of a value that is bytes, PEM text, or a path."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and "-----BEGIN" in value:
        return value.encode()
    return Path(value).read_bytes()


@dataclass(frozen=True)
class Connection:
    """Resolved connection settings: the grpc target, the credential, TLS material."""

    #: host:port, as grpc wants it.
    target: str
    #: JWT or API key; None when the node runs without authentication.
    token: str | None
    #: Whether to speak TLS.
    tls: bool
    ca_cert: bytes | None
    client_cert: bytes | None
    client_key: bytes | None
    #: Name to check in the node's certificate (default: the endpoint's host).
    tls_domain: str | None

    @classmethod
    def resolve(
        cls,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        ca_cert: Pem | None = None,
        client_cert: Pem | None = None,
        client_key: Pem | None = None,
        tls_domain: str | None = None,
    ) -> Connection:
        """Fills what the caller did not give from CADRE_ENDPOINT, CADRE_TOKEN, CADRE_CA_CERT,
        CADRE_CLIENT_CERT, CADRE_CLIENT_KEY and CADRE_TLS_DOMAIN. `http://host:port` is plain,
        `https://host:port` is TLS (system roots unless a CA is given); a bare `host:port` is
        TLS when a CA or client certificate is given."""
        env = os.environ
        endpoint = endpoint or env.get("CADRE_ENDPOINT") or DEFAULT_ENDPOINT
        token = token if token is not None else env.get("CADRE_TOKEN")
        ca = _read_pem(ca_cert if ca_cert is not None else env.get("CADRE_CA_CERT") or None)
        cert = _read_pem(client_cert if client_cert is not None else env.get("CADRE_CLIENT_CERT") or None)
        key = _read_pem(client_key if client_key is not None else env.get("CADRE_CLIENT_KEY") or None)
        if (cert is None) != (key is None):
            raise ValueError("mutual TLS needs both client_cert and client_key")
        endpoint = endpoint.strip()
        if endpoint.startswith("https://"):
            tls, target = True, endpoint[len("https://") :]
        elif endpoint.startswith("http://"):
            tls, target = False, endpoint[len("http://") :]
            if ca is not None or cert is not None:
                raise ValueError(f"{endpoint}: TLS settings given for a plain http:// endpoint; use https://")
        else:
            tls, target = ca is not None or cert is not None, endpoint
        target = target.rstrip("/")
        if not target or "/" in target:
            raise ValueError(f"endpoint {endpoint!r}: expected http(s)://host:port or host:port")
        return cls(
            target=target,
            token=token or None,
            tls=tls,
            ca_cert=ca,
            client_cert=cert,
            client_key=key,
            tls_domain=tls_domain or env.get("CADRE_TLS_DOMAIN") or None,
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata: the credential as a bearer token."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def _credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_cert,
            private_key=self.client_key,
            certificate_chain=self.client_cert,
        )

    def _options(self) -> list[tuple[str, int | str]]:
        options: list[tuple[str, int | str]] = list(CHANNEL_OPTIONS)
        if self.tls_domain:
            options.append(("grpc.ssl_target_name_override", self.tls_domain))
        return options

    def channel(self) -> grpc.Channel:
        """A blocking channel to the node."""
        if self.tls:
            return grpc.secure_channel(self.target, self._credentials(), options=self._options())
        return grpc.insecure_channel(self.target, options=self._options())

    def aio_channel(self) -> grpc.aio.Channel:
        """An asyncio channel to the node."""
        if self.tls:
            return grpc.aio.secure_channel(self.target, self._credentials(), options=self._options())
        return grpc.aio.insecure_channel(self.target, options=self._options())
