//! `txn`: etcdctl's transaction syntax, read from stdin: compares, a blank line, the success
//! requests, a blank line, the failure requests, a blank line.
//!
//! ```text
//! value("foo") = "bar"        target("key") op "value"; targets value|version|create|mod|lease,
//! mod("foo2") > "4"           ops = != < >
//!
//! put foo "new value"         requests as the put/get/del commands take them
//! get foo1 --prefix
//!
//! del foo2
//! ```
#![forbid(unsafe_code)]

use std::io::BufRead;

use clap::Parser;

use super::commands::{key_range, DelArgs, GetArgs, PutArgs};
use super::print::{self, Format};
use super::{Ctl, CtlError, CtlResult};
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::kv_client::KvClient;

/// etcdctl's exit code for bad transaction input.
const EXIT_INVALID_INPUT: u8 = 3;

fn invalid(m: impl Into<String>) -> CtlError {
    CtlError { message: m.into(), code: EXIT_INVALID_INPUT }
}

/// Splits a line as a shell would for simple quoting ("..." with Go escapes, '...').
pub fn split_args(line: &str) -> CtlResult<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => cur.push('\n'),
                            Some('t') => cur.push('\t'),
                            Some(o) => cur.push(o),
                            None => return Err(invalid(format!("bad quoting in {line:?}"))),
                        },
                        Some(o) => cur.push(o),
                        None => return Err(invalid(format!("bad quoting in {line:?}"))),
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(o) => cur.push(o),
                        None => return Err(invalid(format!("bad quoting in {line:?}"))),
                    }
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// One compare line: `target("key") op "value"`.
pub fn parse_compare(line: &str) -> CtlResult<pb::Compare> {
    use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let bad = || invalid(format!("malformed comparison: {line}"));
    let open = line.find('(').ok_or_else(bad)?;
    let close = line.rfind(')').ok_or_else(bad)?;
    let target = line[..open].trim();
    let key = split_args(&line[open + 1..close])?.pop().ok_or_else(bad)?;
    let rest = split_args(&line[close + 1..])?;
    let [op, value] = rest.as_slice() else { return Err(bad()) };
    if !["value", "val", "version", "ver", "create", "c", "mod", "m", "lease"].contains(&target) {
        return Err(invalid(format!("malformed comparison: {line} (unknown target {target})")));
    }
    let result = match op.as_str() {
        "=" | "==" => R::Equal,
        "!=" => R::NotEqual,
        "<" => R::Less,
        ">" => R::Greater,
        _ => return Err(invalid(format!("malformed comparison: {line} (unknown op {op})"))),
    };
    let int = |v: &str| v.parse::<i64>().map_err(|_| bad());
    let (target, union) = match target {
        "value" | "val" => (T::Value, U::Value(value.clone().into_bytes())),
        "version" | "ver" => (T::Version, U::Version(int(value)?)),
        "create" | "c" => (T::Create, U::CreateRevision(int(value)?)),
        "mod" | "m" => (T::Mod, U::ModRevision(int(value)?)),
        "lease" => (T::Lease, U::Lease(i64::from_str_radix(value, 16).map_err(|_| bad())?)),
        _ => {
            return Err(invalid(format!("malformed comparison: {line} (unknown target {target})")))
        }
    };
    Ok(pb::Compare {
        result: result as i32,
        target: target as i32,
        key: key.into_bytes(),
        range_end: Vec::new(),
        target_union: Some(union),
    })
}

#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
enum Op {
    Put(PutArgs),
    Get(GetArgs),
    Del(DelArgs),
}

/// One request line: `put|get|del ...` with the commands' flags.
pub fn parse_request(line: &str) -> CtlResult<pb::RequestOp> {
    use pb::request_op::Request as Q;
    let args = split_args(line)?;
    let op =
        Op::try_parse_from(&args).map_err(|_| invalid(format!("invalid txn request: {line}")))?;
    let request = match op {
        Op::Put(a) => {
            let [k, v] = a.args.as_slice() else {
                return Err(invalid(format!("invalid txn request: {line}")));
            };
            let lease = i64::from_str_radix(&a.lease, 16)
                .map_err(|_| invalid(format!("invalid txn request: {line}")))?;
            Q::RequestPut(pb::PutRequest {
                key: k.clone().into_bytes(),
                value: v.clone().into_bytes(),
                lease,
                prev_kv: a.prev_kv,
                ignore_value: a.ignore_value,
                ignore_lease: a.ignore_lease,
            })
        }
        Op::Get(a) => {
            let (key, range_end) = key_range(&a.args, a.prefix, a.from_key, "get")?;
            Q::RequestRange(pb::RangeRequest {
                key,
                range_end,
                limit: a.limit,
                revision: a.rev,
                keys_only: a.keys_only,
                ..Default::default()
            })
        }
        Op::Del(a) => {
            let (key, range_end) = key_range(&a.args, a.prefix, a.from_key, "del")?;
            Q::RequestDeleteRange(pb::DeleteRangeRequest { key, range_end, prev_kv: a.prev_kv })
        }
    };
    Ok(pb::RequestOp { request: Some(request) })
}

