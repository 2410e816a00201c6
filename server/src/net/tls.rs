//! TLS on the member's listeners, as etcd's `transport.TLSInfo` serves it: a certificate and
//! key, optionally a trusted CA with client certificates required (`--client-cert-auth`), a
//! CRL, allowed client hostnames, cipher suites and protocol versions. ALPN offers `h2` and
//! `http/1.1`, so gRPC and the JSON gateway keep sharing one port.
//!
//! **Reload.** etcd reads its certificate files again on every handshake, so replacing them
//! under a running member takes effect for new connections. Here each handshake compares the
//! files' modification stamps with those of the loaded configuration and rebuilds it when one
//! changed; a rebuild that fails (a half-written file) keeps the previous configuration and
//! logs why, and is retried on the next handshake.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rusted_proto::tls::{load_certs, load_crls, load_key, load_roots, provider, TlsError};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A listener's TLS settings, from etcd's flags (client or peer side).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// `--cert-file`.
    pub cert_file: PathBuf,
    /// `--key-file`.
    pub key_file: PathBuf,
    /// `--trusted-ca-file`: the CA client certificates are checked against.
    pub trusted_ca_file: Option<PathBuf>,
    /// `--client-cert-auth`: a client must present a certificate the CA signed.
    pub client_cert_auth: bool,
    /// `--client-crl-file`: revoked client certificates.
    pub crl_file: Option<PathBuf>,
    /// `--client-cert-allowed-hostname`: a client certificate must be valid for one of these.
    pub allowed_hostnames: Vec<String>,
    /// `--peer-cert-allowed-cn`: a client certificate's common name must be one of these.
    pub allowed_cns: Vec<String>,
    /// `--cipher-suites` (Go's names); empty: rustls's defaults.
    pub cipher_suites: Vec<String>,
    /// `--tls-min-version`.
    pub min_version: String,
    /// `--tls-max-version` (empty: the newest).
    pub max_version: String,
}

/// A TLS 1.2 suite by its Go (IANA) name, as `--cipher-suites` lists them.
fn cipher_suite(name: &str) -> Result<SupportedCipherSuite, TlsError> {
    use rustls::crypto::ring::cipher_suite as cs;
    Ok(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        // Suites Go knows that rustls does not implement (CBC modes, RSA key exchange, RC4,
        // 3DES): refused by name rather than silently dropped.
        n if n.starts_with("TLS_") && (n.contains("_CBC_") || n.contains("RC4") || n.starts_with("TLS_RSA_")) => {
            return Err(TlsError::Config(format!(
                "TLS cipher suite {n:?} is not supported by rusted (only ECDHE with AES-GCM or ChaCha20-Poly1305)"
            )))
        }
        n => return Err(TlsError::Config(format!("unexpected TLS cipher suite {n:?}"))),
    })
}

/// A protocol version by etcd's name; `None` for "" (no bound).
fn version(name: &str) -> Result<Option<u8>, TlsError> {
    match name {
        "" => Ok(None),
        "TLS1.2" => Ok(Some(2)),
        "TLS1.3" => Ok(Some(3)),
        "TLS1.0" | "TLS1.1" => Err(TlsError::Config(format!(
            "TLS version {name} is not supported by rusted (TLS1.2 and TLS1.3 are)"
        ))),
        _ => Err(TlsError::Config(format!(
            "unexpected TLS version {name:?} (supported versions: TLS1.2 and TLS1.3)"
        ))),
    }
}

impl TlsInfo {
    /// The protocol versions allowed, checked as etcd checks the flags.
    fn versions(&self) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
        let min = version(&self.min_version)?.unwrap_or(2);
        let max = version(&self.max_version)?.unwrap_or(3);
        if min > max {
            return Err(TlsError::Config(format!(
                "min version ({}) is greater than max version ({})",
                self.min_version, self.max_version
            )));
        }
        if min == 3 && !self.cipher_suites.is_empty() {
            return Err(TlsError::Config(
                "cipher suites cannot be configured when only TLS1.3 or greater is supported"
                    .into(),
            ));
        }
        let mut v = Vec::new();
        if min <= 3 && max >= 3 {
            v.push(&rustls::version::TLS13);
        }
        if min <= 2 && max >= 2 {
            v.push(&rustls::version::TLS12);
        }
        Ok(v)
    }

    /// The files whose change means a reload.
    fn files(&self) -> Vec<&Path> {
        let mut f = vec![self.cert_file.as_path(), self.key_file.as_path()];
        f.extend(self.trusted_ca_file.as_deref());
        f.extend(self.crl_file.as_deref());
        f
    }

    /// Builds the rustls configuration from the files as they are now.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let mut p = (*provider()).clone();
        if !self.cipher_suites.is_empty() {
            let mut chosen: Vec<SupportedCipherSuite> = p
                .cipher_suites
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS13)
                .copied()
                .collect();
            for n in &self.cipher_suites {
                chosen.push(cipher_suite(n)?);
            }
            p.cipher_suites = chosen;
        }
        let builder = rustls::ServerConfig::builder_with_provider(Arc::new(p))
            .with_protocol_versions(&self.versions()?)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        // As etcd: a trusted CA alone already requires client certificates; client-cert-auth
        // without a CA checks them against the system's roots.
        let builder = if self.client_cert_auth || self.trusted_ca_file.is_some() {
            let roots = match &self.trusted_ca_file {
                Some(ca) => load_roots(ca)?,
                None => rusted_proto::tls::system_roots(),
            };
            let mut v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            if let Some(crl) = &self.crl_file {
                // etcd matches serial numbers of the end certificate only; an issuer without a
                // CRL in the file is not a reason to refuse.
                v = v
                    .with_crls(load_crls(crl)?)
                    .only_check_end_entity_revocation()
                    .allow_unknown_revocation_status();
            }
            let v = v.build().map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(v)
        } else {
            builder.with_no_client_auth()
        };
        let mut cfg = builder
            .with_single_cert(load_certs(&self.cert_file)?, load_key(&self.key_file)?)
            .map_err(|e| TlsError::Config(format!("{}: {e}", self.cert_file.display())))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// What tells a changed file: modification and change times, size, inode (a file renamed into
