//! Alarms (etcd's alarm store): which member raised which alarm. Replicated through raft and
//! kept in the store's `meta` bucket with the applied index, so every member agrees and an
//! alarm survives restarts and snapshots.
//!
//! Format of the `x-alarm` blob (JSON, version 1):
//!
//! | field    | type                 | meaning                                  |
//! |----------|----------------------|------------------------------------------|
//! | `v`      | number               | format version, 1                        |
//! | `alarms` | array of `[u64,i32]` | (member ID, etcd AlarmType), sorted      |
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

use rusted_proto::etcdserverpb::{AlarmMember, AlarmType};

/// `meta` bucket key of the alarm list.
pub const ALARM_KEY: &[u8] = b"x-alarm";
/// Format version.
pub const ALARM_FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Blob {
    v: u32,
    alarms: Vec<(u64, i32)>,
}

/// The raised alarms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alarms {
    list: Vec<(u64, i32)>,
}

impl Alarms {
    /// Decodes the stored blob (absent: no alarms).
    pub fn decode(blob: Option<&[u8]>) -> Result<Alarms, String> {
        let Some(b) = blob else { return Ok(Alarms::default()) };
        let blob: Blob = serde_json::from_slice(b).map_err(|e| format!("alarm list: {e}"))?;
        if blob.v != ALARM_FORMAT {
            return Err(format!("alarm list: unknown format version {}", blob.v));
        }
        let mut list = blob.alarms;
        list.sort_unstable();
        list.dedup();
        Ok(Alarms { list })
    }

    /// Encodes for the store.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&Blob { v: ALARM_FORMAT, alarms: self.list.clone() }).unwrap_or_default()
    }

    /// Raises `alarm` for `member`; true if it was not raised already.
    pub fn activate(&mut self, member: u64, alarm: i32) -> bool {
        match self.list.binary_search(&(member, alarm)) {
            Ok(_) => false,
            Err(i) => {
                self.list.insert(i, (member, alarm));
                true
            }
        }
    }

    /// Clears `alarm` for `member`; true if it was raised.
    pub fn deactivate(&mut self, member: u64, alarm: i32) -> bool {
        match self.list.binary_search(&(member, alarm)) {
            Ok(i) => {
                self.list.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Is any member's `alarm` raised?
    pub fn has(&self, alarm: AlarmType) -> bool {
        self.list.iter().any(|(_, a)| *a == alarm as i32)
    }

    /// The alarms on the wire, filtered as etcd's GET is (NONE: all).
    pub fn members(&self, of: AlarmType) -> Vec<AlarmMember> {
        self.list
            .iter()
            .filter(|(_, a)| of == AlarmType::None || *a == of as i32)
            .map(|&(member_id, alarm)| AlarmMember { member_id, alarm })
            .collect()
    }

    /// Status.errors lines, as etcd words them.
    pub fn status_errors(&self) -> Vec<String> {
        self.list
            .iter()
            .map(|&(m, a)| {
                let name = AlarmType::try_from(a).map(|t| t.as_str_name()).unwrap_or("UNKNOWN");
                format!("memberID:{m} alarm:{name} ")
            })
            .collect()
    }

    /// Is the list empty?
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_idempotent_changes() {
        let mut a = Alarms::default();
        assert!(a.activate(7, AlarmType::Nospace as i32));
        assert!(!a.activate(7, AlarmType::Nospace as i32));
        assert!(a.activate(3, AlarmType::Corrupt as i32));
        let b = Alarms::decode(Some(&a.encode())).unwrap();
        assert_eq!(a, b);
        assert!(b.has(AlarmType::Nospace));
        assert_eq!(b.members(AlarmType::Nospace).len(), 1);
        assert_eq!(b.members(AlarmType::None).len(), 2);
        assert!(a.deactivate(7, AlarmType::Nospace as i32));
        assert!(!a.deactivate(7, AlarmType::Nospace as i32));
        assert!(!a.has(AlarmType::Nospace));
        assert!(Alarms::decode(Some(b"{\"v\":2,\"alarms\":[]}")).is_err());
        assert!(Alarms::decode(Some(b"garbage")).is_err());
        assert_eq!(Alarms::decode(None).unwrap(), Alarms::default());
    }
}
