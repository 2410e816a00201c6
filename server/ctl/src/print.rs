//! etcdctl 3.4's output formats. `json` is Go's encoding/json of the response structs: field
//! names from their json tags, 64-bit integers as numbers, bytes as base64, zero values left
//! out. We get there from the gateway's JSON mapping (same names, same omissions) by turning
//! the quoted 64-bit integers back into numbers, field by field.
#![forbid(unsafe_code)]

use serde::Serialize;
use serde_json::Value;

/// The output format (`-w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One value per line.
    Simple,
    /// The response as JSON.
    Json,
    /// `"Name" : value` lines.
    Fields,
    /// The response as protobuf (not supported yet).
    Protobuf,
    /// An ASCII table.
    Table,
}

/// Fields that are 64-bit integers in etcd's responses (quoted by the gateway mapping).
const INT64_FIELDS: &[&str] = &[
    "cluster_id",
    "member_id",
    "revision",
    "raft_term",
    "create_revision",
    "mod_revision",
    "version",
    "lease",
    "count",
    "deleted",
    "ID",
    "TTL",
    "grantedTTL",
    "dbSize",
    "dbSizeInUse",
    "leader",
    "raftIndex",
    "raftTerm",
    "raftAppliedIndex",
    "memberID",
    "compact_revision",
    "watch_id",
    "hash_revision",
];

fn numbers(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if INT64_FIELDS.contains(&k.as_str()) {
                    if let Value::String(s) = x {
                        if let Ok(n) = s.parse::<i64>() {
                            *x = Value::from(n);
                        } else if let Ok(n) = s.parse::<u64>() {
                            *x = Value::from(n);
                        }
                    }
                }
                // Go's encoding/json writes a protobuf enum as its number.
                if k == "permType" {
                    if let Some(n) = x.as_str().and_then(perm_type_number) {
                        *x = Value::from(n);
                    }
                }
                numbers(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(numbers),
        _ => {}
    }
}

fn perm_type_number(name: &str) -> Option<i32> {
    rusted_proto::authpb::permission::Type::from_str_name(name).map(|t| t as i32)
}

/// A response as etcdctl's `-w json` prints it.
pub fn json<T: Serialize>(v: &T) -> String {
    let mut value = serde_json::to_value(v).unwrap_or(Value::Null);
    numbers(&mut value);
    value.to_string()
}

/// A response as `-w protobuf` writes it: the encoded message, nothing after it.
pub fn protobuf<M: prost::Message>(m: &M) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&m.encode_to_vec());
    let _ = out.flush();
}

/// A string as Go's `%q` writes it: double-quoted, with Go's escapes.
pub fn go_quote(s: &str) -> String {
    go_quote_bytes(s.as_bytes())
}

/// Bytes as Go's `%q` writes `string(b)`: invalid UTF-8 bytes become `\x..`.
pub fn go_quote_bytes(b: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{b}' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c if c.is_control() => {
                    if (c as u32) < 0x10000 {
                        out.push_str(&format!("\\u{:04x}", c as u32))
                    } else {
                        out.push_str(&format!("\\U{:08x}", c as u32))
                    }
                }
                c => out.push(c),
            }
        }
        for x in chunk.invalid() {
            out.push_str(&format!("\\x{x:02x}"));
        }
    }
    out.push('"');
    out
}

/// A byte string as etcdctl prints it (`--hex`: `\x61` per byte).
pub fn bytes(b: &[u8], hex: bool) -> String {
    if hex {
        b.iter().map(|x| format!("\\x{x:02x}")).collect()
    } else {
        String::from_utf8_lossy(b).into_owned()
    }
}

/// An ASCII table as etcdctl's (tablewriter: centered header, right-aligned cells).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = {
        let mut s = String::from("+");
        for x in &w {
            s.push_str(&"-".repeat(x + 2));
            s.push('+');
        }
        s
    };
    let mut out = String::new();
    out.push_str(&line);
    out.push('\n');
    out.push('|');
    for (i, h) in header.iter().enumerate() {
        let pad = w[i] - h.chars().count();
        let (l, r) = (pad / 2, pad - pad / 2);
        out.push_str(&format!(" {}{}{} |", " ".repeat(l), h, " ".repeat(r)));
    }
    out.push('\n');
    out.push_str(&line);
    out.push('\n');
    for row in rows {
        out.push('|');
        for (i, c) in row.iter().enumerate().take(n) {
            out.push_str(&format!(" {:>width$} |", c, width = w[i]));
        }
        out.push('\n');
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// Bytes as Go's humanize.Bytes writes them ("25 kB", "1.1 MB").
pub fn human_bytes(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(units.len() - 1);
    let val = (n as f64 / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", units[e])
    } else {
        format!("{val:.0} {}", units[e])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusted_proto::etcdserverpb as pb;
    use rusted_proto::mvccpb;

    #[test]
    fn json_as_etcdctl_prints_it() {
        let r = pb::RangeResponse {
            header: Some(pb::ResponseHeader {
                cluster_id: 1,
                member_id: u64::MAX,
                revision: 4,
                raft_term: 2,
            }),
            kvs: vec![mvccpb::KeyValue {
                key: b"a".to_vec(),
                create_revision: 2,
                mod_revision: 3,
                version: 2,
                value: b"2".to_vec(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        assert_eq!(
            json(&r),
            r#"{"header":{"cluster_id":1,"member_id":18446744073709551615,"revision":4,"raft_term":2},"kvs":[{"key":"YQ==","create_revision":2,"mod_revision":3,"version":2,"value":"Mg=="}],"count":1}"#
        );
    }

    #[test]
    fn sizes_and_tables() {
        assert_eq!(human_bytes(24576), "25 kB");
        assert_eq!(human_bytes(1_105_920), "1.1 MB");
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(5), "5 B");
        let t = table(&["ID", "NAME"], &[vec!["d571".into(), "e".into()]]);
        assert_eq!(
            t,
            "+------+------+\n|  ID  | NAME |\n+------+------+\n| d571 |    e |\n+------+------+\n"
        );
        assert_eq!(bytes(b"b", true), "\\x62");
        assert_eq!(go_quote("a\"b\\\n\u{1}é"), r#""a\"b\\\n\x01é""#);
        assert_eq!(go_quote_bytes(b"\xff1"), r#""\xff1""#);
    }
}
