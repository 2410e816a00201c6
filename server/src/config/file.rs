//! `--config-file`: etcd's YAML configuration file, keyed by the flag names
//! (`name`, `data-dir`, `listen-client-urls`, ...). As with etcd, when a file is given the other
//! command-line flags and the ETCD_* environment variables are ignored. Keys rusted has no flag
//! for are reported and skipped (etcd itself ignores unknown keys).
#![forbid(unsafe_code)]

use std::path::Path;

use clap::{CommandFactory, FromArgMatches};

use crate::config::flags::ServerConfig;

/// Flags whose file value is a YAML list in etcd's configuration file.
const LIST_FLAGS: [&str; 5] = [
    "cipher-suites",
    "log-outputs",
    "client-cert-allowed-hostname",
    "peer-cert-allowed-cn",
    "peer-cert-allowed-hostname",
];

/// The flag a key of etcd's `client-transport-security` / `peer-transport-security` block
/// stands for (`None`: a key with no flag on that side).
fn transport_flag(side: &str, key: &str) -> Option<&'static str> {
    let client = side == "client-transport-security";
    Some(match (client, key) {
        (true, "cert-file") => "cert-file",
        (true, "key-file") => "key-file",
        (true, "client-cert-file") => "client-cert-file",
        (true, "client-key-file") => "client-key-file",
        (true, "client-cert-auth") => "client-cert-auth",
        (true, "trusted-ca-file") => "trusted-ca-file",
        (true, "auto-tls") => "auto-tls",
        (true, "allowed-hostname") => "client-cert-allowed-hostname",
        (false, "cert-file") => "peer-cert-file",
        (false, "key-file") => "peer-key-file",
        (false, "client-cert-file") => "peer-client-cert-file",
        (false, "client-key-file") => "peer-client-key-file",
        (false, "client-cert-auth") => "peer-client-cert-auth",
        (false, "trusted-ca-file") => "peer-trusted-ca-file",
        (false, "auto-tls") => "peer-auto-tls",
        (false, "allowed-cn") => "peer-cert-allowed-cn",
        (false, "allowed-hostname") => "peer-cert-allowed-hostname",
        _ => return None,
    })
}

