//! `make-mirror`, as etcdctl 3.4's: copies the key-values under a prefix from the cluster of
//! `--endpoints` to the cluster at `<destination>` as of one revision, then follows the source
//! by watch from the next revision, replaying each source revision as one txn at the
//! destination. Prints the count of keys synced every 30 s. The online path from a running
//! etcd to rusted, and back. Runs until killed, or until the source's history it needs is
//! compacted or a write fails (exit 1).
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::kv_client::KvClient;
use rusted_proto::etcdserverpb::watch_client::WatchClient;
use rusted_proto::keys::prefix_end;
use rusted_proto::mvccpb;
use rusted_proto::tls::ClientTls;

use crate::{Conn, Ctl, CtlError, CtlResult};

/// Keys read per range while copying the base (clientv3 mirror's batch).
const BATCH: i64 = 1000;
/// How often the count is printed.
const REPORT_EVERY: Duration = Duration::from_secs(30);

/// etcdctl 3.4's `make-mirror` flags.
#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// The destination cluster's endpoint.
    pub args: Vec<String>,
    /// Key-value prefix to mirror
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// destination prefix to mirror a prefix to a different prefix in the destination cluster
    #[arg(long = "dest-prefix", default_value = "")]
    pub dest_prefix: String,
    /// mirror key-values to the root of the destination cluster
    #[arg(long = "no-dest-prefix", default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub no_dest_prefix: bool,
    /// Identify secure client using this TLS certificate file for the destination cluster
    #[arg(long = "dest-cert")]
    pub dest_cert: Option<std::path::PathBuf>,
    /// Identify secure client using this TLS key file
    #[arg(long = "dest-key")]
    pub dest_key: Option<std::path::PathBuf>,
    /// Verify certificates of TLS enabled secure servers using this CA bundle
    #[arg(long = "dest-cacert")]
    pub dest_cacert: Option<std::path::PathBuf>,
    /// Disable transport security for client connections
    #[arg(long = "dest-insecure-transport", default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub dest_insecure_transport: bool,
}

/// The first occurrence of `from` in `key` replaced by `to` (etcdctl's strings.Replace, 1).
fn rename(key: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() {
        return [to, key].concat();
    }
    match key.windows(from.len()).position(|w| w == from) {
        Some(at) => [&key[..at], to, &key[at + from.len()..]].concat(),
        None => key.to_vec(),
    }
}

/// Runs `make-mirror`.
pub async fn make_mirror(ctl: &Ctl, a: &MirrorArgs) -> CtlResult {
    let [dest] = a.args.as_slice() else {
        return Err(CtlError::args("make-mirror takes one destination argument"));
    };
    let files = a.dest_cacert.is_some() || a.dest_cert.is_some() || a.dest_key.is_some();
    let dest_tls = (files || !a.dest_insecure_transport).then(|| ClientTls {
        ca_file: a.dest_cacert.clone(),
        cert_file: a.dest_cert.clone(),
        key_file: a.dest_key.clone(),
        skip_verify: false,
    });
    let dc = ctl.dial_with(dest, dest_tls.as_ref(), false).await?;
    let sc = ctl.dial().await?;
    if a.no_dest_prefix && !a.dest_prefix.is_empty() {
        return Err(CtlError::args(
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        ));
    }
    let from = a.prefix.as_bytes().to_vec();
    let to = if a.no_dest_prefix {
        Vec::new()
    } else if a.dest_prefix.is_empty() {
        from.clone()
    } else {
        a.dest_prefix.as_bytes().to_vec()
    };
    let total = Arc::new(AtomicU64::new(0));
    let t = total.clone();
    let reporter = tokio::spawn(async move {
        loop {
            tokio::time::sleep(REPORT_EVERY).await;
            println!("{}", t.load(Ordering::Relaxed));
        }
    });
    let r = mirror(sc, dc, &from, &to, &total).await;
    reporter.abort();
    r
}

async fn mirror(sc: Conn, dc: Conn, from: &[u8], to: &[u8], total: &AtomicU64) -> CtlResult {
    let mut src = KvClient::new(sc.clone());
    let mut dst = KvClient::new(dc);
    let range_end = if from.is_empty() { vec![0] } else { prefix_end(from) };
    // The base: everything under the prefix as of one revision, in batches.
    let mut key = if from.is_empty() { vec![0] } else { from.to_vec() };
    let mut rev = 0;
    loop {
        let req = pb::RangeRequest {
            key: key.clone(),
            range_end: range_end.clone(),
            limit: BATCH,
            revision: rev,
            ..Default::default()
        };
        let resp = src.range(req).await?.into_inner();
        if rev == 0 {
            rev = resp.header.as_ref().map_or(0, |h| h.revision);
        }
        for kv in &resp.kvs {
            let put = pb::PutRequest {
                key: rename(&kv.key, from, to),
                value: kv.value.clone(),
                ..Default::default()
            };
            dst.put(put).await?;
            total.fetch_add(1, Ordering::Relaxed);
        }
        match resp.kvs.last() {
            Some(last) if resp.more => key = [last.key.as_slice(), &[0]].concat(),
            _ => break,
        }
    }
    // Then every change after it, one txn per source revision.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let create = pb::WatchCreateRequest {
        key: if from.is_empty() { vec![0] } else { from.to_vec() },
        range_end,
        start_revision: rev + 1,
        ..Default::default()
    };
    tx.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)),
    })
    .await
    .map_err(|_| CtlError::failed("watch stream closed"))?;
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut().insert("hasleader", tonic::metadata::MetadataValue::from_static("true"));
    let mut stream = WatchClient::new(sc).watch(req).await?.into_inner();
    while let Some(r) = stream.message().await? {
        if r.compact_revision != 0 {
            return Err(CtlError::failed("etcdserver: mvcc: required revision has been compacted"));
        }
        let mut ops = Vec::new();
        let mut last_rev = 0;
        for ev in r.events {
            let Some(kv) = ev.kv else { continue };
            if last_rev != 0 && kv.mod_revision > last_rev {
                commit(&mut dst, std::mem::take(&mut ops)).await?;
            }
            last_rev = kv.mod_revision;
            let key = rename(&kv.key, from, to);
            let op = if ev.r#type == mvccpb::event::EventType::Delete as i32 {
                pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
                    key,
                    ..Default::default()
                })
            } else {
                pb::request_op::Request::RequestPut(pb::PutRequest {
                    key,
                    value: kv.value,
                    ..Default::default()
                })
            };
            ops.push(pb::RequestOp { request: Some(op) });
            total.fetch_add(1, Ordering::Relaxed);
        }
        commit(&mut dst, ops).await?;
        // The tx end stays open (dropping it would end the watch).
        let _ = &tx;
    }
    Ok(())
}

async fn commit(dst: &mut KvClient<Conn>, ops: Vec<pb::RequestOp>) -> CtlResult {
    if ops.is_empty() {
        return Ok(());
    }
    dst.txn(pb::TxnRequest { success: ops, ..Default::default() }).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_renamed_as_etcdctl_renames_them() {
        assert_eq!(rename(b"src/a", b"src/", b"dst/"), b"dst/a");
        assert_eq!(rename(b"src/a", b"src/", b""), b"a");
        assert_eq!(rename(b"x/src/a", b"src/", b"d/"), b"x/d/a", "the first occurrence");
        assert_eq!(rename(b"a", b"", b"p/"), b"p/a");
    }
}
