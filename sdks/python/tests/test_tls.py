"""TLS and mutual TLS: a node that requires client certificates, certificates made with openssl."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import cadre_sdk
from cadre_sdk import AsyncClient, Client

from conftest import Node, start_node


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> None:
    """ca.pem, server.pem/.key for 127.0.0.1 and localhost, client.pem/.key."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=cadre sdk test CA", cwd=d)
    for name, san in (("server", "IP:127.0.0.1,DNS:localhost"), ("client", "DNS:sdk-client")):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Path]]:
    pki = tmp_path_factory.mktemp("pki")
    make_pki(pki)
    cfg = (
        f'[tls]\ncert_file = "{pki / "server.pem"}"\nkey_file = "{pki / "server.key"}"\n'
        f'client_ca_file = "{pki / "ca.pem"}"\n'
    )
    n = start_node(tmp_path_factory.mktemp("tlsnode"), cfg)
    yield n, pki
    n.kill()


def test_mutual_tls_with_ca_and_client_certificate(tls_node: tuple[Node, Path]) -> None:
    node, pki = tls_node
    assert node.grpc.startswith("https://")
    with Client(
        node.grpc, node.credential, ca_cert=pki / "ca.pem",
        client_cert=pki / "client.pem", client_key=(pki / "client.key").read_bytes(),
    ) as c:
        assert c.submit_and_wait("system.debug.echo", {"tls": True}).result == {"tls": True}


def test_tls_settings_from_the_environment(tls_node: tuple[Node, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    node, pki = tls_node
    monkeypatch.setenv("CADRE_ENDPOINT", node.grpc)
    monkeypatch.setenv("CADRE_TOKEN", node.credential)
    monkeypatch.setenv("CADRE_CA_CERT", str(pki / "ca.pem"))
    monkeypatch.setenv("CADRE_CLIENT_CERT", str(pki / "client.pem"))
    monkeypatch.setenv("CADRE_CLIENT_KEY", str(pki / "client.key"))
    with Client() as c:
        assert c.task_types("system.debug.echo")[0].task_type == "system.debug.echo"


def test_without_a_client_certificate_the_node_refuses(tls_node: tuple[Node, Path]) -> None:
    node, pki = tls_node
    with Client(node.grpc, node.credential, ca_cert=pki / "ca.pem", retry_budget=0.5, timeout=5) as c:
        with pytest.raises(cadre_sdk.Unavailable):
            c.task_types()


async def test_async_client_speaks_mutual_tls(tls_node: tuple[Node, Path]) -> None:
    node, pki = tls_node
    async with AsyncClient(
        node.grpc, node.credential, ca_cert=pki / "ca.pem",
        client_cert=pki / "client.pem", client_key=pki / "client.key",
    ) as c:
        assert (await c.submit_and_wait("system.debug.echo", {"aio": 1})).result == {"aio": 1}
