//! `--auth-token`: which tokens Authenticate hands out. `simple` (the default; [`super::token`])
//! or etcd's `jwt,pub-key=<file>,priv-key=<file>,sign-method=<alg>[,ttl=<duration>]`: signed
//! claims `{username, revision, exp}` that every member verifies with the public key, with no
//! state (they survive restarts; an auth change makes them stale, as etcd's).
#![forbid(unsafe_code)]

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use crate::auth::error::AuthError;
use crate::auth::AuthInfo;

/// etcd's default JWT lifetime.
pub const DEFAULT_JWT_TTL: Duration = Duration::from_secs(300);

/// The claims of an etcd JWT.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

/// JWT signing and checking.
pub struct JwtTokens {
    alg: Algorithm,
    sign: Option<EncodingKey>,
    verify: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens").field("alg", &self.alg).field("ttl", &self.ttl).finish()
    }
}

/// The token kind `--auth-token` names.
#[derive(Debug)]
pub enum Provider {
    /// Random tokens registered through raft.
    Simple,
    /// Signed, stateless tokens.
    Jwt(JwtTokens),
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("--auth-token: cannot read {path}: {e}"))
}

/// Parses `--auth-token` and loads the keys it names.
pub fn provider(flag: &str) -> Result<Provider, String> {
    let mut parts = flag.split(',');
    let kind = parts.next().unwrap_or_default();
    let mut opts = std::collections::HashMap::new();
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            return Err(format!("--auth-token: invalid auth options {flag:?}"));
        };
        if opts.insert(k, v).is_some() {
            return Err(format!("--auth-token: option {k} given twice"));
        }
    }
    match kind {
        "simple" if opts.is_empty() => Ok(Provider::Simple),
        "jwt" => jwt(&opts).map(Provider::Jwt),
        _ => Err(format!("--auth-token: invalid auth options {flag:?}")),
    }
}

fn jwt(opts: &std::collections::HashMap<&str, &str>) -> Result<JwtTokens, String> {
    for k in opts.keys() {
        if !matches!(*k, "pub-key" | "priv-key" | "sign-method" | "ttl") {
            tracing::warn!(option = k, "unknown JWT option");
        }
    }
    let ttl = match opts.get("ttl") {
        Some(t) => rusted_proto::duration::parse_go_duration(t)
            .ok_or_else(|| format!("--auth-token: invalid ttl {t:?}"))?,
        None => DEFAULT_JWT_TTL,
    };
    let method = opts.get("sign-method").ok_or("--auth-token: invalid auth signature method")?;
    let alg: Algorithm =
        method.parse().map_err(|_| format!("--auth-token: unsupported signing method {method}"))?;
    let pubk = opts.get("pub-key").map(|p| read(p)).transpose()?;
    let privk = opts.get("priv-key").map(|p| read(p)).transpose()?;
    let bad = |e: jsonwebtoken::errors::Error| format!("--auth-token: bad key: {e}");
    let (sign, verify) = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            let secret = privk.ok_or("--auth-token: missing key data")?;
            (Some(EncodingKey::from_secret(&secret)), DecodingKey::from_secret(&secret))
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            let pubk = pubk.ok_or("--auth-token: pub-key is needed to verify tokens")?;
            let sign = privk.map(|k| EncodingKey::from_rsa_pem(&k)).transpose().map_err(bad)?;
            (sign, DecodingKey::from_rsa_pem(&pubk).map_err(bad)?)
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let pubk = pubk.ok_or("--auth-token: pub-key is needed to verify tokens")?;
            let sign = privk.map(|k| EncodingKey::from_ec_pem(&k)).transpose().map_err(bad)?;
            (sign, DecodingKey::from_ec_pem(&pubk).map_err(bad)?)
        }
        other => return Err(format!("--auth-token: unsupported signing method {other:?}")),
    };
    Ok(JwtTokens { alg, sign, verify, ttl })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl JwtTokens {
    /// A signed token for `user` at auth `revision`.
    pub fn assign(&self, user: &str, revision: u64) -> Result<String, AuthError> {
        // A verify-only member cannot sign (etcd's error, unmapped).
        let key = self.sign.as_ref().ok_or(AuthError::VerifyOnly)?;
        let claims =
            Claims { username: user.into(), revision, exp: now_secs() + self.ttl.as_secs() };
        jsonwebtoken::encode(&Header::new(self.alg), &claims, key)
            .map_err(|_| AuthError::InvalidAuthToken)
    }

    /// The identity a token carries, if it is valid and not expired.
    pub fn info(&self, token: &str) -> Result<AuthInfo, AuthError> {
        let mut v = Validation::new(self.alg);
        v.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.verify, &v)
            .map_err(|_| AuthError::InvalidAuthToken)?;
        Ok(AuthInfo { user: data.claims.username, revision: data.claims.revision })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_tokens_round_trip_and_refuse_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, b"a secret of some length").unwrap();
        let flag = format!("jwt,priv-key={},sign-method=HS256,ttl=1m", key.display());
        let Provider::Jwt(j) = provider(&flag).unwrap() else { panic!("not jwt") };
        let t = j.assign("alice", 7).unwrap();
        assert_eq!(j.info(&t).unwrap(), AuthInfo { user: "alice".into(), revision: 7 });
        let mut bad = t.clone();
        bad.push('x');
        assert_eq!(j.info(&bad), Err(AuthError::InvalidAuthToken));
        assert!(matches!(provider("simple"), Ok(Provider::Simple)));
        assert!(provider("jwt,sign-method=HS256").is_err(), "no key");
        assert!(provider("jwt,priv-key").is_err());
        assert!(provider("weird").is_err());
    }
}
