//! `endpoint health|status|hashkv` (with `--cluster`), printing as etcdctl 3.4.
#![forbid(unsafe_code)]

use std::time::Instant;

use clap::{Args, Subcommand};

use super::commands::go_duration;
use super::kv::fields_header;
use super::print::{self, Format};
use super::{Ctl, CtlError, CtlResult};
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::cluster_client::ClusterClient;
use rusted_proto::etcdserverpb::kv_client::KvClient;
use rusted_proto::etcdserverpb::maintenance_client::MaintenanceClient;

/// `endpoint ...`.
#[derive(Debug, Args)]
pub struct EndpointArgs {
    /// use all endpoints from the cluster member list
    #[arg(long, global = true)]
    pub cluster: bool,
    /// The endpoint command.
    #[command(subcommand)]
    pub command: EndpointCommand,
}

/// The `endpoint` subcommands.
#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health,
    /// Prints out the status of endpoints specified in `--endpoints` flag
    Status,
    /// Prints the KV history hash for each endpoint in --endpoints
    Hashkv {
        /// maximum revision to hash (default: all revisions)
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

/// Runs an `endpoint` command.
pub async fn run(ctl: &Ctl, a: &EndpointArgs) -> CtlResult {
    let eps = endpoints(ctl, a.cluster).await?;
    match a.command {
        EndpointCommand::Health => health(ctl, &eps).await,
        EndpointCommand::Status => status(ctl, &eps).await,
        EndpointCommand::Hashkv { rev } => hashkv(ctl, &eps, rev).await,
    }
}

/// The endpoints a per-member command visits: `--endpoints`, or with `--cluster` every client
/// URL in the member list (as etcdctl's endpointsFromCluster).
pub async fn endpoints(ctl: &Ctl, cluster: bool) -> CtlResult<Vec<String>> {
    if !cluster {
        return Ok(ctl.endpoints.clone());
    }
    let fetch = async {
        let mut c = ClusterClient::new(ctl.dial().await?);
        ctl.timed(c.member_list(pb::MemberListRequest { linearizable: false })).await
    };
    let r = fetch.await.map_err(|e| {
        CtlError::failed(format!(
            "failed to fetch endpoints from etcd cluster member list: {}",
            e.message
        ))
    })?;
    Ok(r.into_inner().members.into_iter().flat_map(|m| m.client_ur_ls).collect())
}

#[derive(serde::Serialize)]
struct Health {
    endpoint: String,
    health: bool,
    took: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
}

async fn check_one(ctl: &Ctl, ep: &str) -> Health {
    let ch = match ctl.dial_one(ep).await {
        Ok(c) => c,
        Err(e) => {
            return Health {
                endpoint: ep.into(),
                health: false,
                took: String::new(),
                error: e.message,
            }
        }
    };
    let start = Instant::now();
    // As etcdctl: a linearizable read of any key proves a quorum answers.
    let req = pb::RangeRequest { key: b"health".to_vec(), ..Default::default() };
    let r = ctl.timed(KvClient::new(ch).range(req)).await;
    let took = go_duration(start.elapsed());
    match r {
        Ok(_) => Health { endpoint: ep.into(), health: true, took, error: String::new() },
        Err(e) => Health { endpoint: ep.into(), health: false, took, error: e.message },
    }
}

async fn health(ctl: &Ctl, eps: &[String]) -> CtlResult {
    let all: Vec<Health> =
        futures_util::future::join_all(eps.iter().map(|ep| check_one(ctl, ep))).await;
    match ctl.write_out {
        Format::Json => println!("{}", serde_json::to_string(&all).unwrap_or_default()),
        Format::Table => {
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|h| {
                    vec![h.endpoint.clone(), h.health.to_string(), h.took.clone(), h.error.clone()]
                })
                .collect();
            print!("{}", print::table(&["ENDPOINT", "HEALTH", "TOOK", "ERROR"], &rows));
        }
        Format::Fields => {
            for h in &all {
                println!("\"Endpoint\" : {}", print::go_quote(&h.endpoint));
                println!("\"Health\" : {}", h.health);
                println!("\"Took\" : {}", h.took);
                println!("\"Error\" : {}", h.error);
                println!();
            }
        }
        Format::Protobuf => return Err(super::unsupported(Format::Protobuf)),
        Format::Simple => {
            for h in &all {
                if h.error.is_empty() {
                    eprintln!(
                        "{} is healthy: successfully committed proposal: took = {}",
                        h.endpoint, h.took
                    );
                } else {
                    eprintln!(
                        "{} is unhealthy: failed to commit proposal: {}",
                        h.endpoint, h.error
                    );
                }
            }
        }
    }
    if all.iter().any(|h| !h.error.is_empty()) {
        return Err(CtlError::failed("unhealthy cluster"));
    }
    Ok(())
}

