//! Shared by the script-driven suites: runs a bash script from `tests/` with environment
//! variables and fails with its whole output when it exits non-zero.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Runs `tests/<script>` with `env`; panics with `what` and the script's output on failure.
pub fn run_script(script: &str, env: &[(&str, &str)], what: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(script);
    let out =
        Command::new("bash").arg(path).envs(env.iter().copied()).output().expect("cannot run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} ({}):\n{stdout}\n{stderr}", out.status);
    println!("{stdout}");
}

/// Starts a one-member cluster, member "m" on `ip` (client port 2379, peer port 2380), data in
/// `dir`, with `extra` flags; returns once it leads with its publish applied and nothing left
/// to apply.
pub async fn start_member(
    ip: &str,
    dir: &Path,
    opts: rusted_server::member::StartOptions,
    extra: &[&str],
) -> rusted_server::member::Member {
    use clap::Parser;
    let client = format!("http://{ip}:2379");
    let peer = format!("http://{ip}:2380");
    let mut args = vec![
        "rusted".to_string(),
        "--name=m".into(),
        format!("--data-dir={}", dir.display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=m={peer}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let cfg = rusted_server::config::ServerConfig::parse_from(args);
    let m = rusted_server::member::Member::start_with(cfg, opts).await.expect("member starts");
    for _ in 0..200 {
        let st = m.ctx.replica.status();
        let published = m.ctx.replica.cluster().members.values().any(|x| x.name == "m");
        if st.is_leader && published && st.applied == st.committed {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("member did not settle");
}

/// `GET path` on `url` (http://host:port), the body of the answer.
pub async fn http_get(url: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send the request");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read the answer");
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}
