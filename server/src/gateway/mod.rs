//! HTTP on the client port: etcd's JSON gateway ([`json`], with Go's JSON decoding errors in
//! [`gojson`]), the plain endpoints /health, /livez, /readyz, /version, /metrics ([`http`]),
//! and /debug/vars and the `--enable-pprof` profiles ([`debug`]).

pub mod debug;
pub mod gojson;
pub mod http;
pub mod json;
