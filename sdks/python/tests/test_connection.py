"""How endpoints, credentials and TLS settings resolve (no node needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadre_sdk._connection import Connection


def test_endpoint_forms(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("CADRE_ENDPOINT", "CADRE_TOKEN", "CADRE_CA_CERT", "CADRE_CLIENT_CERT", "CADRE_CLIENT_KEY"):
        monkeypatch.delenv(var, raising=False)
    default = Connection.resolve()
    assert (default.target, default.tls, default.token) == ("127.0.0.1:50051", False, None)
    assert default.metadata() == ()
    plain = Connection.resolve("http://10.0.0.1:7000/", "tok")
    assert (plain.target, plain.tls) == ("10.0.0.1:7000", False)
    assert plain.metadata() == (("authorization", "Bearer tok"),)
    assert Connection.resolve("https://node:443").tls
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    bare = Connection.resolve("node:50051", ca_cert=ca)
    assert bare.tls and bare.ca_cert == ca.read_bytes()
    assert Connection.resolve("node:1", ca_cert=ca.read_text()).ca_cert == ca.read_bytes()
    monkeypatch.setenv("CADRE_ENDPOINT", "https://from-env:9")
    monkeypatch.setenv("CADRE_TOKEN", "env-token")
    env = Connection.resolve()
    assert (env.target, env.tls, env.token) == ("from-env:9", True, "env-token")


def test_bad_settings_are_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TLS settings given for a plain http"):
        Connection.resolve("http://node:1", ca_cert=b"-----BEGIN CERTIFICATE-----")
    with pytest.raises(ValueError, match="both client_cert and client_key"):
        Connection.resolve("https://node:1", client_cert=b"-----BEGIN CERTIFICATE-----")
    with pytest.raises(ValueError, match="expected http"):
        Connection.resolve("http://node:1/v1/tasks")
    with pytest.raises(FileNotFoundError):
        Connection.resolve("https://node:1", ca_cert=tmp_path / "missing.pem")
