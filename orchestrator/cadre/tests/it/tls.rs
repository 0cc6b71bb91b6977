//! TLS on the gRPC API, and mutual TLS when a client CA is configured.

use std::path::Path;
use std::time::Duration;

use cadre_client::Bearer;
use cadre_proto::v1::{self, admin_service_client::AdminServiceClient};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::common::*;

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files.
pub(crate) fn pki(dir: &Path) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cadre test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, sans) in [
        ("server", vec!["localhost".to_string(), "127.0.0.1".to_string()]),
        ("client", vec!["node-b".to_string()]),
    ] {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(sans)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

async fn status(url: &str, tls: ClientTlsConfig, credential: &str) -> Result<v1::StatusResponse, String> {
    let channel = Channel::from_shared(url.to_string())
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut admin = AdminServiceClient::with_interceptor(channel, Bearer::new(Some(credential)).unwrap());
    admin
        .status(v1::StatusRequest {})
        .await
        .map(|r| r.into_inner())
        .map_err(|e| format!("call: {e}"))
}

#[tokio::test]
async fn the_api_speaks_tls_and_requires_client_certificates_when_configured() {
    let pki_dir = tempfile::tempdir().unwrap();
    pki(pki_dir.path());
    let p = |f: &str| pki_dir.path().join(f).display().to_string();
    let cfg = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\n",
        p("server.pem"),
        p("server.key"),
        p("ca.pem")
    );
    let node = TestNode::start(&cfg).await;
    assert!(
        node.grpc.starts_with("https://"),
        "endpoints.json says https: {}",
        node.grpc
    );
    let cred = node.credential();
    let ca = Certificate::from_pem(std::fs::read(p("ca.pem")).unwrap());
    let me = Identity::from_pem(
        std::fs::read(p("client.pem")).unwrap(),
        std::fs::read(p("client.key")).unwrap(),
    );

    let ok = status(
        &node.grpc,
        ClientTlsConfig::new().ca_certificate(ca.clone()).identity(me),
        &cred,
    )
    .await;
    assert!(ok.is_ok(), "mutual TLS works: {ok:?}");
    let no_client_cert = status(&node.grpc, ClientTlsConfig::new().ca_certificate(ca), &cred).await;
    assert!(
        no_client_cert.is_err(),
        "a client without a certificate is refused"
    );
    let plain = node.grpc.replace("https://", "http://");
    let channel = Channel::from_shared(plain)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await;
    if let Ok(ch) = channel {
        let mut admin = AdminServiceClient::with_interceptor(ch, Bearer::new(Some(&cred)).unwrap());
        assert!(
            admin.status(v1::StatusRequest {}).await.is_err(),
            "plain text is refused"
        );
    }

    // The CLI finds the https endpoint in the data dir and uses the TLS flags.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
        .arg("--data-dir")
        .arg(node.dir.join("data"))
        .args([
            "--ca-cert",
            &p("ca.pem"),
            "--client-cert",
            &p("client.pem"),
            "--client-key",
            &p("client.key"),
            "status",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("supervisor system"));
}
