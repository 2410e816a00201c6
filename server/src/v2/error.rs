//! etcd's v2 error table: each code's message and HTTP status, and the JSON body
//! `{"errorCode":..,"message":..,"cause":..,"index":..}` it is sent as.
#![forbid(unsafe_code)]

/// Key not found.
pub const KEY_NOT_FOUND: u32 = 100;
/// Compare failed.
pub const TEST_FAILED: u32 = 101;
/// Not a file.
pub const NOT_FILE: u32 = 102;
/// Not a directory.
pub const NOT_DIR: u32 = 104;
/// Key already exists.
pub const NODE_EXIST: u32 = 105;
/// Root is read only.
pub const ROOT_RONLY: u32 = 107;
/// Directory not empty.
pub const DIR_NOT_EMPTY: u32 = 108;
/// The request requires user authentication.
pub const UNAUTHORIZED: u32 = 110;
/// PrevValue is Required in POST form.
pub const PREV_VALUE_REQUIRED: u32 = 201;
/// The given TTL in POST form is not a number.
pub const TTL_NAN: u32 = 202;
/// The given index in POST form is not a number.
pub const INDEX_NAN: u32 = 203;
/// Invalid field.
pub const INVALID_FIELD: u32 = 209;
/// Invalid POST form.
pub const INVALID_FORM: u32 = 210;
/// Value provided on refresh.
pub const REFRESH_VALUE: u32 = 211;
/// A TTL must be provided on refresh.
pub const REFRESH_TTL_REQUIRED: u32 = 212;
/// Raft Internal Error.
pub const RAFT_INTERNAL: u32 = 300;
/// During Leader Election.
pub const LEADER_ELECT: u32 = 301;
/// watcher is cleared due to etcd recovery.
pub const WATCHER_CLEARED: u32 = 400;
/// The event in requested index is outdated and cleared.
pub const EVENT_INDEX_CLEARED: u32 = 401;

/// A v2 error: a code of etcd's table, its cause, and the store index it happened at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {} ({cause}) [{index}]", message(*code))]
pub struct V2Error {
    /// etcd's error code.
    pub code: u32,
    /// What it is about (a key, a comparison).
    pub cause: String,
    /// The v2 store index when it happened.
    pub index: u64,
}

impl V2Error {
    /// An error of `code` about `cause` at `index`.
    pub fn new(code: u32, cause: impl Into<String>, index: u64) -> Self {
        V2Error { code, cause: cause.into(), index }
    }

    /// etcd's HTTP status for the code.
    pub fn status(&self) -> u16 {
        match self.code {
            KEY_NOT_FOUND => 404,
            NOT_FILE | DIR_NOT_EMPTY => 403,
            UNAUTHORIZED => 401,
            TEST_FAILED | NODE_EXIST => 412,
            RAFT_INTERNAL | LEADER_ELECT => 500,
            _ => 400,
        }
    }

    /// The JSON body (Go's field order; `cause` omitted when empty).
    pub fn to_json(&self) -> String {
        let mut o = serde_json::Map::new();
        o.insert("errorCode".into(), self.code.into());
        o.insert("message".into(), message(self.code).into());
        if !self.cause.is_empty() {
            o.insert("cause".into(), self.cause.clone().into());
        }
        o.insert("index".into(), self.index.into());
        serde_json::Value::Object(o).to_string()
    }
}

/// etcd's message for a code.
pub fn message(code: u32) -> &'static str {
    match code {
        100 => "Key not found",
        101 => "Compare failed",
        102 => "Not a file",
        103 => "Reached the max number of peers in the cluster",
        104 => "Not a directory",
        105 => "Key already exists",
        106 => "The prefix of given key is a keyword in etcd",
        107 => "Root is read only",
        108 => "Directory not empty",
        109 => "Peer address has existed",
        110 => "The request requires user authentication",
        200 => "Value is Required in POST form",
        201 => "PrevValue is Required in POST form",
        202 => "The given TTL in POST form is not a number",
        203 => "The given index in POST form is not a number",
        204 => "Value or TTL is required in POST form",
        205 => "The given timeout in POST form is not a number",
        206 => "Name is required in POST form",
        207 => "Index or value is required",
        208 => "Index and value cannot both be specified",
        209 => "Invalid field",
        210 => "Invalid POST form",
        211 => "Value provided on refresh",
        212 => "A TTL must be provided on refresh",
        300 => "Raft Internal Error",
        301 => "During Leader Election",
        400 => "watcher is cleared due to etcd recovery",
        401 => "The event in requested index is outdated and cleared",
        402 => "Standby Internal Error",
        403 => "Invalid active size",
        404 => "Standby remove delay",
        500 => "Client Internal Error",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_status_as_etcd() {
        let e = V2Error::new(KEY_NOT_FOUND, "/foo", 7);
        assert_eq!(
            e.to_json(),
            r#"{"errorCode":100,"message":"Key not found","cause":"/foo","index":7}"#
        );
        assert_eq!(e.status(), 404);
        assert_eq!(V2Error::new(TEST_FAILED, "", 1).status(), 412);
        assert_eq!(
            V2Error::new(INVALID_FORM, "", 0).to_json(),
            r#"{"errorCode":210,"message":"Invalid POST form","index":0}"#
        );
    }
}
