//! `member list|add|remove|update|promote`, printing as etcdctl 3.4.
#![forbid(unsafe_code)]

use clap::{Args, Subcommand};

use super::print::{self, Format};
use super::{Ctl, CtlError, CtlResult};
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::cluster_client::ClusterClient;

/// `member ...`.
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Adds a member into the cluster
    Add(AddArgs),
    /// Removes a member from the cluster
    Remove {
        /// The member ID (hex).
        args: Vec<String>,
    },
    /// Updates a member in the cluster
    Update(UpdateArgs),
    /// Lists all members in the cluster
    List,
    /// Promotes a non-voting member in the cluster
    Promote {
        /// The member ID (hex).
        args: Vec<String>,
    },
}

/// `member add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The new member's name.
    pub args: Vec<String>,
    /// comma separated peer URLs for the new member.
    #[arg(long = "peer-urls", default_value = "")]
    pub peer_urls: String,
    /// indicates if the new member is raft learner
    #[arg(long)]
    pub learner: bool,
}

/// `member update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The member ID (hex).
    pub args: Vec<String>,
    /// comma separated peer URLs for the updated member.
    #[arg(long = "peer-urls", default_value = "")]
    pub peer_urls: String,
}

/// Runs a `member` command.
pub async fn run(ctl: &Ctl, cmd: &MemberCommand) -> CtlResult {
    match cmd {
        MemberCommand::List => list(ctl).await,
        MemberCommand::Add(a) => add(ctl, a).await,
        MemberCommand::Remove { args } => {
            let id = member_id(args)?;
            let mut c = ClusterClient::new(ctl.dial().await?);
            let r = ctl.timed(c.member_remove(pb::MemberRemoveRequest { id })).await?.into_inner();
            done(ctl, &r, id, cluster_of(&r.header), "removed from")
        }
        MemberCommand::Update(a) => {
            let id = member_id(&a.args)?;
            if a.peer_urls.is_empty() {
                return Err(CtlError::args("member peer urls not provided"));
            }
            let peer_ur_ls = a.peer_urls.split(',').map(str::to_string).collect();
            let mut c = ClusterClient::new(ctl.dial().await?);
            let req = pb::MemberUpdateRequest { id, peer_ur_ls };
            let r = ctl.timed(c.member_update(req)).await?.into_inner();
            done(ctl, &r, id, cluster_of(&r.header), "updated in")
        }
        MemberCommand::Promote { args } => {
            let id = member_id(args)?;
            let mut c = ClusterClient::new(ctl.dial().await?);
            let r =
                ctl.timed(c.member_promote(pb::MemberPromoteRequest { id })).await?.into_inner();
            done(ctl, &r, id, cluster_of(&r.header), "promoted in")
        }
    }
}

fn member_id(args: &[String]) -> CtlResult<u64> {
    let [id] = args else {
        return Err(CtlError::args("member ID is not provided"));
    };
    u64::from_str_radix(id, 16).map_err(|e| {
        CtlError::args(format!(
            "bad member ID arg ({}), expecting ID in Hex",
            super::go_parse_uint_error("ParseUint", id, &e)
        ))
    })
}

fn cluster_of(h: &Option<pb::ResponseHeader>) -> u64 {
    h.as_ref().map_or(0, |h| h.cluster_id)
}

/// Prints a remove/update/promote answer.
fn done<M>(ctl: &Ctl, r: &M, id: u64, cluster: u64, what: &str) -> CtlResult
where
    M: serde::Serialize + prost::Message,
{
    match ctl.write_out {
        Format::Json => println!("{}", print::json(r)),
        Format::Protobuf => print::protobuf(r),
        Format::Simple => println!("Member {id:16x} {what} cluster {cluster:16x}"),
        other => return Err(super::unsupported(other)),
    }
    Ok(())
}

async fn add(ctl: &Ctl, a: &AddArgs) -> CtlResult {
    let name = match a.args.as_slice() {
        [] => return Err(CtlError::args("member name not provided")),
        [n] => n.clone(),
        many => {
            let mut m = String::from("too many arguments");
            for s in many {
                if s.to_lowercase().starts_with("http") {
                    m.push_str(&format!(", did you mean --peer-urls={s}"));
                }
            }
            return Err(CtlError::args(m));
        }
    };
    if a.peer_urls.is_empty() {
        return Err(CtlError::args("member peer urls not provided"));
    }
    let peer_ur_ls = a.peer_urls.split(',').map(str::to_string).collect();
    let mut c = ClusterClient::new(ctl.dial().await?);
    let req = pb::MemberAddRequest { peer_ur_ls, is_learner: a.learner };
    let r = ctl.timed(c.member_add(req)).await?.into_inner();
    let new_id = r.member.as_ref().map_or(0, |m| m.id);
    match ctl.write_out {
        Format::Json => println!("{}", print::json(&r)),
        Format::Protobuf => print::protobuf(&r),
        Format::Simple => {
            println!("Member {new_id:16x} added to cluster {:16x}", cluster_of(&r.header));
            let mut conf = Vec::new();
            for m in &r.members {
                let n = if m.id == new_id { name.as_str() } else { m.name.as_str() };
                for u in &m.peer_ur_ls {
                    conf.push(format!("{n}={u}"));
                }
            }
            println!();
            println!("ETCD_NAME={}", print::go_quote(&name));
            println!("ETCD_INITIAL_CLUSTER={}", print::go_quote(&conf.join(",")));
            println!("ETCD_INITIAL_ADVERTISE_PEER_URLS={}", print::go_quote(&a.peer_urls));
            println!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
        }
        other => return Err(super::unsupported(other)),
    }
    Ok(())
}

async fn list(ctl: &Ctl) -> CtlResult {
    let mut c = ClusterClient::new(ctl.dial().await?);
    let r =
        ctl.timed(c.member_list(pb::MemberListRequest { linearizable: false })).await?.into_inner();
    let cells = |m: &pb::Member| {
        vec![
            format!("{:x}", m.id),
            if m.name.is_empty() { "unstarted" } else { "started" }.to_string(),
            m.name.clone(),
            m.peer_ur_ls.join(","),
            m.client_ur_ls.join(","),
            m.is_learner.to_string(),
        ]
    };
    match ctl.write_out {
        Format::Json => println!("{}", print::json(&r)),
        Format::Protobuf => print::protobuf(&r),
        Format::Table => {
            let header = ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"];
            let rows: Vec<Vec<String>> = r.members.iter().map(cells).collect();
            print!("{}", print::table(&header, &rows));
        }
        Format::Fields => {
            super::kv::fields_header(&r.header);
            for m in &r.members {
                println!("\"ID\" : {}", m.id);
                println!("\"Name\" : {}", print::go_quote(&m.name));
                for u in &m.peer_ur_ls {
                    println!("\"PeerURL\" : {}", print::go_quote(u));
                }
                for u in &m.client_ur_ls {
                    println!("\"ClientURL\" : {}", print::go_quote(u));
                }
                println!("\"IsLearner\" : {}", m.is_learner);
                println!();
            }
        }
        Format::Simple => {
            for m in &r.members {
                println!("{}", cells(m).join(", "));
            }
        }
    }
    Ok(())
}