/// The configuration a file gives, and the keys it had that rusted does not use.
pub fn load(path: &Path) -> Result<(ServerConfig, Vec<String>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses the YAML text of a configuration file.
pub fn parse(text: &str) -> Result<(ServerConfig, Vec<String>), String> {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
    let map = match doc {
        serde_yaml::Value::Mapping(m) => m,
        serde_yaml::Value::Null => serde_yaml::Mapping::new(),
        _ => return Err("the configuration must be a YAML mapping of flag names".into()),
    };
    // Flags without their environment variables: the file is the only source.
    let mut cmd = ServerConfig::command().mut_args(|a| a.env(None));
    let known: Vec<String> =
        cmd.get_arguments().filter_map(|a| a.get_long().map(String::from)).collect();
    let mut args = vec!["rusted".to_string()];
    let mut skipped = Vec::new();
    let mut entries: Vec<(String, serde_yaml::Value)> = Vec::new();
    for (k, v) in map {
        let key = match k {
            serde_yaml::Value::String(s) => s,
            other => return Err(format!("configuration key {other:?} is not a string")),
        };
        match (key.as_str(), v) {
            // etcd's nested TLS blocks: each key stands for a flag of its side.
            // etcd's `socket-options` block: reuse-port, reuse-address.
            ("socket-options", serde_yaml::Value::Mapping(m)) => {
                for (k2, v2) in m {
                    match k2 {
                        serde_yaml::Value::String(k2)
                            if k2 == "reuse-port" || k2 == "reuse-address" =>
                        {
                            entries.push((format!("socket-{k2}"), v2));
                        }
                        other => skipped.push(format!("socket-options.{other:?}")),
                    }
                }
            }
            // The file's spelling of --experimental-snapshot-catchup-entries.
            ("experimental-snapshot-catch-up-entries", v) => {
                entries.push(("experimental-snapshot-catchup-entries".into(), v));
            }
            (
                side @ ("client-transport-security" | "peer-transport-security"),
                serde_yaml::Value::Mapping(m),
            ) => {
                for (k2, v2) in m {
                    let serde_yaml::Value::String(k2) = k2 else {
                        return Err(format!("{side}: a key is not a string"));
                    };
                    match transport_flag(side, &k2) {
                        Some(flag) => entries.push((flag.to_string(), v2)),
                        None => skipped.push(format!("{side}.{k2}")),
                    }
                }
            }
            (_, serde_yaml::Value::Null) => {}
            (_, v) => entries.push((key, v)),
        }
    }
    for (key, v) in entries {
        if key == "config-file" || !known.contains(&key) {
            skipped.push(key);
            continue;
        }
        let value = match v {
            serde_yaml::Value::Null => continue,
            serde_yaml::Value::Bool(b) => b.to_string(),
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::String(s) => s,
            // Lists (cipher-suites, allowed-cn, allowed-hostname): the flag's comma form.
            serde_yaml::Value::Sequence(items) if LIST_FLAGS.contains(&key.as_str()) => {
                let mut parts = Vec::new();
                for i in items {
                    match i {
                        serde_yaml::Value::String(s) => parts.push(s),
                        _ => return Err(format!("{key}: expected a list of strings")),
                    }
                }
                parts.join(",")
            }
            _ => return Err(format!("{key}: expected a single value")),
        };
        args.push(format!("--{key}={value}"));
    }
    let args = crate::config::argv::drop_empty_optionals(args);
    let m = cmd.try_get_matches_from_mut(args).map_err(|e| e.to_string())?;
    let cfg = ServerConfig::from_arg_matches(&m).map_err(|e| e.to_string())?;
    Ok((cfg, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_by_their_names_and_defaults_for_the_rest() {
        let (c, skipped) = parse(
            "name: infra1\ndata-dir: /tmp/x\nsnapshot-count: 5000\nheartbeat-interval: 50\n\
             election-timeout: 500\nlisten-client-urls: http://127.0.0.9:2379\npre-vote: false\n\
             enable-v2: true\nquota-backend-bytes: -1\nno-such-key: 1\n\
             socket-options:\n  reuse-port: true\nexperimental-snapshot-catch-up-entries: 7\n\
             log-outputs: [stderr]\n",
        )
        .unwrap();
        assert_eq!(c.name, "infra1");
        assert_eq!(c.data_dir.as_deref(), Some(Path::new("/tmp/x")));
        assert_eq!((c.snapshot_count, c.heartbeat_interval, c.election_timeout), (5000, 50, 500));
        assert_eq!(c.listen_client_urls, "http://127.0.0.9:2379");
        assert!(!c.pre_vote);
        assert_eq!(c.quota_backend_bytes, -1);
        assert_eq!(c.max_txn_ops, 128, "unset keys keep etcd's defaults");
        assert!(c.deferred.enable_v2 && c.socket_reuse_port);
        assert_eq!(c.experimental.snapshot_catchup_entries, 7);
        assert_eq!(c.deferred.log_outputs, "stderr");
        assert_eq!(skipped, vec!["no-such-key".to_string()]);
    }

    #[test]
    fn tls_blocks_as_etcds_file_nests_them() {
        let (c, skipped) = parse(
            "client-transport-security:\n  cert-file: /c.pem\n  key-file: /k.pem\n  \
             client-cert-auth: true\n  trusted-ca-file: /ca.pem\n  allowed-cn: x\n\
             peer-transport-security:\n  auto-tls: true\n  allowed-cn: [a, b]\n\
             cipher-suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n",
        )
        .unwrap();
        assert_eq!(c.tls.cert_file.as_deref(), Some(Path::new("/c.pem")));
        assert!(c.tls.client_cert_auth && c.tls.peer_auto_tls);
        assert_eq!(c.tls.peer_cert_allowed_cn, "a,b");
        assert_eq!(
            c.tls.cipher_suites,
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
        );
        assert_eq!(skipped, vec!["client-transport-security.allowed-cn".to_string()]);
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        assert!(parse("snapshot-count: lots\n").unwrap_err().contains("snapshot-count"));
        assert!(parse("- a\n- b\n").is_err());
        assert!(parse("name: [a, b]\n").is_err());
        assert!(parse("initial-cluster-state: sideways\n").is_err());
        assert!(parse(": :\n  - ").is_err());
        assert_eq!(parse("").unwrap().0.name, "default");
    }
}
