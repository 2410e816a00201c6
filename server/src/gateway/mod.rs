//! HTTP on the client port: etcd's JSON gateway ([`json`], with Go's JSON decoding errors in
//! [`gojson`]) and the plain endpoints /health, /livez, /readyz, /version, /metrics ([`http`]).

pub mod gojson;
pub mod http;
pub mod json;
