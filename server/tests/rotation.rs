//! Certificates replaced under a running member are used by the next connection, without a
//! restart (etcd reads its certificate files on every handshake).
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the test failing

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use rusted_proto::etcdserverpb::kv_client::KvClient;
use rusted_proto::etcdserverpb::PutRequest;
use rusted_proto::tls::ClientTls;
use rusted_server::config::ServerConfig;
use rusted_server::member::{Member, StartOptions};

/// A CA, and a server certificate it signs for 127.0.0.63: (ca.pem, server.pem, key.pem).
fn issue(dir: &Path, name: &str) -> (std::path::PathBuf, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} CA"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.63".to_string()]).unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let ca_path = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    (ca_path, cert.pem(), key.serialize_pem())
}

async fn put_with(ca: &Path) -> Result<(), String> {
    let tls = ClientTls { ca_file: Some(ca.to_path_buf()), ..Default::default() };
    let target = rusted_proto::dial::target("https://127.0.0.63:2379", Some(&tls)).unwrap();
    let ch = target
        .with(|e| e.connect_timeout(Duration::from_secs(2)))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let req = PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() };
    KvClient::new(ch).put(req).await.map(|_| ()).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificates_serve_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_a, cert_a, key_a) = issue(dir.path(), "a");
    let (ca_b, cert_b, key_b) = issue(dir.path(), "b");
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server-key.pem"));
    std::fs::write(&cert, &cert_a).unwrap();
    std::fs::write(&key, &key_a).unwrap();
    let peer = "http://127.0.0.63:2380";
    let cfg = ServerConfig::parse_from([
        "rusted".to_string(),
        format!("--data-dir={}", dir.path().join("data").display()),
        "--listen-client-urls=https://127.0.0.63:2379".into(),
        "--advertise-client-urls=https://127.0.0.63:2379".into(),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=default={peer}"),
        format!("--cert-file={}", cert.display()),
        format!("--key-file={}", key.display()),
    ]);
    let m = Member::start_with(cfg, StartOptions::default()).await.unwrap();
    let mut ok = Err(String::new());
    for _ in 0..100 {
        ok = put_with(&ca_a).await;
        if ok.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ok.expect("serves with the first certificate");
    assert!(put_with(&ca_b).await.is_err(), "the second CA does not sign the first certificate");

    // Replace both files (key first, then the certificate, as a rotation tool would).
    std::fs::write(&key, &key_b).unwrap();
    std::fs::write(&cert, &cert_b).unwrap();
    put_with(&ca_b).await.expect("a new connection gets the new certificate");
    assert!(put_with(&ca_a).await.is_err(), "the old certificate is no longer served");
    m.stop().await;
}
