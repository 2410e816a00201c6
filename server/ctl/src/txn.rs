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
use super::kv;
use super::print::{self, Format};
use super::{Ctl, CtlError, CtlResult};
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::kv_client::KvClient;

/// etcdctl's exit code for bad transaction input.
use super::EXIT_INVALID_INPUT;

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
pub fn read_txn(mut input: impl BufRead, interactive: bool) -> CtlResult<pb::TxnRequest> {
    // As etcdctl: each section ends at a blank line, and running out of input first (even on
    // a last line without a newline) is the error "EOF". Lines are parsed as they are read.
    let mut next_line = || -> CtlResult<Option<String>> {
        let mut line = String::new();
        let n = input.read_line(&mut line).map_err(|e| invalid(e.to_string()))?;
        if n == 0 || !line.ends_with('\n') {
            return Err(invalid("EOF"));
        }
        let t = line.trim();
        Ok((!t.is_empty()).then(|| t.to_string()))
    };
    let prompt = |p: &str| {
        if interactive {
            println!("{p}");
        }
    };
    let mut req = pb::TxnRequest::default();
    prompt("compares:");
    while let Some(l) = next_line()? {
        req.compare.push(parse_compare(&l)?);
    }
    prompt("success requests (get, put, del):");
    while let Some(l) = next_line()? {
        req.success.push(parse_request(&l)?);
    }
    prompt("failure requests (get, put, del):");
    while let Some(l) = next_line()? {
        req.failure.push(parse_request(&l)?);
    }
    Ok(req)
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
pub async fn run(ctl: &Ctl, args: &[String], interactive: bool) -> CtlResult {
    if !args.is_empty() {
        return Err(CtlError::args("txn command does not accept argument"));
    }
    let req = read_txn(std::io::stdin().lock(), interactive)?;
    let mut c = KvClient::new(ctl.dial().await?);
    let r = ctl.timed(c.txn(req)).await?.into_inner();
    match ctl.write_out {
        Format::Json => println!("{}", json(&r)),
        Format::Protobuf => print::protobuf(&r),
        Format::Table => return Err(super::unsupported(Format::Table)),
        Format::Fields => {
            kv::fields_header(&r.header);
            println!("\"Succeeded\" : {}", r.succeeded);
            for op in &r.responses {
                use pb::response_op::Response as R;
                match &op.response {
                    Some(R::ResponsePut(p)) => kv::fields_put(p),
                    Some(R::ResponseRange(g)) => kv::fields_get(g),
                    Some(R::ResponseDeleteRange(d)) => kv::fields_del(d),
                    Some(R::ResponseTxn(t)) => println!("\"Unknown\" : {:?}", format!("{t:?}")),
                    None => {}
                }
            }
        }
        Format::Simple => {
            println!("{}", if r.succeeded { "SUCCESS" } else { "FAILURE" });
            for op in &r.responses {
                println!();
                use pb::response_op::Response as R;
                match &op.response {
                    Some(R::ResponsePut(p)) => kv::simple_put(ctl, p),
                    Some(R::ResponseRange(g)) => kv::simple_get(ctl, g, false),
                    Some(R::ResponseDeleteRange(d)) => kv::simple_del(ctl, d),
                    Some(R::ResponseTxn(t)) => println!("unexpected response {t:?}"),
                    None => {}
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
            false,
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
