//! Authentication and authorization. `tests/compat/auth.sh` runs users, roles, permissions,
//! enabling auth, reads, writes, txns, watches, snapshots and the gateway with etcdctl and curl
//! against Debian's etcd 3.4 and rusted (and restores rusted's snapshot into etcd): the outputs
//! must be equal. The tests here cover what etcd 3.5 checks beyond 3.4 (leases, compaction,
//! status, AuthStatus), the auth revision check when a write is applied, and restarts.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use clap::Parser;
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::auth_client::AuthClient;
use rusted_proto::etcdserverpb::kv_client::KvClient;
use rusted_proto::etcdserverpb::lease_client::LeaseClient;
use rusted_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use rusted_server::auth::AuthInfo;
use rusted_server::config::ServerConfig;
use rusted_server::member::{Member, StartOptions};
use tonic::transport::Channel;
use tonic::Code;

#[test]
fn auth_scenarios_match_etcd() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    common::run_script(
        "compat/auth.sh",
        &[("RUSTED_BIN", env!("CARGO_BIN_EXE_rusted")), ("PYTHON", &python)],
        "auth scenarios differ from etcd's",
    );
}

async fn start(ip: &str, dir: &std::path::Path) -> Member {
    common::start_member(ip, dir, StartOptions::default(), &["--bcrypt-cost=4"]).await
}

async fn channel(ip: &str) -> Channel {
    Channel::from_shared(format!("http://{ip}:2379")).unwrap().connect().await.unwrap()
}

/// A request carrying `token` (if any).
fn req<T>(token: Option<&str>, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut().insert("token", t.parse().unwrap());
    }
    r
}

async fn token(ch: &Channel, name: &str, password: &str) -> String {
    let r = pb::AuthenticateRequest { name: name.into(), password: password.into() };
    AuthClient::new(ch.clone()).authenticate(r).await.unwrap().into_inner().token
}

