//! `lease grant|revoke|timetolive|list|keep-alive`, printing as etcdctl 3.4.
#![forbid(unsafe_code)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use super::print::{self, Format};
use super::{Ctl, CtlError, CtlResult};
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::lease_client::LeaseClient;

/// `lease ...`.
#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Creates leases
    Grant {
        /// TTL in seconds.
        args: Vec<String>,
    },
    /// Revokes leases
    Revoke {
        /// The lease ID (hex).
        args: Vec<String>,
    },
    /// Get lease information
    Timetolive(TimeToLiveArgs),
    /// List all active leases
    List,
    /// Keeps leases alive (renew)
    KeepAlive(KeepAliveArgs),
}

/// `lease timetolive`.
#[derive(Debug, Args)]
pub struct TimeToLiveArgs {
    /// The lease ID (hex).
    pub args: Vec<String>,
    /// Get keys attached to this lease
    #[arg(long)]
    pub keys: bool,
}

/// `lease keep-alive`.
#[derive(Debug, Args)]
pub struct KeepAliveArgs {
    /// The lease ID (hex).
    pub args: Vec<String>,
    /// Resets the keep-alive time to its original value and exits immediately
    #[arg(long)]
    pub once: bool,
}

fn lease_id(args: &[String], what: &str) -> CtlResult<i64> {
    let [id] = args else {
        return Err(CtlError::args(format!("{what} command needs 1 argument")));
    };
    i64::from_str_radix(id, 16)
        .or_else(|_| u64::from_str_radix(id, 16).map(|v| v as i64))
        .map_err(|e| CtlError::args(format!("bad lease ID arg ({e}), expecting ID in Hex")))
}

/// clientv3 embeds the header: its fields come first, at the top level.
fn flat_header(h: &Option<pb::ResponseHeader>) -> Map<String, Value> {
    let h = (*h).unwrap_or_default();
    let mut m = Map::new();
    m.insert("cluster_id".into(), h.cluster_id.into());
    m.insert("member_id".into(), h.member_id.into());
    m.insert("revision".into(), h.revision.into());
    m.insert("raft_term".into(), h.raft_term.into());
    m
}

/// Runs a lease command.
pub async fn run(ctl: &Ctl, cmd: &LeaseCommand) -> CtlResult {
    let mut c = LeaseClient::new(ctl.dial().await?);
    match cmd {
        LeaseCommand::Grant { args } => {
            let [ttl] = args.as_slice() else {
                return Err(CtlError::args("lease grant command needs TTL argument"));
            };
            let ttl: i64 = ttl.parse().map_err(|e| CtlError::args(format!("bad TTL ({e})")))?;
            let r = ctl
                .timed(c.lease_grant(pb::LeaseGrantRequest { ttl, id: 0 }))
                .await
                .map_err(|e| CtlError::failed(format!("failed to grant lease ({})", e.message)))?
                .into_inner();
            match ctl.write_out {
                Format::Json => {
                    let mut m = flat_header(&r.header);
                    m.insert("ID".into(), r.id.into());
                    m.insert("TTL".into(), r.ttl.into());
                    m.insert("Error".into(), r.error.clone().into());
                    println!("{}", Value::Object(m));
                }
                _ => println!("lease {:016x} granted with TTL({}s)", r.id, r.ttl),
            }
        }
        LeaseCommand::Revoke { args } => {
            let id = lease_id(args, "lease revoke")?;
            let r = ctl
                .timed(c.lease_revoke(pb::LeaseRevokeRequest { id }))
                .await
                .map_err(|e| CtlError::failed(format!("failed to revoke lease ({})", e.message)))?
                .into_inner();
            match ctl.write_out {
                Format::Json => println!("{}", Value::Object(flat_header(&r.header))),
                _ => println!("lease {id:016x} revoked"),
            }
        }
        LeaseCommand::Timetolive(a) => {
            let id = lease_id(&a.args, "lease timetolive")?;
            let r = ctl
                .timed(c.lease_time_to_live(pb::LeaseTimeToLiveRequest { id, keys: a.keys }))
                .await?
                .into_inner();
            match ctl.write_out {
                Format::Json => {
                    let mut m = flat_header(&r.header);
                    m.insert("id".into(), r.id.into());
                    m.insert("ttl".into(), r.ttl.into());
                    m.insert("granted-ttl".into(), r.granted_ttl.into());
                    let keys = if r.keys.is_empty() {
                        Value::Null
                    } else {
                        serde_json::to_value(
                            r.keys.iter().map(|k| B64.encode(k)).collect::<Vec<_>>(),
                        )
                        .unwrap_or(Value::Null)
                    };
                    m.insert("keys".into(), keys);
                    println!("{}", Value::Object(m));
                }
                _ if r.granted_ttl == 0 && r.ttl == -1 => {
                    println!("lease {:016x} already expired", r.id)
                }
                _ => {
                    let mut line = format!(
                        "lease {:016x} granted with TTL({}s), remaining({}s)",
                        r.id, r.granted_ttl, r.ttl
                    );
                    if a.keys {
                        let ks: Vec<String> =
                            r.keys.iter().map(|k| print::bytes(k, false)).collect();
                        line.push_str(&format!(", attached keys([{}])", ks.join(" ")));
                    }
                    println!("{line}");
                }
            }
        }
        LeaseCommand::List => {
            let r = ctl.timed(c.lease_leases(pb::LeaseLeasesRequest {})).await?.into_inner();
            match ctl.write_out {
                Format::Json => {
                    let mut m = flat_header(&r.header);
                    let ls: Vec<Value> = r
                        .leases
                        .iter()
                        .map(|l| {
                            let mut o = Map::new();
                            o.insert("id".into(), l.id.into());
                            Value::Object(o)
                        })
                        .collect();
                    m.insert("leases".into(), Value::Array(ls));
                    println!("{}", Value::Object(m));
                }
                _ => {
                    println!("found {} leases", r.leases.len());
                    for l in &r.leases {
                        println!("{:016x}", l.id);
                    }
                }
            }
        }
        LeaseCommand::KeepAlive(a) => {
            let id = lease_id(&a.args, "lease keep-alive")?;
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            // The first request goes in before the call: a Go server sends the response
            // headers the call waits for only with its first answer.
            let _ = tx.send(pb::LeaseKeepAliveRequest { id }).await;
            let mut resps = c
                .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await?
                .into_inner();
            let mut first = true;
            loop {
                if !std::mem::take(&mut first)
                    && tx.send(pb::LeaseKeepAliveRequest { id }).await.is_err()
                {
                    return Err(CtlError::failed("keep-alive stream closed"));
                }
                let r = match resps.message().await? {
                    Some(r) => r,
                    None => return Err(CtlError::failed("keep-alive stream closed")),
                };
                if r.ttl <= 0 {
                    if a.once {
                        return Err(CtlError {
                            message: "etcdserver: requested lease not found".into(),
                            code: super::EXIT_BAD_CONNECTION,
                        });
                    }
                    println!("lease {id:016x} expired or revoked.");
                    return Ok(());
                }
                match ctl.write_out {
                    Format::Json => {
                        let mut m = flat_header(&r.header);
                        m.insert("ID".into(), r.id.into());
                        m.insert("TTL".into(), r.ttl.into());
                        println!("{}", Value::Object(m));
                    }
                    _ => println!("lease {id:016x} keepalived with TTL({})", r.ttl),
                }
                if a.once {
                    return Ok(());
                }
                // As clientv3: renew a third of the TTL from now.
                tokio::time::sleep(std::time::Duration::from_secs((r.ttl / 3).max(1) as u64)).await;
            }
        }
    }
    Ok(())
}
