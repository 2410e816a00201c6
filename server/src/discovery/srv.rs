//! DNS SRV discovery. Members (`--discovery-srv DOMAIN`, `--discovery-srv-name NAME`) read
//! `_etcd-server-ssl[-NAME]._tcp.DOMAIN` (https peers) and `_etcd-server[-NAME]._tcp.DOMAIN`
//! (http peers), and clients (`rustedctl --discovery-srv`) read `_etcd-client-ssl` and
//! `_etcd-client`. Both record kinds count, as in etcd 3.5 (etcd 3.4 needed the `-ssl` ones
//! even for http peers: etcd issue 11321).
//!
//! The initial cluster names this member `--name` where a target resolves to one of its
//! advertised peer addresses, and the others "0", "1", ... (etcd's); URLs keep the target's
//! host name. Lookups use hickory's resolver, which reads /etc/resolv.conf.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;

/// One SRV answer: the target host (trailing dot kept) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name as the record gives it (`infra0.example.com.`).
    pub host: String,
    /// Port.
    pub port: u16,
}

/// The service name etcd queries: `_SERVICE[-NAME]._tcp.DOMAIN`.
pub fn service_name(service: &str, name: &str, domain: &str) -> String {
    let suffix = if name.is_empty() { String::new() } else { format!("-{name}") };
    format!("_{service}{suffix}._tcp.{}", domain.trim_end_matches('.'))
}

fn resolver() -> Result<TokioResolver, String> {
    TokioResolver::builder_tokio()
        .map(|b| b.build())
        .map_err(|e| format!("cannot read the system DNS configuration: {e}"))
}

/// Go's text of a failed lookup: `lookup NAME on SERVER: REASON`.
fn go_error(r: &TokioResolver, name: &str, e: &hickory_resolver::ResolveError) -> String {
    use hickory_resolver::proto::op::ResponseCode;
    use hickory_resolver::proto::ProtoErrorKind;
    let reason = match e.proto().map(|p| p.kind()) {
        Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => match *response_code {
            ResponseCode::NXDomain | ResponseCode::NoError => "no such host".to_string(),
            ResponseCode::Refused | ResponseCode::ServFail => "server misbehaving".to_string(),
            c => format!("server misbehaving ({c})"),
        },
        _ => e.to_string(),
    };
    match r.config().name_servers().first() {
        Some(ns) => format!("lookup {name} on {}: {reason}", ns.socket_addr),
        None => format!("lookup {name}: {reason}"),
    }
}

/// The SRV records of `name` (RFC 2782 order: priority, then weight).
pub async fn lookup(name: &str) -> Result<Vec<Target>, String> {
    let r = resolver()?;
    let found = r.srv_lookup(name).await.map_err(|e| go_error(&r, name, &e))?;
    let mut recs: Vec<_> = found.iter().cloned().collect();
    recs.sort_by_key(|s| (s.priority(), std::cmp::Reverse(s.weight())));
    Ok(recs.iter().map(|s| Target { host: s.target().to_string(), port: s.port() }).collect())
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let h = host.trim_end_matches('.');
    let addrs = tokio::net::lookup_host((h, port)).await.map_err(|e| format!("lookup {h}: {e}"))?;
    Ok(addrs.collect())
}

fn host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.split_once("://")?.1;
    let hp = rest.split('/').next()?;
    let (h, p) = hp.rsplit_once(':')?;
    Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?))
}

/// etcd's `GetCluster` for one scheme: `name=scheme://host:port` for each record of
/// `service`, this member named `me` where a target is one of `advertised` (its peer URLs).
async fn cluster_of(
    scheme: &str,
    service: &str,
    srv_name: &str,
    domain: &str,
    me: &str,
    advertised: &[String],
) -> Result<Vec<String>, String> {
    let mut mine: Vec<(SocketAddr, &String)> = Vec::new();
    for u in advertised {
        let (h, p) = host_port(u).ok_or_else(|| format!("bad advertised peer URL {u:?}"))?;
        for a in resolve(&h, p).await? {
            mine.push((a, u));
        }
    }
    let qname = service_name(service, srv_name, domain);
    let wrap = |e: String| format!("error querying DNS SRV records for _{service} {e}");
    let targets = lookup(&qname).await.map_err(wrap)?;
    let (mut parts, mut last_err, mut n) = (Vec::new(), None, 0);
    for t in targets {
        let host = t.host.trim_end_matches('.');
        let url = format!("{scheme}://{host}:{}", t.port);
        let addrs = match resolve(host, t.port).await {
            Ok(a) => a,
            Err(e) => {
                last_err = Some(e);
                continue;
            }
        };
        match addrs.iter().find_map(|a| mine.iter().find(|(m, _)| m == a)) {
            Some((_, adv)) if !adv.starts_with(&format!("{scheme}://")) => {
                last_err = Some(format!(
                    "bootstrap at {url} from DNS for {service} has scheme mismatch with expected peer {adv}"
                ));
            }
            Some(_) => parts.push(format!("{me}={url}")),
            None => {
                parts.push(format!("{n}={url}"));
                n += 1;
            }
        }
    }
    if parts.is_empty() {
        if let Some(e) = last_err {
            return Err(wrap(e));
        }
    }
    Ok(parts)
}