/// root (root role), alice (readwrite on the `a` prefix), bob (no role); auth enabled.
async fn setup(ch: &Channel) {
    let mut a = AuthClient::new(ch.clone());
    for (n, p) in [("root", "rootpw"), ("alice", "alicepw"), ("bob", "bobpw")] {
        a.user_add(pb::AuthUserAddRequest {
            name: n.into(),
            password: p.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    for r in ["root", "ra"] {
        a.role_add(pb::AuthRoleAddRequest { name: r.into() }).await.unwrap();
    }
    let perm = rusted_proto::authpb::Permission {
        perm_type: rusted_proto::authpb::permission::Type::Readwrite as i32,
        key: b"a".to_vec(),
        range_end: b"b".to_vec(),
    };
    a.role_grant_permission(pb::AuthRoleGrantPermissionRequest {
        name: "ra".into(),
        perm: Some(perm),
    })
    .await
    .unwrap();
    for (u, r) in [("root", "root"), ("alice", "ra")] {
        a.user_grant_role(pb::AuthUserGrantRoleRequest { user: u.into(), role: r.into() })
            .await
            .unwrap();
    }
    a.auth_enable(pb::AuthEnableRequest {}).await.unwrap();
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    let e = r.expect_err("refused");
    (e.code(), e.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_etcd_35_checks_beyond_34() {
    let dir = tempfile::tempdir().unwrap();
    let ip = "127.0.0.27";
    let m = start(ip, dir.path()).await;
    let ch = channel(ip).await;
    setup(&ch).await;
    let (root, alice, bob) = (
        token(&ch, "root", "rootpw").await,
        token(&ch, "alice", "alicepw").await,
        token(&ch, "bob", "bobpw").await,
    );
    let (root, alice, bob) = (Some(root.as_str()), Some(alice.as_str()), Some(bob.as_str()));
    let denied = (Code::PermissionDenied, "etcdserver: permission denied".to_string());
    let empty = (Code::InvalidArgument, "etcdserver: user name is empty".to_string());

    // AuthStatus: root only.
    let mut a = AuthClient::new(ch.clone());
    let st = a.auth_status(req(root, pb::AuthStatusRequest {})).await.unwrap().into_inner();
    assert!(st.enabled);
    assert_eq!(st.auth_revision, 9, "1, then 3 users, 2 roles, 1 permission, 2 grants");
    assert_eq!(code(a.auth_status(req(alice, pb::AuthStatusRequest {})).await), denied);

    // Compaction: root only.
    let mut kv = KvClient::new(ch.clone());
    let put = |k: &str, lease| pb::PutRequest {
        key: k.into(),
        value: b"v".to_vec(),
        lease,
        ..Default::default()
    };
    let r = kv.put(req(alice, put("a1", 0))).await.unwrap().into_inner();
    let rev = r.header.unwrap().revision;
    let c = pb::CompactionRequest { revision: rev, physical: false };
    assert_eq!(code(kv.compact(req(alice, c)).await), denied);
    kv.compact(req(root, c)).await.unwrap();

    // Leases: an identity to grant; write on the attached keys to revoke or renew; read on
    // them to list them.
    let mut l = LeaseClient::new(ch.clone());
    let g = pb::LeaseGrantRequest { ttl: 60, id: 0 };
    assert_eq!(code(l.lease_grant(req(None, g)).await), empty);
    let id = l.lease_grant(req(alice, g)).await.unwrap().into_inner().id;
    kv.put(req(alice, put("a2", id))).await.unwrap();
    let ttl = pb::LeaseTimeToLiveRequest { id, keys: true };
    assert_eq!(code(l.lease_time_to_live(req(bob, ttl)).await), denied);
    let t = l.lease_time_to_live(req(alice, ttl)).await.unwrap().into_inner();
    assert_eq!(t.keys, vec![b"a2".to_vec()]);
    assert_eq!(code(l.lease_leases(req(bob, pb::LeaseLeasesRequest {})).await), denied);
    assert_eq!(
        l.lease_leases(req(alice, pb::LeaseLeasesRequest {}))
            .await
            .unwrap()
            .into_inner()
            .leases
            .len(),
        1
    );
    // bob may write a3, but not through alice's lease: its keys (a2) are not his to write.
    let mut a = AuthClient::new(ch.clone());
    a.role_add(req(root, pb::AuthRoleAddRequest { name: "rb".into() })).await.unwrap();
    let perm = rusted_proto::authpb::Permission {
        perm_type: rusted_proto::authpb::permission::Type::Write as i32,
        key: b"a3".to_vec(),
        range_end: Vec::new(),
    };
    let grant = pb::AuthRoleGrantPermissionRequest { name: "rb".into(), perm: Some(perm) };
    a.role_grant_permission(req(root, grant)).await.unwrap();
    let g = pb::AuthUserGrantRoleRequest { user: "bob".into(), role: "rb".into() };
    a.user_grant_role(req(root, g)).await.unwrap();
    kv.put(req(bob, put("a3", 0))).await.unwrap();
    assert_eq!(code(kv.put(req(bob, put("a3", id))).await), denied);
    assert_eq!(code(l.lease_revoke(req(bob, pb::LeaseRevokeRequest { id })).await), denied);
    l.lease_revoke(req(alice, pb::LeaseRevokeRequest { id })).await.unwrap();

    // Status needs an identity; defragment the root role, refused unmapped as etcd does.
    let mut mt = MaintenanceClient::new(ch.clone());
    assert_eq!(code(mt.status(req(None, pb::StatusRequest {})).await), empty);
    mt.status(req(bob, pb::StatusRequest {})).await.unwrap();
    assert_eq!(
        code(mt.defragment(req(alice, pb::DefragmentRequest {})).await),
        (Code::Unknown, "auth: permission denied".to_string())
    );

    // Lock: the caller's permissions on the lock's keys, as etcd's in-process client checks
    // them (its errors reach callers as code Unknown).
    use rusted_proto::v3lockpb::lock_client::LockClient;
    use rusted_proto::v3lockpb::{LockRequest, UnlockRequest};
    let mut lk = LockClient::new(ch.clone());
    let lr = || LockRequest { name: b"alock".to_vec(), lease: 0 };
    let held = lk.lock(req(alice, lr())).await.unwrap().into_inner();
    lk.unlock(req(alice, UnlockRequest { key: held.key })).await.unwrap();
    let e = code(lk.lock(req(bob, lr())).await);
    assert_eq!(e.1, "etcdserver: permission denied");

    // A write checked at an older auth revision is refused when applied.
    let old = Some(AuthInfo { user: "root".into(), revision: 1 });
    let p = rusted_proto::rustedpb::proposal::Request::Put(put("a4", 0));
    let e = m.ctx.propose_for(&old, p).await.unwrap_err();
    let s: tonic::Status = e.into();
    assert_eq!(s.message(), "etcdserver: revision of auth store is old");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_survive_a_restart_and_tokens_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let ip = "127.0.0.28";
    let m = start(ip, dir.path()).await;
    let ch = channel(ip).await;
    setup(&ch).await;
    let alice = token(&ch, "alice", "alicepw").await;
    let mut kv = KvClient::new(ch.clone());
    let put = pb::PutRequest { key: b"a1".to_vec(), value: b"v".to_vec(), ..Default::default() };
    kv.put(req(Some(&alice), put.clone())).await.unwrap();
    m.stop().await;

    let m = start(ip, dir.path()).await;
    let ch = channel(ip).await;
    let mut kv = KvClient::new(ch.clone());
    let e = code(kv.put(req(Some(&alice), put.clone())).await);
    assert_eq!(e, (Code::Unauthenticated, "etcdserver: invalid auth token".to_string()));
    let alice = token(&ch, "alice", "alicepw").await;
    kv.put(req(Some(&alice), put)).await.unwrap();
    assert!(m.ctx.auth().enabled());
    let mut a = AuthClient::new(ch.clone());
    let root = token(&ch, "root", "rootpw").await;
    let users = a.user_list(req(Some(&root), pb::AuthUserListRequest {})).await.unwrap();
    assert_eq!(users.into_inner().users, vec!["alice", "bob", "root"]);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_knows_a_token_and_enforces_alike() {
    three_members(["127.0.0.29", "127.0.0.30", "127.0.0.31"], None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_tokens_work_on_every_member() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let (privk, pubk) = (dir.path().join("jwt.key"), dir.path().join("jwt.pub"));
    std::fs::write(&privk, key.serialize_pem()).unwrap();
    std::fs::write(&pubk, key.public_key_pem()).unwrap();
    let flag = format!(
        "--auth-token=jwt,pub-key={},priv-key={},sign-method=ES256,ttl=10m",
        pubk.display(),
        privk.display()
    );
    three_members(["127.0.0.32", "127.0.0.33", "127.0.0.34"], Some(flag)).await;
}

/// Three members; alice's token from one is good on all; each enforces the same; a role
/// revoked takes effect on the token already held (simple tokens: new permissions at once;
/// JWTs: refused as made before the change, as etcd's).
async fn three_members(ips: [&str; 3], auth_token: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = format!(
        "--initial-cluster={}",
        ips.iter()
            .enumerate()
            .map(|(i, ip)| format!("m{i}=http://{ip}:2380"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut members = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let cfg = ServerConfig::parse_from(
            [
                "rusted".to_string(),
                format!("--name=m{i}"),
                format!("--data-dir={}", dir.path().join(format!("m{i}")).display()),
                format!("--listen-client-urls=http://{ip}:2379"),
                format!("--advertise-client-urls=http://{ip}:2379"),
                format!("--listen-peer-urls=http://{ip}:2380"),
                format!("--initial-advertise-peer-urls=http://{ip}:2380"),
                cluster.clone(),
                "--bcrypt-cost=4".into(),
            ]
            .into_iter()
            .chain(auth_token.clone()),
        );
        // Members publish once they see a leader: start them all before waiting.
        members.push(tokio::spawn(Member::start(cfg)));
    }
    let mut started = Vec::new();
    for m in members {
        started.push(m.await.unwrap().expect("member starts"));
    }
    let mut chans = Vec::new();
    for ip in ips {
        let mut ch = None;
        for _ in 0..200 {
            if let Ok(c) =
                Channel::from_shared(format!("http://{ip}:2379")).unwrap().connect().await
            {
                let mut kv = KvClient::new(c.clone());
                if kv
                    .range(pb::RangeRequest { key: b"x".to_vec(), ..Default::default() })
                    .await
                    .is_ok()
                {
                    ch = Some(c);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        chans.push(ch.expect("member serves"));
    }
    setup(&chans[1]).await;
    if auth_token.is_some() {
        // A JWT names no raft index: a member that has not applied AuthEnable yet would take
        // it as nobody's (etcd too). Simple tokens wait for their index: no wait needed.
        let target = started[1].ctx.replica.committed();
        for m in &started {
            m.ctx.replica.wait_applied(target, Duration::from_secs(5)).await.unwrap();
        }
    }
    // A token from one member works on every other (Authenticate went through raft), and each
    // member refuses what alice may not do.
    let alice = token(&chans[2], "alice", "alicepw").await;
    for ch in &chans {
        let mut kv = KvClient::new(ch.clone());
        let ok = pb::PutRequest { key: b"a1".to_vec(), value: b"v".to_vec(), ..Default::default() };
        kv.put(req(Some(&alice), ok)).await.unwrap();
        let no = pb::PutRequest { key: b"b1".to_vec(), value: b"v".to_vec(), ..Default::default() };
        assert_eq!(code(kv.put(req(Some(&alice), no)).await).0, Code::PermissionDenied);
        let r = pb::RangeRequest { key: b"a1".to_vec(), serializable: true, ..Default::default() };
        kv.range(req(Some(&alice), r)).await.unwrap();
    }
    // Revoking the role takes effect on the token already held, on every member.
    let root = token(&chans[0], "root", "rootpw").await;
    let mut a = AuthClient::new(chans[0].clone());
    let rv = pb::AuthUserRevokeRoleRequest { name: "alice".into(), role: "ra".into() };
    a.user_revoke_role(req(Some(&root), rv)).await.unwrap();
    let target = started[0].ctx.replica.status().committed;
    for m in &started {
        m.ctx.replica.wait_applied(target, Duration::from_secs(5)).await.unwrap();
    }
    for ch in &chans {
        let mut kv = KvClient::new(ch.clone());
        let r = pb::RangeRequest { key: b"a1".to_vec(), serializable: true, ..Default::default() };
        let (c, m) = code(kv.range(req(Some(&alice), r)).await);
        if auth_token.is_some() {
            assert_eq!(m, "etcdserver: revision of auth store is old");
        } else {
            assert_eq!(c, Code::PermissionDenied);
        }
    }
    for m in started {
        m.stop().await;
    }
}
