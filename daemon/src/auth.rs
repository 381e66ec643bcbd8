//! Credentials and roles (PROTOCOL.md, "Authentication and roles"): the owner
//! token or an HS256 JWT, found in the header, the query (page loads and
//! WebSocket upgrades only) or the session cookie, compared in constant time.

use axum::http::{header, request::Parts, HeaderMap, Method};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "workspaced_session";
pub const QUERY_PARAM: &str = "access_token";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    Owner,
}

/// Who a good credential belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub role: Role,
    /// The JWT's `sub`; `None` for the owner token.
    pub user: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    role: String,
    exp: u64,
}

/// Checks credentials against the owner token and the JWT secret.
pub struct Authenticator {
    token_digest: [u8; 32],
    jwt: Option<(DecodingKey, Validation)>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl Authenticator {
    pub fn new(owner_token: &str, jwt_secret: Option<&[u8]>, audience: &str) -> Self {
        let jwt = jwt_secret.map(|secret| {
            let mut v = Validation::new(Algorithm::HS256);
            v.set_audience(&[audience]);
            v.set_required_spec_claims(&["exp", "aud", "sub"]);
            v.leeway = 30;
            (DecodingKey::from_secret(secret), v)
        });
        Authenticator {
            token_digest: digest(owner_token),
            jwt,
        }
    }

    /// The identity a credential proves, or `None` when it proves nothing.
    pub fn check(&self, credential: &str) -> Option<Identity> {
        self.check_until(credential).map(|(id, _)| id)
    }

    /// As [`check`](Self::check), with the instant the credential stops
    /// proving it: a JWT's `exp`, `None` for the owner token.
    pub fn check_until(&self, credential: &str) -> Option<(Identity, Option<SystemTime>)> {
        // Digests have equal length, so the comparison leaks neither content nor length.
        if bool::from(digest(credential).ct_eq(&self.token_digest)) {
            let owner = Identity {
                role: Role::Owner,
                user: None,
            };
            return Some((owner, None));
        }
        let (key, validation) = self.jwt.as_ref()?;
        if credential.matches('.').count() != 2 {
            return None;
        }
        let data = jsonwebtoken::decode::<Claims>(credential, key, validation).ok()?;
        let role = match data.claims.role.as_str() {
            "owner" => Role::Owner,
            "member" => Role::Member,
            _ => return None,
        };
        let id = Identity {
            role,
            user: Some(data.claims.sub),
        };
        let exp = UNIX_EPOCH.checked_add(Duration::from_secs(data.claims.exp));
        Some((id, Some(exp.unwrap_or(UNIX_EPOCH))))
    }

    /// Whether `credential` is the daemon's own (so it is never passed on).
    pub fn is_own(&self, credential: &str) -> bool {
        self.check(credential).is_some() || self.is_signed_jwt(credential)
    }

    /// Whether `credential` is a JWT signed with the daemon's secret,
    /// whatever its claims: an expired one, or one for another workspace of
    /// the same secret, is still the daemon's to keep from an app.
    pub fn is_signed_jwt(&self, credential: &str) -> bool {
        let Some((key, _)) = self.jwt.as_ref() else {
            return false;
        };
        if credential.matches('.').count() != 2 {
            return false;
        }
        let mut any_claims = Validation::new(Algorithm::HS256);
        any_claims.validate_exp = false;
        any_claims.validate_aud = false;
        any_claims.required_spec_claims.clear();
        jsonwebtoken::decode::<serde::de::IgnoredAny>(credential, key, &any_claims).is_ok()
    }
}

/// Where a credential was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Header,
    Query,
    Cookie,
}

/// A page load: a GET whose `Accept` includes `text/html`.
pub fn is_page_load(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET
        && headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/html"))
}

pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The value of a query parameter, percent-decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            let v = v.replace('+', " ");
            percent_encoding::percent_decode_str(&v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// The query string without the named parameters, byte for byte otherwise.
pub fn strip_query_params(query: &str, names: &[&str]) -> String {
    query
        .split('&')
        .filter(|pair| {
            let k = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !names.contains(&k)
        })
        .collect::<Vec<_>>()
        .join("&")
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
}

/// The first credential present, in the order of the contract.
pub fn find_credential(parts: &Parts) -> Option<(String, Source)> {
    if let Some(v) = parts.headers.get(header::AUTHORIZATION) {
        let v = v.to_str().unwrap_or("");
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or("");
        return Some((token.trim().to_owned(), Source::Header));
    }
    if is_page_load(&parts.method, &parts.headers) || is_websocket_upgrade(&parts.headers) {
        if let Some(t) = query_param(parts.uri.query(), QUERY_PARAM) {
            return Some((t, Source::Query));
        }
    }
    cookie(&parts.headers, COOKIE).map(|c| (c, Source::Cookie))
}

/// Whether the request came over TLS as far as the daemon can tell.
pub fn is_secure(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value that names a session (never a credential itself).
pub fn session_cookie(session: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={session}; HttpOnly; SameSite=Lax; Path=/{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that makes a browser forget its session cookie.
pub fn cleared_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Every value of the session cookie (a browser may send more than one).
pub fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// A fresh random token, 256 bits, URL-safe.
pub fn generate_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    /// An HS256 JWT of `alice` with `role` for `aud`, expiring `exp_offset`
    /// seconds from now (other modules' tests make theirs with it too).
    pub(crate) fn jwt(secret: &[u8], aud: &str, role: &str, exp_offset: i64) -> String {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + exp_offset;
        encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "alice", "role": role, "aud": aud, "exp": exp}),
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn token_and_jwts() {
        let a = Authenticator::new("tok", Some(b"secret"), "ws");
        assert_eq!(a.check("tok").unwrap().role, Role::Owner);
        assert!(a.check("tok2").is_none());
        assert!(a.check("").is_none());
        let member = a.check(&jwt(b"secret", "ws", "member", 600)).unwrap();
        assert_eq!(member.role, Role::Member);
        assert_eq!(member.user.as_deref(), Some("alice"));
        assert_eq!(
            a.check(&jwt(b"secret", "ws", "owner", 600)).unwrap().role,
            Role::Owner
        );
        assert!(a.check(&jwt(b"secret", "other", "owner", 600)).is_none());
        assert!(a.check(&jwt(b"secret", "ws", "owner", -3600)).is_none());
        assert!(a.check(&jwt(b"wrong", "ws", "owner", 600)).is_none());
        assert!(a.check(&jwt(b"secret", "ws", "admin", 600)).is_none());
        // Not credentials, yet the daemon's: never passed to an app.
        assert!(a.is_own(&jwt(b"secret", "ws", "owner", -3600)));
        assert!(a.is_own(&jwt(b"secret", "other", "admin", 600)));
        assert!(!a.is_own(&jwt(b"wrong", "ws", "owner", 600)));
        assert!(!a.is_own("tok2"));
    }

    #[test]
    fn a_jwt_says_until_when_it_proves_something() {
        let a = Authenticator::new("tok", Some(b"secret"), "ws");
        assert_eq!(
            a.check_until("tok").unwrap().1,
            None,
            "the token does not expire"
        );
        let (_, exp) = a.check_until(&jwt(b"secret", "ws", "owner", 600)).unwrap();
        let left = exp.unwrap().duration_since(SystemTime::now()).unwrap();
        assert!(
            left > Duration::from_secs(590) && left <= Duration::from_secs(600),
            "{left:?}"
        );
    }

    #[test]
    fn query_helpers() {
        assert_eq!(
            query_param(Some("a=1&access_token=x%2By"), "access_token").as_deref(),
            Some("x+y")
        );
        assert_eq!(
            strip_query_params("a=1&access_token=x&b=%20", &["access_token"]),
            "a=1&b=%20"
        );
        assert_eq!(strip_query_params("access_token=x", &["access_token"]), "");
    }
}
