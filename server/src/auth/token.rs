//! etcd's simple tokens: `<16 random letters>.<raft index>`. Authenticate goes through raft,
//! so every member registers the same token when it applies the entry; a member asked about a
//! token first waits until it has applied that index. Tokens live in memory only (a restart
//! or AuthDisable drops them all, a password change or deletion drops the user's), and expire
//! after `--auth-token-ttl` without use — each use renews them, on the member that saw it.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;

/// etcd's default `--auth-token-ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Letters in a token's random part.
pub const PREFIX_LEN: usize = 16;

/// A fresh random part: letters a–z and A–Z from the OS's generator.
pub fn new_prefix() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::rngs::OsRng;
    (0..PREFIX_LEN).map(|_| LETTERS[rng.gen_range(0..LETTERS.len())] as char).collect()
}

/// The raft index a well-formed token names (`None`: malformed).
pub fn token_index(token: &str) -> Option<u64> {
    let (prefix, index) = token.split_once('.')?;
    if prefix.is_empty() || index.contains('.') {
        return None;
    }
    index.parse().ok()
}

#[derive(Debug)]
struct Entry {
    user: String,
    /// Milliseconds after [`SimpleTokens::base`] when the token expires: renewed through a
    /// shared reference, so lookups (every request) share a read lock instead of queueing on
    /// one mutex.
    expires_ms: AtomicU64,
}

/// The tokens this member knows.
#[derive(Debug)]
pub struct SimpleTokens {
    ttl: Duration,
    base: Instant,
    tokens: HashMap<String, Entry>,
}

impl SimpleTokens {
    /// Tokens living `ttl` after their last use.
    pub fn new(ttl: Duration) -> Self {
        SimpleTokens { ttl, base: Instant::now(), tokens: HashMap::new() }
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_millis() as u64
    }

    /// Registers `prefix.index` for `user` (applying Authenticate); returns the token.
    pub fn assign(&mut self, prefix: &str, index: u64, user: &str, now: Instant) -> String {
        let token = format!("{prefix}.{index}");
        let expires_ms = AtomicU64::new(self.ms(now + self.ttl));
        self.tokens.insert(token.clone(), Entry { user: user.into(), expires_ms });
        token
    }

    /// The user of a live token, renewing it. An expired one is left for [`Self::expire`].
    pub fn user(&self, token: &str, now: Instant) -> Option<String> {
        let e = self.tokens.get(token)?;
        let now_ms = self.ms(now);
        if e.expires_ms.load(Ordering::Relaxed) <= now_ms {
            return None;
        }
        e.expires_ms.fetch_max(self.ms(now + self.ttl), Ordering::Relaxed);
        Some(e.user.clone())
    }

    /// Drops `user`'s tokens (password changed, user deleted).
    pub fn invalidate_user(&mut self, user: &str) {
        self.tokens.retain(|_, e| e.user != user);
    }

    /// Drops every token (auth disabled).
    pub fn clear(&mut self) {
        self.tokens.clear();
    }

    /// Drops expired tokens.
    pub fn expire(&mut self, now: Instant) {
        let now_ms = self.ms(now);
        self.tokens.retain(|_, e| e.expires_ms.load(Ordering::Relaxed) > now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_slide_expire_and_go_with_their_user() {
        let t0 = Instant::now();
        let mut t = SimpleTokens::new(Duration::from_secs(10));
        let tok = t.assign("abcdefghijklmnop", 9, "alice", t0);
        assert_eq!(tok, "abcdefghijklmnop.9");
        assert_eq!(token_index(&tok), Some(9));
        assert_eq!(t.user(&tok, t0 + Duration::from_secs(8)).as_deref(), Some("alice"));
        // Renewed at 8 s: alive at 15 s, gone 10 s after its last use.
        assert!(t.user(&tok, t0 + Duration::from_secs(15)).is_some());
        assert!(t.user(&tok, t0 + Duration::from_secs(26)).is_none());
        let a = t.assign("p", 1, "alice", t0);
        let b = t.assign("q", 2, "bob", t0);
        t.invalidate_user("alice");
        assert!(t.user(&a, t0).is_none() && t.user(&b, t0).is_some());
        t.clear();
        assert!(t.user(&b, t0).is_none());
    }

    #[test]
    fn malformed_tokens_name_no_index() {
        for bad in ["", "abc", ".5", "abc.", "abc.x", "a.b.c", "abc.-1"] {
            assert_eq!(token_index(bad), None, "{bad:?}");
        }
        let p = new_prefix();
        assert_eq!(p.len(), PREFIX_LEN);
        assert!(p.chars().all(|c| c.is_ascii_alphabetic()));
    }
}