async fn status(ctl: &Ctl, eps: &[String]) -> CtlResult {
    let mut rows = Vec::new();
    let mut failed = false;
    for ep in eps {
        let r = async {
            let mut m = MaintenanceClient::new(ctl.dial_one(ep).await?);
            ctl.timed(m.status(pb::StatusRequest {})).await
        }
        .await;
        match r {
            Ok(st) => rows.push((ep.clone(), st.into_inner())),
            Err(e) => {
                eprintln!("Failed to get the status of endpoint {ep} ({})", e.message);
                failed = true;
            }
        }
    }
    match ctl.write_out {
        Format::Json => {
            let list: Vec<String> = rows
                .iter()
                .map(|(ep, st)| {
                    format!(
                        "{{\"Endpoint\":{},\"Status\":{}}}",
                        print::go_quote(ep),
                        print::json(st)
                    )
                })
                .collect();
            println!("[{}]", list.join(","));
        }
        Format::Table => {
            let header = [
                "ENDPOINT",
                "ID",
                "VERSION",
                "DB SIZE",
                "IS LEADER",
                "IS LEARNER",
                "RAFT TERM",
                "RAFT INDEX",
                "RAFT APPLIED INDEX",
                "ERRORS",
            ];
            let cells: Vec<Vec<String>> =
                rows.iter().map(|(ep, st)| status_cells(ep, st)).collect();
            print!("{}", print::table(&header, &cells));
        }
        Format::Fields => {
            for (ep, st) in &rows {
                fields_header(&st.header);
                println!("\"Version\" : {}", print::go_quote(&st.version));
                println!("\"DBSize\" : {}", st.db_size);
                println!("\"Leader\" : {}", st.leader);
                println!("\"IsLearner\" : {}", st.is_learner);
                println!("\"RaftIndex\" : {}", st.raft_index);
                println!("\"RaftTerm\" : {}", st.raft_term);
                println!("\"RaftAppliedIndex\" : {}", st.raft_applied_index);
                println!("\"Errors\" : [{}]", st.errors.join(" "));
                println!("\"Endpoint\" : {}", print::go_quote(ep));
                println!();
            }
        }
        Format::Protobuf => return Err(super::unsupported(Format::Protobuf)),
        Format::Simple => {
            for (ep, st) in &rows {
                println!("{}", status_cells(ep, st).join(", "));
            }
        }
    }
    if failed {
        return Err(CtlError::silent(super::EXIT_ERROR));
    }
    Ok(())
}

fn status_cells(ep: &str, st: &pb::StatusResponse) -> Vec<String> {
    let id = st.header.as_ref().map_or(0, |h| h.member_id);
    vec![
        ep.to_string(),
        format!("{id:x}"),
        st.version.clone(),
        print::human_bytes(st.db_size.max(0) as u64),
        (st.leader == id).to_string(),
        st.is_learner.to_string(),
        st.raft_term.to_string(),
        st.raft_index.to_string(),
        st.raft_applied_index.to_string(),
        st.errors.join(", "),
    ]
}

async fn hashkv(ctl: &Ctl, eps: &[String], rev: i64) -> CtlResult {
    let mut rows = Vec::new();
    let mut last_err = None;
    for ep in eps {
        let r = async {
            let mut m = MaintenanceClient::new(ctl.dial_one(ep).await?);
            ctl.timed(m.hash_kv(pb::HashKvRequest { revision: rev })).await
        }
        .await;
        match r {
            Ok(h) => rows.push((ep.clone(), h.into_inner())),
            Err(e) => {
                eprintln!("Failed to get the hash of endpoint {ep} ({})", e.message);
                last_err = Some(e);
            }
        }
    }
    match ctl.write_out {
        Format::Json => {
            let list: Vec<String> = rows
                .iter()
                .map(|(ep, h)| {
                    // etcdctl 3.4's HashKVResponse has no hash_revision (added in 3.5).
                    let h = pb::HashKvResponse { hash_revision: 0, ..*h };
                    format!(
                        "{{\"Endpoint\":{},\"HashKV\":{}}}",
                        print::go_quote(ep),
                        print::json(&h)
                    )
                })
                .collect();
            println!("[{}]", list.join(","));
        }
        Format::Table => {
            let cells: Vec<Vec<String>> =
                rows.iter().map(|(ep, h)| vec![ep.clone(), h.hash.to_string()]).collect();
            print!("{}", print::table(&["ENDPOINT", "HASH"], &cells));
        }
        Format::Fields => {
            for (ep, h) in &rows {
                fields_header(&h.header);
                println!("\"Endpoint\" : {}", print::go_quote(ep));
                println!("\"Hash\" : {}", h.hash);
                println!();
            }
        }
        Format::Protobuf => return Err(super::unsupported(Format::Protobuf)),
        Format::Simple => {
            for (ep, h) in &rows {
                println!("{ep}, {}", h.hash);
            }
        }
    }
    match last_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
