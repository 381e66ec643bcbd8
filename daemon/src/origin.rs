//! The origin rule (PROTOCOL.md, "Browsers, other origins and sessions"): a
//! request whose credential came from a cookie proves only that a browser sent
//! it, not which page asked, so an upgrade or an unsafe method must come from
//! the origin it was sent to (or, for the daemon's own routes, an entry of
//! `allowed_origins`). Pure: both the router and the proxy's two paths call it.

use axum::http::{header, HeaderMap, Method};

/// What a request says about where it came from, as raw header values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    /// The `Origin` header; `Many` when it appears more than once.
    pub origin: Header<'a>,
    /// The `Sec-Fetch-Site` header.
    pub sec_fetch_site: Header<'a>,
    /// The `Host` header the request was sent with.
    pub host: Header<'a>,
    /// Whether the request came over TLS (directly or `X-Forwarded-Proto: https`).
    pub https: bool,
}

/// A header that may be absent, present once, or repeated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Header<'a> {
    #[default]
    Absent,
    One(&'a [u8]),
    Many,
}

impl<'a> Header<'a> {
    /// The values of `name` in `headers`, counted.
    pub fn of(headers: &'a HeaderMap, name: header::HeaderName) -> Self {
        let mut all = headers.get_all(name).iter();
        match (all.next(), all.next()) {
            (None, _) => Header::Absent,
            (Some(v), None) => Header::One(v.as_bytes()),
            (Some(_), Some(_)) => Header::Many,
        }
    }
}

impl<'a> Facts<'a> {
    /// The facts of a request parsed by hyper.
    pub fn from_headers(headers: &'a HeaderMap, https: bool) -> Self {
        Facts {
            origin: Header::of(headers, header::ORIGIN),
            sec_fetch_site: Header::of(headers, header::HeaderName::from_static("sec-fetch-site")),
            host: Header::of(headers, header::HOST),
            https,
        }
    }
}