/// The initial cluster the SRV records of `domain` describe (`name=url,...`), both record
/// kinds; an error only when neither gives a member.
pub async fn initial_cluster(
    domain: &str,
    srv_name: &str,
    me: &str,
    advertised: &[String],
) -> Result<String, String> {
    let ssl = cluster_of("https", "etcd-server-ssl", srv_name, domain, me, advertised).await;
    let plain = cluster_of("http", "etcd-server", srv_name, domain, me, advertised).await;
    let mut all = Vec::new();
    let mut errs = Vec::new();
    for r in [ssl, plain] {
        match r {
            Ok(p) => all.extend(p),
            Err(e) => errs.push(e),
        }
    }
    if all.is_empty() {
        return Err(errs.join("; "));
    }
    for e in errs {
        tracing::debug!(error = %e, "SRV lookup found nothing");
    }
    for p in &all {
        tracing::info!(node = %p, "got bootstrap from DNS for etcd-server");
    }
    Ok(all.join(","))
}

/// Client endpoints from `_etcd-client-ssl` (https, first) and `_etcd-client` (http) records,
/// as etcdctl builds them (the target's trailing dot kept); an error only when both lookups
/// fail.
pub async fn client_endpoints(domain: &str, srv_name: &str) -> Result<Vec<String>, String> {
    let mut eps = Vec::new();
    let mut errs = Vec::new();
    for (scheme, service) in [("https", "etcd-client-ssl"), ("http", "etcd-client")] {
        match lookup(&service_name(service, srv_name, domain)).await {
            Ok(ts) => {
                eps.extend(ts.into_iter().map(|t| format!("{scheme}://{}:{}", t.host, t.port)))
            }
            Err(e) => errs.push(e),
        }
    }
    if errs.len() == 2 {
        return Err(format!("dns lookup errors: {} and {}", errs[0], errs[1]));
    }
    Ok(eps)
}

/// etcd's check that this member's advertised peer URLs are what the records say for it:
/// both sides resolved and compared.
pub async fn advertise_matches(
    name: &str,
    from_dns: &[String],
    advertised: &[String],
) -> Result<(), String> {
    async fn addrs(urls: &[String]) -> Result<Vec<SocketAddr>, String> {
        let mut out = Vec::new();
        for u in urls {
            let (h, p) = host_port(u).ok_or_else(|| format!("bad URL {u:?}"))?;
            out.extend(resolve(&h, p).await?);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
    let dns = addrs(from_dns).await?;
    let adv = addrs(advertised).await?;
    let cluster = from_dns.iter().map(|u| format!("{name}={u}")).collect::<Vec<_>>().join(",");
    if dns.iter().any(|a| !adv.contains(a)) {
        return Err(format!(
            "--initial-cluster has {cluster} but missing from --initial-advertise-peer-urls={} (resolved urls: {dns:?} != {adv:?})",
            advertised.join(",")
        ));
    }
    if adv.iter().any(|a| !dns.contains(a)) {
        return Err(format!(
            "--initial-advertise-peer-urls has {} but missing from --initial-cluster={cluster}",
            advertised.join(",")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_as_etcd() {
        assert_eq!(
            service_name("etcd-server-ssl", "", "example.com"),
            "_etcd-server-ssl._tcp.example.com"
        );
        assert_eq!(
            service_name("etcd-server", "prod", "example.com."),
            "_etcd-server-prod._tcp.example.com"
        );
        assert_eq!(host_port("https://a.example.com:2380"), Some(("a.example.com".into(), 2380)));
        assert_eq!(host_port("http://[::1]:2380"), Some(("::1".into(), 2380)));
    }
}