/// place has a new inode even when its times and size match the old one's).
type Stamps = Vec<Option<(SystemTime, i64, u64, u64)>>;

fn stamps(files: &[&Path]) -> Stamps {
    use std::os::unix::fs::MetadataExt;
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            let changed = m.ctime() * 1_000_000_000 + m.ctime_nsec();
            Some((m.modified().ok()?, changed, m.len(), m.ino()))
        })
        .collect()
}

/// Accepts TLS connections for one listener, reloading its files when they change.
#[derive(Debug)]
pub struct Acceptor {
    info: TlsInfo,
    current: Mutex<(Stamps, Arc<rustls::ServerConfig>)>,
}

impl Acceptor {
    /// Loads the configuration; bad files or flags fail here, at start.
    pub fn new(info: TlsInfo) -> Result<Acceptor, TlsError> {
        let s = stamps(&info.files());
        let cfg = Arc::new(info.server_config()?);
        Ok(Acceptor { info, current: Mutex::new((s, cfg)) })
    }

    /// The configuration for a new connection (reloaded first if a file changed). A rebuild
    /// that fails keeps the loaded configuration until the files change again.
    fn config(&self) -> Arc<rustls::ServerConfig> {
        let now = stamps(&self.info.files());
        let (same, loaded) = {
            let cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
            (cur.0 == now, cur.1.clone())
        };
        if same {
            return loaded;
        }
        // Built outside the lock: reading and parsing files must not hold up other handshakes.
        let next = match self.info.server_config() {
            Ok(c) => {
                tracing::info!(cert = %self.info.cert_file.display(), "reloaded TLS certificates");
                Arc::new(c)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload TLS certificates; keeping the loaded ones");
                loaded
            }
        };
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = (now, next.clone());
        next
    }

    /// The TLS handshake on `tcp`, then the checks rustls does not make: an allowed hostname
    /// or common name in the client's certificate.
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let tls = tokio_rustls::TlsAcceptor::from(self.config()).accept(tcp).await?;
        let (hosts, cns) = (&self.info.allowed_hostnames, &self.info.allowed_cns);
        if !hosts.is_empty() || !cns.is_empty() {
            let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).cloned();
            let ok = cert.is_some_and(|c| {
                (!hosts.is_empty() && valid_for_any(&c, hosts))
                    || (!cns.is_empty() && common_name(&c).is_some_and(|cn| cns.contains(&cn)))
            });
            if !ok {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "client certificate has no allowed hostname or common name",
                ));
            }
        }
        Ok(tls)
    }
}

/// The subject's common name of `cert`.
pub(crate) fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = c.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

/// Is `cert` valid for one of `names` (its subject alternative names)?
fn valid_for_any(cert: &CertificateDer<'_>, names: &[String]) -> bool {
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else { return false };
    names.iter().any(|n| {
        ServerName::try_from(n.as_str())
            .is_ok_and(|sn| ee.verify_is_valid_for_subject_name(&sn).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_checked_as_etcds() {
        let t = |min: &str, max: &str, suites: &[&str]| TlsInfo {
            min_version: min.into(),
            max_version: max.into(),
            cipher_suites: suites.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(t("TLS1.2", "", &[]).versions().unwrap().len(), 2);
        assert_eq!(t("TLS1.3", "", &[]).versions().unwrap().len(), 1);
        assert!(t("TLS1.3", "TLS1.2", &[]).versions().unwrap_err().to_string().contains("greater"));
        assert!(t("TLS1.3", "", &["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]).versions().is_err());
        assert!(t("TLS1.1", "", &[]).versions().is_err());
        assert!(cipher_suite("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256").is_ok());
        assert!(cipher_suite("TLS_RSA_WITH_AES_128_CBC_SHA")
            .unwrap_err()
            .to_string()
            .contains("not supported"));
        assert!(cipher_suite("nonsense")
            .unwrap_err()
            .to_string()
            .contains("unexpected TLS cipher suite"));
    }
}