/// Reads a transaction in etcdctl's syntax.
pub fn read_txn(input: impl BufRead) -> CtlResult<pb::TxnRequest> {
    let mut sections: Vec<Vec<String>> = vec![Vec::new()];
    for line in input.lines() {
        let line = line.map_err(|e| invalid(e.to_string()))?;
        if line.trim().is_empty() {
            if sections.len() == 3 {
                break;
            }
            sections.push(Vec::new());
            continue;
        }
        if let Some(s) = sections.last_mut() {
            s.push(line);
        }
    }
    sections.resize(3, Vec::new());
    let compare = sections[0].iter().map(|l| parse_compare(l)).collect::<CtlResult<_>>()?;
    let success = sections[1].iter().map(|l| parse_request(l)).collect::<CtlResult<_>>()?;
    let failure = sections[2].iter().map(|l| parse_request(l)).collect::<CtlResult<_>>()?;
    Ok(pb::TxnRequest { compare, success, failure })
}

/// The txn response as etcdctl's `-w json` (the Go oneof wrappers spelled out).
fn json(r: &pb::TxnResponse) -> String {
    let mut v = serde_json::from_str::<serde_json::Value>(&print::json(r)).unwrap_or_default();
    if let Some(list) = v.get_mut("responses").and_then(|x| x.as_array_mut()) {
        for item in list.iter_mut() {
            let Some(obj) = item.as_object() else { continue };
            let Some((k, inner)) = obj.iter().next() else { continue };
            let name = match k.as_str() {
                "response_range" => "ResponseRange",
                "response_put" => "ResponsePut",
                "response_delete_range" => "ResponseDeleteRange",
                "response_txn" => "ResponseTxn",
                other => other,
            };
            let wrapped = serde_json::json!({ "Response": { name: inner.clone() } });
            *item = wrapped;
        }
    }
    v.to_string()
}

/// Runs `txn`.
pub async fn run(ctl: &Ctl, interactive: bool) -> CtlResult {
    if interactive {
        return Err(CtlError::failed(
            "interactive txn prompts are not supported by rustedctl yet; give the txn on stdin",
        ));
    }
    let req = read_txn(std::io::stdin().lock())?;
    let mut c = KvClient::new(ctl.dial().await?);
    let r = ctl.timed(c.txn(req)).await?.into_inner();
    match ctl.write_out {
        Format::Json => println!("{}", json(&r)),
        Format::Table => {
            return Err(CtlError {
                message: "table not supported as output format".into(),
                code: super::EXIT_BAD_FEATURE,
            })
        }
        _ => {
            println!("{}", if r.succeeded { "SUCCESS" } else { "FAILURE" });
            for op in &r.responses {
                println!();
                use pb::response_op::Response as R;
                match &op.response {
                    Some(R::ResponsePut(_)) => println!("OK"),
                    Some(R::ResponseRange(g)) => {
                        for kv in &g.kvs {
                            println!("{}", print::bytes(&kv.key, ctl.hex));
                            println!("{}", print::bytes(&kv.value, ctl.hex));
                        }
                    }
                    Some(R::ResponseDeleteRange(d)) => println!("{}", d.deleted),
                    Some(R::ResponseTxn(_)) | None => {}
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcdctl_txn_syntax() {
        let t = read_txn(
            "value(\"foo\") = \"bar 4\"\nmod(\"foo2\") > \"4\"\n\nput foo \"txn ok\"\nget foo1 --prefix\n\ndel foo2\n\n"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(t.compare.len(), 2);
        assert_eq!(t.success.len(), 2);
        assert_eq!(t.failure.len(), 1);
        assert!(parse_compare("value(\"a\") ~ \"b\"").is_err());
        assert!(parse_request("frob a").is_err());
        assert_eq!(split_args("put a \"b c\" 'd'").unwrap(), vec!["put", "a", "b c", "d"]);
    }
}