/// Whether a cookie-credentialed request must pass [`allowed`]: a WebSocket
/// upgrade, or any method but GET, HEAD and OPTIONS.
pub fn needs_check(method: &Method, websocket_upgrade: bool) -> bool {
    websocket_upgrade || !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether a request with these facts may act with a cookie's credential.
/// `extra` are the origins allowed besides the request's own (the daemon's
/// `allowed_origins`; empty for a proxied port).
pub fn allowed(facts: &Facts<'_>, extra: &[String]) -> bool {
    match facts.origin {
        Header::Many => false,
        Header::One(origin) => {
            let Some(origin) = normalize(origin) else {
                // `null`, or anything that is not scheme://host[:port].
                return false;
            };
            if own_origin(facts).is_some_and(|own| own == origin) {
                return true;
            }
            extra
                .iter()
                .filter_map(|e| normalize(e.as_bytes()))
                .any(|e| e == origin)
        }
        // Without Origin, a browser still says where a request came from in
        // Sec-Fetch-Site; a client that says neither is not a browser's page.
        Header::Absent => match facts.sec_fetch_site {
            Header::Absent => true,
            Header::One(v) => {
                !(v.eq_ignore_ascii_case(b"cross-site") || v.eq_ignore_ascii_case(b"same-site"))
            }
            Header::Many => false,
        },
    }
}

/// The origin the request was sent to: scheme from TLS, and the `Host`.
fn own_origin(facts: &Facts<'_>) -> Option<String> {
    let Header::One(host) = facts.host else {
        return None;
    };
    let scheme = if facts.https { "https" } else { "http" };
    let mut s = Vec::with_capacity(scheme.len() + 3 + host.len());
    s.extend_from_slice(scheme.as_bytes());
    s.extend_from_slice(b"://");
    s.extend_from_slice(host);
    normalize(&s)
}

/// `scheme://host[:port]` in lower case without a default port, or `None`
/// for anything else (`null`, a path, userinfo, an empty host).
pub fn normalize(origin: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(origin).ok()?.trim();
    let (scheme, rest) = s.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ', '\\']) {
        return None;
    }
    // An IPv6 literal keeps its brackets; the port is after the last ':' past them.
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if host.is_empty() {
        return None;
    }
    let host = host.to_ascii_lowercase();
    match port {
        None => Some(format!("{scheme}://{host}")),
        Some(p) if p == default_port => Some(format!("{scheme}://{host}")),
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(format!("{scheme}://{host}:{p}"))
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(
        origin: Option<&'a str>,
        site: Option<&'a str>,
        host: &'a str,
        https: bool,
    ) -> Facts<'a> {
        let h = |v: Option<&'a str>| v.map_or(Header::Absent, |v| Header::One(v.as_bytes()));
        Facts {
            origin: h(origin),
            sec_fetch_site: h(site),
            host: Header::One(host.as_bytes()),
            https,
        }
    }

    #[test]
    fn own_origin_is_allowed_and_others_are_not() {
        let host = "60080-ws.example.com";
        assert!(allowed(
            &facts(Some("https://60080-ws.example.com"), None, host, true),
            &[]
        ));
        assert!(allowed(
            &facts(Some("https://60080-WS.example.com:443"), None, host, true),
            &[]
        ));
        // Same host, other scheme: another origin.
        assert!(!allowed(
            &facts(Some("http://60080-ws.example.com"), None, host, true),
            &[]
        ));
        // Same site, other host: another origin.
        assert!(!allowed(
            &facts(Some("https://3000-ws.example.com"), None, host, true),
            &[]
        ));
        assert!(!allowed(&facts(Some("null"), None, host, true), &[]));
        assert!(!allowed(&facts(Some(""), None, host, true), &[]));
        assert!(allowed(
            &facts(
                Some("http://127.0.0.1:60080"),
                None,
                "127.0.0.1:60080",
                false
            ),
            &[]
        ));
        assert!(!allowed(
            &facts(
                Some("http://127.0.0.1:60081"),
                None,
                "127.0.0.1:60080",
                false
            ),
            &[]
        ));
        assert!(allowed(
            &facts(Some("http://[::1]:8080"), None, "[::1]:8080", false),
            &[]
        ));
    }

    #[test]
    fn extra_origins_are_allowed_exactly() {
        let extra = vec!["https://gitlab.example.com".to_owned()];
        let host = "127.0.0.1:60080";
        assert!(allowed(
            &facts(Some("https://gitlab.example.com"), None, host, false),
            &extra
        ));
        assert!(!allowed(
            &facts(Some("https://gitlab.example.com.evil"), None, host, false),
            &extra
        ));
        assert!(!allowed(
            &facts(Some("http://gitlab.example.com"), None, host, false),
            &extra
        ));
    }

    #[test]
    fn without_origin_sec_fetch_site_decides() {
        let host = "127.0.0.1:60080";
        assert!(allowed(&facts(None, None, host, false), &[]));
        assert!(allowed(&facts(None, Some("same-origin"), host, false), &[]));
        assert!(allowed(&facts(None, Some("none"), host, false), &[]));
        assert!(!allowed(&facts(None, Some("cross-site"), host, false), &[]));
        assert!(!allowed(&facts(None, Some("same-site"), host, false), &[]));
    }

    #[test]
    fn repeated_headers_are_refused() {
        let f = Facts {
            origin: Header::Many,
            host: Header::One(b"h"),
            ..Facts::default()
        };
        assert!(!allowed(&f, &[]));
        let f = Facts {
            sec_fetch_site: Header::Many,
            host: Header::One(b"h"),
            ..Facts::default()
        };
        assert!(!allowed(&f, &[]));
    }

    #[test]
    fn which_requests_are_checked() {
        assert!(!needs_check(&Method::GET, false));
        assert!(!needs_check(&Method::HEAD, false));
        assert!(!needs_check(&Method::OPTIONS, false));
        assert!(needs_check(&Method::GET, true));
        assert!(needs_check(&Method::POST, false));
        assert!(needs_check(&Method::PUT, false));
        assert!(needs_check(&Method::DELETE, false));
        assert!(needs_check(&Method::PATCH, false));
    }

    #[test]
    fn normalize_refuses_what_is_not_an_origin() {
        assert_eq!(normalize(b"https://a.b/").as_deref(), Some("https://a.b"));
        assert_eq!(normalize(b"HTTP://A.B:80").as_deref(), Some("http://a.b"));
        assert_eq!(
            normalize(b"http://a.b:8080").as_deref(),
            Some("http://a.b:8080")
        );
        assert_eq!(normalize(b"https://a.b/path"), None);
        assert_eq!(normalize(b"https://u@a.b"), None);
        assert_eq!(normalize(b"ftp://a.b"), None);
        assert_eq!(normalize(b"https://a.b:x"), None);
        assert_eq!(normalize(b"https://"), None);
        assert_eq!(normalize(b"null"), None);
    }
}
