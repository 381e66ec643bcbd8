//! The proxy's credential policy, the one place both of its paths (the fast
//! lane, `lane.rs`, and the general path, `mod.rs`) ask, so they cannot
//! drift: which credential admits a request to a port (PROTOCOL.md,
//! "Authentication and roles"), the origin check for cookie-credentialed
//! upgrades and unsafe methods ("Browsers, other origins and sessions"),
//! and what of the daemon's is removed before the app sees a request. Each
//! path describes its request as a [`Head`] over the headers it already
//! has (httparse's slice or hyper's map), without copying them.

use std::borrow::Cow;
use std::time::Instant;

use axum::http::{header, HeaderMap, HeaderValue, Method};

use super::Tickets;
use crate::auth::{self, Authenticator, Identity, Role};
use crate::config::Visibility;
use crate::origin;
use crate::ports::Ports;
use crate::session::Sessions;

/// The query parameter that carries a ticket.
pub const TICKET_PARAM: &str = "workspaced_ticket";
/// The cookies that are the daemon's: removed from every `Cookie` header.
const DAEMON_COOKIES: [&[u8]; 2] = [auth::COOKIE.as_bytes(), TICKET_PARAM.as_bytes()];
/// The query parameters that are the daemon's.
const DAEMON_PARAMS: [&str; 2] = [auth::QUERY_PARAM, TICKET_PARAM];
/// `Authorization` headers past this many are never forwarded (their
/// positions do not fit [`Forward`]); no client sends so many.
const MAX_AUTHORIZATION: usize = 128;

/// What the policy consults.
pub struct Judge<'a> {
    pub auth: &'a Authenticator,
    /// The daemon's browser sessions: a `workspaced_session` cookie names one.
    pub sessions: &'a Sessions,
    pub tickets: &'a Tickets,
    pub ports: &'a Ports,
}

impl<'a> Judge<'a> {
    pub fn of(app: &'a crate::http::App) -> Self {
        Judge {
            auth: &app.auth,
            sessions: &app.sessions,
            tickets: &app.proxy.tickets,
            ports: &app.ports,
        }
    }
}

/// A request as the policy sees it, borrowed from either path.
#[derive(Clone, Copy)]
pub struct Head<'a> {
    pub method: &'a str,
    pub query: Option<&'a str>,
    pub headers: Headers<'a>,
}

/// A request's headers, in the form each path parsed them.
#[derive(Clone, Copy)]
pub enum Headers<'a> {
    /// The fast lane's, from `httparse`.
    Parsed(&'a [httparse::Header<'a>]),
    /// The general path's, from hyper.
    Map(&'a HeaderMap),
}

impl<'a> Headers<'a> {
    /// Every value of `name` (lower case), in the order they came.
    pub fn all(self, name: &'static str) -> Values<'a> {
        match self {
            Headers::Parsed(h) => Values::Parsed(h.iter(), name),
            Headers::Map(m) => Values::Map(m.get_all(name).iter()),
        }
    }

    /// `name`'s value, counted: absent, once, or repeated.
    fn counted(self, name: &'static str) -> origin::Header<'a> {
        let mut all = self.all(name);
        match (all.next(), all.next()) {
            (None, _) => origin::Header::Absent,
            (Some(v), None) => origin::Header::One(v),
            (Some(_), Some(_)) => origin::Header::Many,
        }
    }
}

/// The values of one header name; see [`Headers::all`].
pub enum Values<'a> {
    Parsed(std::slice::Iter<'a, httparse::Header<'a>>, &'static str),
    Map(header::ValueIter<'a, HeaderValue>),
}

impl<'a> Iterator for Values<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            Values::Parsed(it, name) => it
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value),
            Values::Map(it) => it.next().map(HeaderValue::as_bytes),
        }
    }
}

impl<'a> Head<'a> {
    /// The general path's head.
    pub fn of_parts(parts: &'a axum::http::request::Parts) -> Self {
        Head {
            method: parts.method.as_str(),
            query: parts.uri.query(),
            headers: Headers::Map(&parts.headers),
        }
    }

    /// A GET whose `Accept` includes `text/html` (as `auth::is_page_load`).
    pub fn is_page_load(&self) -> bool {
        self.method == "GET"
            && self
                .headers
                .all("accept")
                .any(|v| v.windows(9).any(|w| w == b"text/html"))
    }

    /// `Upgrade: websocket` (as `auth::is_websocket_upgrade`, which reads the first).
    fn is_websocket_upgrade(&self) -> bool {
        self.headers
            .all("upgrade")
            .next()
            .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"websocket"))
    }

    /// Whether a cookie-credentialed request must come from its own origin:
    /// any upgrade (the proxy splices every protocol, not only WebSocket)
    /// and any method but GET, HEAD and OPTIONS.
    fn needs_origin_check(&self) -> bool {
        let upgrade = self.headers.all("upgrade").next().is_some();
        match Method::from_bytes(self.method.as_bytes()) {
            Ok(m) => origin::needs_check(&m, upgrade),
            Err(_) => true,
        }
    }

    /// The port's own origin only: `allowed_origins` is for the daemon's routes.
    fn comes_from_own_origin(&self) -> bool {
        let facts = origin::Facts {
            origin: self.headers.counted("origin"),
            sec_fetch_site: self.headers.counted("sec-fetch-site"),
            host: self.headers.counted("host"),
            https: self
                .headers
                .all("x-forwarded-proto")
                .next()
                .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"https")),
        };
        origin::allowed(&facts, &[])
    }
}

/// What the policy decides for a request to a port.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it, cleaned as [`Forward`] says.
    Forward(Forward),
    /// A ticket was spent: 303 to the same URL without it, with this new
    /// port session as the `workspaced_session` cookie.
    Redeemed(String),
    /// A page load carried its credential in `access_token`: 303 to the
    /// same URL without it, with the credential's session cookie.
    FromQuery(String),
    Refused(Refusal),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no credential, or none that proves anything.
    Unauthorized,
    /// 403: a good credential without the role the port needs.
    Forbidden,
    /// 403 `origin_not_allowed`: only a cookie admits it, and another
    /// origin's page may have sent it.
    OriginNotAllowed,
}

/// How a forwarded request is cleaned: which of its `Authorization`
/// headers (by their position among the `Authorization` headers) carry
/// the daemon's credential. Cookies and the query are cleaned by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forward {
    own_authorization: u128,
}

impl Forward {
    /// Whether the `i`th `Authorization` header goes to the app.
    pub fn keeps_authorization(&self, i: usize) -> bool {
        i < MAX_AUTHORIZATION && self.own_authorization & (1 << i) == 0
    }
}

/// Decides on a request to `port`, which has `visibility` now: the one
/// function both paths call.
pub fn decide(
    judge: &Judge<'_>,
    head: &Head<'_>,
    port: u16,
    visibility: Visibility,
    now: Instant,
) -> Verdict {
    let cut = |level| judge.ports.cuts(port, level);
    // A ticket is spent wherever it comes, so it never stays in a URL.
    if let Some(ticket) = auth::query_param(head.query, TICKET_PARAM) {
        if let Some(session) = judge.tickets.redeem(&ticket, port, now, cut) {
            return Verdict::Redeemed(session);
        }
    }
    let (own_authorization, header_id) = authorization(judge.auth, head.headers);
    let forward = Verdict::Forward(Forward { own_authorization });
    let need = match visibility {
        // Anyone; a credential, good or bad, is ignored (and still removed).
        Visibility::Public => return forward,
        Visibility::Internal => Role::Member,
        Visibility::Private | Visibility::None => Role::Owner,
    };
    let admits = |id: &Option<Identity>| id.as_ref().is_some_and(|id| id.role >= need);

    // A header cannot be attached by another page, so it needs no origin check.
    if admits(&header_id) {
        return forward;
    }
    let cookie_id = cookie_identity(judge, head.headers, port, now);
    // A cookie's credential, whatever its role, is refused first when
    // another origin's page may have sent it.
    let origin_refused =
        cookie_id.is_some() && head.needs_origin_check() && !head.comes_from_own_origin();
    if admits(&cookie_id) && !origin_refused {
        return forward;
    }
    let page = head.is_page_load();
    let websocket = head.is_websocket_upgrade();
    let mut query_proved = false;
    if page || websocket {
        if let Some(t) = auth::query_param(head.query, auth::QUERY_PARAM) {
            if let Some(id) = judge.auth.check(&t) {
                if id.role >= need {
                    return if page && !websocket {
                        Verdict::FromQuery(t)
                    } else {
                        forward
                    };
                }
                query_proved = true;
            }
        }
    }
    Verdict::Refused(if origin_refused {
        Refusal::OriginNotAllowed
    } else if header_id.is_some() || cookie_id.is_some() || query_proved {
        Refusal::Forbidden
    } else {
        Refusal::Unauthorized
    })
}

/// Which `Authorization` headers carry the daemon's credential, and the
/// best identity a `Bearer` one of them proves. Every header is looked at,
/// wherever it stands.
fn authorization(auth: &Authenticator, headers: Headers<'_>) -> (u128, Option<Identity>) {
    let mut own = 0u128;
    let mut best: Option<Identity> = None;
    for (i, v) in headers.all("authorization").enumerate() {
        if i >= MAX_AUTHORIZATION {
            break;
        }
        let Ok(v) = std::str::from_utf8(v) else {
            continue;
        };
        let v = v.trim();
        let (scheme, rest) = v
            .split_once([' ', '\t'])
            .map_or((v, ""), |(s, r)| (s, r.trim()));
        if scheme.eq_ignore_ascii_case("bearer") {
            if let Some(id) = auth.check(rest) {
                own |= 1 << i;
                if best.as_ref().is_none_or(|b| id.role > b.role) {
                    best = Some(id);
                }
            } else if auth.is_signed_jwt(rest) {
                // Expired, or for another workspace: proves nothing, and
                // is still not the app's.
                own |= 1 << i;
            }
            continue;
        }
        // The daemon's token or JWT under another scheme or none.
        if auth.is_own(v) || (!rest.is_empty() && auth.is_own(rest)) {
            own |= 1 << i;
        }
    }
    (own, best)
}

/// The best identity a `workspaced_session` cookie proves at `port`: a
/// port session made from a ticket (the owner's), or a browser session of
/// the daemon's. A cookie is never a credential itself.
fn cookie_identity(
    judge: &Judge<'_>,
    headers: Headers<'_>,
    port: u16,
    now: Instant,
) -> Option<Identity> {
    let mut best: Option<Identity> = None;
    for value in headers.all("cookie") {
        for pair in pairs(value) {
            let (name, v) = split_pair(pair);
            if name != auth::COOKIE.as_bytes() {
                continue;
            }
            let Ok(v) = std::str::from_utf8(v) else {
                continue;
            };
            let id = if judge
                .tickets
                .session(v, port, now, |l| judge.ports.cuts(port, l))
            {
                Some(Identity {
                    role: Role::Owner,
                    user: None,
                })
            } else {
                judge.sessions.identity(v, now)
            };
            if let Some(id) = id {
                if best.as_ref().is_none_or(|b| id.role > b.role) {
                    best = Some(id);
                }
            }
        }
    }
    best
}

/// The pairs of a `Cookie` value, trimmed, empty ones skipped.
fn pairs(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty())
}

/// A cookie pair's name and value (a pair without `=` is all name).
fn split_pair(pair: &[u8]) -> (&[u8], &[u8]) {
    match pair.iter().position(|&b| b == b'=') {
        Some(i) => (pair[..i].trim_ascii(), &pair[i + 1..]),
        None => (pair, b""),
    }
}

fn is_daemon_cookie(pair: &[u8]) -> bool {
    DAEMON_COOKIES.contains(&split_pair(pair).0)
}

/// Whether a `Cookie` value has none of the daemon's cookies (it then
/// goes to the app byte for byte).
fn cookie_untouched(value: &[u8]) -> bool {
    !pairs(value).any(is_daemon_cookie)
}

/// Appends the app's cookies of a `Cookie` value, `; `-joined; whether
/// any were left.
fn app_cookies(value: &[u8], out: &mut Vec<u8>) -> bool {
    let mut any = false;
    for pair in pairs(value).filter(|p| !is_daemon_cookie(p)) {
        if any {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(pair);
        any = true;
    }
    any
}

/// Whether a query carries the daemon's credential or a ticket.
pub fn carries_daemon_params(query: &str) -> bool {
    query.split('&').any(is_daemon_param)
}

/// A query parameter of the daemon's, also when its name is
/// percent-encoded (an app would decode it to the same name).
fn is_daemon_param(pair: &str) -> bool {
    let k = pair.split_once('=').map_or(pair, |(k, _)| k);
    if DAEMON_PARAMS.contains(&k) {
        return true;
    }
    k.contains('%')
        && percent_encoding::percent_decode_str(k)
            .decode_utf8()
            .is_ok_and(|k| DAEMON_PARAMS.contains(&k.as_ref()))
}

/// The query the app sees: the daemon's parameters removed, the rest
/// byte for byte.
pub fn app_query(query: &str) -> Cow<'_, str> {
    if !carries_daemon_params(query) {
        return Cow::Borrowed(query);
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !is_daemon_param(p)).collect();
    Cow::Owned(kept.join("&"))
}

/// The general path's adapter: removes the daemon's `Authorization`
/// headers and cookies from a hyper header map, the rest kept in order.
pub fn clean_map(h: &mut HeaderMap, forward: &Forward) {
    let dropped = h
        .get_all(header::AUTHORIZATION)
        .iter()
        .enumerate()
        .any(|(i, _)| !forward.keeps_authorization(i));
    if dropped {
        let all: Vec<HeaderValue> = h.get_all(header::AUTHORIZATION).iter().cloned().collect();
        h.remove(header::AUTHORIZATION);
        for (i, v) in all.into_iter().enumerate() {
            if forward.keeps_authorization(i) {
                h.append(header::AUTHORIZATION, v);
            }
        }
    }
    if !h
        .get_all(header::COOKIE)
        .iter()
        .all(|v| cookie_untouched(v.as_bytes()))
    {
        let all: Vec<HeaderValue> = h.get_all(header::COOKIE).iter().cloned().collect();
        h.remove(header::COOKIE);
        for v in all {
            if cookie_untouched(v.as_bytes()) {
                h.append(header::COOKIE, v);
                continue;
            }
            let mut kept = Vec::new();
            if app_cookies(v.as_bytes(), &mut kept) {
                if let Ok(v) = HeaderValue::from_bytes(&kept) {
                    h.append(header::COOKIE, v);
                }
            }
        }
    }
}

/// The fast lane's adapter: walks a parsed head's headers in order (every
/// one of them, so the positions of `Authorization` headers match
/// [`Forward`]'s) and writes each as the app gets it.
#[derive(Default)]
pub struct Cleaner {
    authorization: usize,
}

/// What becomes of one header.
pub enum Clean {
    /// Written as it came.
    Keep,
    /// The daemon's: not written.
    Drop,
    /// A `Cookie` header with the daemon's cookies among the app's.
    Cookies,
}

impl Cleaner {
    /// Decides on the next header of the head.
    pub fn next(&mut self, forward: &Forward, name: &str, value: &[u8]) -> Clean {
        if name.eq_ignore_ascii_case("authorization") {
            let i = self.authorization;
            self.authorization += 1;
            if forward.keeps_authorization(i) {
                Clean::Keep
            } else {
                Clean::Drop
            }
        } else if name.eq_ignore_ascii_case("cookie") && !cookie_untouched(value) {
            Clean::Cookies
        } else {
            Clean::Keep
        }
    }
}

/// Writes a header line into `out` as [`Cleaner::next`] decided: nothing
/// for [`Clean::Drop`] or a `Cookie` header left empty.
pub fn write_header(out: &mut Vec<u8>, clean: Clean, name: &[u8], value: &[u8]) {
    match clean {
        Clean::Drop => {}
        Clean::Keep => {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        Clean::Cookies => {
            let start = out.len();
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            if app_cookies(value, out) {
                out.extend_from_slice(b"\r\n");
            } else {
                out.truncate(start);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventBus;
    use crate::ports::{Listening, Settings};
    use std::collections::BTreeMap;
    use std::time::Duration;

    const TOKEN: &str = "the-owner-token";
    const SECRET: &[u8] = b"jwt-secret";
    const PORT: u16 = 3000;
    const HOST: &str = "3000-ws.example.dev";

    fn jwt(role: &str, aud: &str, exp_offset: i64) -> String {
        crate::auth::tests::jwt(SECRET, aud, role, exp_offset)
    }

    struct World {
        auth: Authenticator,
        sessions: Sessions,
        tickets: Tickets,
        ports: Ports,
    }

    impl World {
        fn new() -> Self {
            let ports = Ports::new(
                Settings {
                    max_visibility: Visibility::Public,
                    default_visibility: Visibility::Private,
                    ignore: vec![],
                    own_port: 60080,
                    url_template: "http://${PORT}-ws.example.dev/".into(),
                },
                vec![],
                EventBus::default(),
            );
            ports.update(BTreeMap::from([(
                PORT,
                Listening {
                    addrs: vec!["127.0.0.1".parse().unwrap()],
                    ..Listening::default()
                },
            )]));
            World {
                auth: Authenticator::new(TOKEN, Some(SECRET), "ws"),
                sessions: Sessions::new(Duration::from_secs(3600)),
                tickets: Tickets::new(Duration::from_secs(3600)),
                ports,
            }
        }

        fn judge(&self) -> Judge<'_> {
            Judge {
                auth: &self.auth,
                sessions: &self.sessions,
                tickets: &self.tickets,
                ports: &self.ports,
            }
        }

        /// A port session, as a redeemed ticket makes it.
        fn port_session(&self, level: Visibility) -> String {
            let now = Instant::now();
            let cut = self.ports.cuts(PORT, level);
            let t = self.tickets.issue(PORT, level, cut, None, now);
            self.tickets
                .redeem(&t, PORT, now, |l| self.ports.cuts(PORT, l))
                .unwrap()
        }
    }

    /// A raw request head; both paths' heads are made from it.
    fn raw(method: &str, target: &str, headers: &[(&str, &str)]) -> String {
        let mut s = format!("{method} {target} HTTP/1.1\r\nhost: {HOST}\r\n");
        for (k, v) in headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str("\r\n");
        s
    }

    /// The verdict of both paths' heads, which must agree.
    fn verdict(w: &World, v: Visibility, raw: &str) -> Verdict {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(raw.as_bytes()).unwrap().is_complete());
        let target = req.path.unwrap();
        let lane = decide(
            &w.judge(),
            &Head {
                method: req.method.unwrap(),
                query: target.split_once('?').map(|(_, q)| q),
                headers: Headers::Parsed(req.headers),
            },
            PORT,
            v,
            Instant::now(),
        );
        let mut b = axum::http::Request::builder()
            .method(req.method.unwrap())
            .uri(target);
        for h in req.headers.iter() {
            b = b.header(h.name, h.value);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        let general = decide(&w.judge(), &Head::of_parts(&parts), PORT, v, Instant::now());
        assert_eq!(lane, general, "the two paths differ on {raw}");
        lane
    }

    fn forwarded(v: &Verdict) -> bool {
        matches!(v, Verdict::Forward(_))
    }

    /// A visibility, headers, a query, and forwarded (`Ok`) or refused.
    type Case<'a> = (
        Visibility,
        Vec<(&'a str, String)>,
        &'a str,
        Result<(), Refusal>,
    );
    /// Header lines, lower-case name and value.
    type Lines = Vec<(String, String)>;

    #[test]
    fn every_visibility_and_credential() {
        let w = World::new();
        let owner_jwt = jwt("owner", "ws", 600);
        let member = jwt("member", "ws", 600);
        let elsewhere = jwt("owner", "other", 600);
        let expired = jwt("owner", "ws", -3600);
        let session = w.port_session(Visibility::Private);
        // The daemon's browser sessions, as a page load's access_token makes them.
        let browser = |role| {
            w.sessions.start(
                Identity {
                    role,
                    user: Option::None,
                },
                Option::None,
                Instant::now(),
                std::time::SystemTime::now(),
            )
        };
        let owner_browser = browser(Role::Owner);
        let member_browser = browser(Role::Member);
        let member_query = format!("access_token={member}");
        let bearer = |t: &str| format!("Bearer {t}");
        let cookie = |t: &str| format!("a=1; workspaced_session={t}");
        use Refusal::*;
        use Visibility::*;
        // (visibility, headers, query, expected: Ok(()) forward, Err(refusal))
        let cases: Vec<Case<'_>> = vec![
            (Private, vec![], "", Err(Unauthorized)),
            (Private, vec![("authorization", bearer(TOKEN))], "", Ok(())),
            (
                Private,
                vec![("authorization", bearer(&owner_jwt))],
                "",
                Ok(()),
            ),
            (
                Private,
                vec![("authorization", bearer(&member))],
                "",
                Err(Forbidden),
            ),
            (
                Private,
                vec![("authorization", bearer(&elsewhere))],
                "",
                Err(Unauthorized),
            ),
            (
                Private,
                vec![("authorization", bearer(&expired))],
                "",
                Err(Unauthorized),
            ),
            (
                Private,
                vec![("authorization", "Basic YTpi".into())],
                "",
                Err(Unauthorized),
            ),
            // Every header is looked at, in any order.
            (
                Private,
                vec![
                    ("authorization", "Basic YTpi".into()),
                    ("authorization", bearer(TOKEN)),
                ],
                "",
                Ok(()),
            ),
            (
                Private,
                vec![
                    ("authorization", bearer(&member)),
                    ("authorization", bearer(TOKEN)),
                ],
                "",
                Ok(()),
            ),
            // A cookie names a session; the token or a JWT in it is nothing.
            (
                Private,
                vec![("cookie", cookie(TOKEN))],
                "",
                Err(Unauthorized),
            ),
            (
                Private,
                vec![("cookie", cookie(&owner_jwt))],
                "",
                Err(Unauthorized),
            ),
            (
                Private,
                vec![("cookie", cookie(&owner_browser))],
                "",
                Ok(()),
            ),
            (Private, vec![("cookie", cookie(&session))], "", Ok(())),
            (
                Private,
                vec![("cookie", cookie(&member_browser))],
                "",
                Err(Forbidden),
            ),
            (
                Private,
                vec![("cookie", cookie("ended-or-unknown"))],
                "",
                Err(Unauthorized),
            ),
            (
                Internal,
                vec![("authorization", bearer(&member))],
                "",
                Ok(()),
            ),
            (
                Internal,
                vec![("cookie", cookie(&member_browser))],
                "",
                Ok(()),
            ),
            (
                Internal,
                vec![("cookie", cookie(&member))],
                "",
                Err(Unauthorized),
            ),
            (Internal, vec![("cookie", cookie(&session))], "", Ok(())),
            (Internal, vec![], "", Err(Unauthorized)),
            (
                Internal,
                vec![("authorization", bearer(&elsewhere))],
                "",
                Err(Unauthorized),
            ),
            // Public: anyone, whatever the credential.
            (Public, vec![], "", Ok(())),
            (Public, vec![("authorization", bearer("bad"))], "", Ok(())),
            (Public, vec![("cookie", cookie("bad"))], "", Ok(())),
            // The query counts on upgrades (and page loads, below) only.
            (
                Private,
                vec![],
                "access_token=the-owner-token",
                Err(Unauthorized),
            ),
            (
                Private,
                vec![
                    ("upgrade", "websocket".into()),
                    ("connection", "upgrade".into()),
                ],
                "access_token=the-owner-token",
                Ok(()),
            ),
            (
                Private,
                vec![
                    ("upgrade", "websocket".into()),
                    ("connection", "upgrade".into()),
                ],
                &member_query,
                Err(Forbidden),
            ),
        ];
        for (v, headers, query, want) in cases {
            let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let target = if query.is_empty() {
                "/x".to_owned()
            } else {
                format!("/x?{query}")
            };
            let got = verdict(&w, v, &raw("GET", &target, &hs));
            match want {
                Ok(()) => assert!(forwarded(&got), "{v:?} {headers:?} {query}: {got:?}"),
                Err(r) => assert_eq!(got, Verdict::Refused(r), "{v:?} {headers:?} {query}"),
            }
        }

        // A page load with access_token: 303 with the credential.
        let got = verdict(
            &w,
            Private,
            &raw(
                "GET",
                "/x?access_token=the-owner-token",
                &[("accept", "text/html")],
            ),
        );
        assert_eq!(got, Verdict::FromQuery(TOKEN.into()));
    }

    #[test]
    fn a_ticket_is_spent_once_and_its_session_ends_with_its_port() {
        let w = World::new();
        let now = Instant::now();
        let ticket = w.tickets.issue(PORT, Visibility::Private, 0, None, now);
        let target = format!("/x?{TICKET_PARAM}={ticket}");
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut headers);
        let text = raw("GET", &target, &[]);
        req.parse(text.as_bytes()).unwrap();
        let head = Head {
            method: "GET",
            query: target.split_once('?').map(|(_, q)| q),
            headers: Headers::Parsed(req.headers),
        };
        let Verdict::Redeemed(session) = decide(&w.judge(), &head, PORT, Visibility::Private, now)
        else {
            panic!("the ticket is redeemed");
        };
        assert_eq!(
            decide(&w.judge(), &head, PORT, Visibility::Private, now),
            Verdict::Refused(Refusal::Unauthorized),
            "single use"
        );
        let with = raw(
            "GET",
            "/x",
            &[("cookie", &format!("workspaced_session={session}"))],
        );
        assert!(forwarded(&verdict(&w, Visibility::Private, &with)));
        w.ports.set_visibility(PORT, Visibility::None).unwrap();
        w.ports.set_visibility(PORT, Visibility::Private).unwrap();
        assert_eq!(
            verdict(&w, Visibility::Private, &with),
            Verdict::Refused(Refusal::Unauthorized),
            "ended when the port went none"
        );
    }

    #[test]
    fn cookie_credentialed_upgrades_and_unsafe_methods_come_from_the_ports_origin() {
        let w = World::new();
        let session = w.port_session(Visibility::Private);
        let cookie = format!("workspaced_session={session}");
        let own = format!("http://{HOST}");
        let ws = [("upgrade", "websocket"), ("connection", "upgrade")];
        let refused = Verdict::Refused(Refusal::OriginNotAllowed);
        for (method, extra) in [("POST", &[][..]), ("GET", &ws[..]), ("DELETE", &[][..])] {
            for (origin, site) in [
                (Some("http://4000-ws.example.dev"), None),
                (Some("null"), None),
                (Some("https://3000-ws.example.dev"), None),
                (None, Some("cross-site")),
                (None, Some("same-site")),
            ] {
                let mut h: Vec<(&str, &str)> = vec![("cookie", &cookie)];
                h.extend_from_slice(extra);
                if let Some(o) = origin {
                    h.push(("origin", o));
                }
                if let Some(s) = site {
                    h.push(("sec-fetch-site", s));
                }
                let got = verdict(&w, Visibility::Private, &raw(method, "/x", &h));
                assert_eq!(got, refused, "{method} {h:?}");
                // With a header credential the same request is not checked.
                h.push(("authorization", "Bearer the-owner-token"));
                let got = verdict(&w, Visibility::Private, &raw(method, "/x", &h));
                assert!(forwarded(&got), "{method} {h:?}");
            }
            // From the port's own origin, or a client that says nothing.
            for h in [
                vec![("cookie", cookie.as_str()), ("origin", own.as_str())],
                vec![
                    ("cookie", cookie.as_str()),
                    ("sec-fetch-site", "same-origin"),
                ],
                vec![("cookie", cookie.as_str())],
            ] {
                let mut h = h;
                h.extend_from_slice(extra);
                let got = verdict(&w, Visibility::Private, &raw(method, "/x", &h));
                assert!(forwarded(&got), "{method} {h:?}: {got:?}");
            }
        }
        // A cookie without the role is refused for its origin first.
        let member = w.sessions.start(
            Identity {
                role: Role::Member,
                user: None,
            },
            None,
            Instant::now(),
            std::time::SystemTime::now(),
        );
        let h = [
            ("cookie", format!("workspaced_session={member}")),
            ("origin", "null".to_owned()),
        ];
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            verdict(&w, Visibility::Private, &raw("POST", "/x", &h)),
            refused
        );
        // Behind TLS the port's origin is https.
        let h = [
            ("cookie", cookie.as_str()),
            ("origin", "https://3000-ws.example.dev"),
            ("x-forwarded-proto", "https"),
        ];
        assert!(forwarded(&verdict(
            &w,
            Visibility::Private,
            &raw("POST", "/x", &h)
        )));
        // Safe methods are not checked: the app's own links and GETs work.
        for m in ["GET", "HEAD", "OPTIONS"] {
            let h = [
                ("cookie", cookie.as_str()),
                ("origin", "http://4000-ws.example.dev"),
                ("sec-fetch-site", "same-site"),
            ];
            assert!(
                forwarded(&verdict(&w, Visibility::Private, &raw(m, "/x", &h))),
                "{m}"
            );
        }
        // A public port ignores credentials, so nothing is checked there.
        let h = [("cookie", cookie.as_str()), ("origin", "null")];
        assert!(forwarded(&verdict(
            &w,
            Visibility::Public,
            &raw("POST", "/x", &h)
        )));
    }

    /// What the app gets from both adapters: the headers of the cleaned
    /// head, in order, each of them.
    fn cleaned(w: &World, v: Visibility, raw: &str) -> Lines {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(raw.as_bytes()).unwrap();
        let Verdict::Forward(f) = verdict(w, v, raw) else {
            panic!("forwarded: {raw}");
        };
        let mut out = Vec::new();
        let mut cleaner = Cleaner::default();
        for h in req.headers.iter() {
            let c = cleaner.next(&f, h.name, h.value);
            write_header(&mut out, c, h.name.as_bytes(), h.value);
        }
        let lane: Lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                let (k, v) = l.split_once(": ").unwrap();
                (k.to_ascii_lowercase(), v.to_owned())
            })
            .collect();
        let mut map = HeaderMap::new();
        for h in req.headers.iter() {
            map.append(
                header::HeaderName::from_bytes(h.name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(h.value).unwrap(),
            );
        }
        clean_map(&mut map, &f);
        let names: Vec<&str> = ["host", "authorization", "cookie", "x-app"].to_vec();
        let general: Lines = names
            .iter()
            .flat_map(|n| {
                map.get_all(*n)
                    .iter()
                    .map(|v| (n.to_string(), v.to_str().unwrap().to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect();
        // hyper's map groups values by name; compare per name, in order.
        for n in names {
            let of = |hs: &[(String, String)]| {
                hs.iter()
                    .filter(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(of(&lane), of(&general), "{n} in {raw}");
        }
        lane
    }

    #[test]
    fn the_daemons_credentials_never_pass_and_the_apps_always_do() {
        let w = World::new();
        let owner_jwt = jwt("owner", "ws", 600);
        let member = jwt("member", "ws", 600);
        let expired = jwt("owner", "ws", -3600);
        let session = w.port_session(Visibility::Private);
        let own = [
            format!("Bearer {TOKEN}"),
            format!("bearer  {owner_jwt} "),
            format!("Bearer {member}"),
            format!("Bearer {expired}"),
            TOKEN.to_owned(),
            format!("Token {TOKEN}"),
        ];
        let apps = ["Basic YXBwOnNlY3JldA==", "Bearer the-apps-own-token"];
        for v in [
            Visibility::Private,
            Visibility::Internal,
            Visibility::Public,
        ] {
            // Two and three Authorization headers, in every order.
            for mine in &own {
                let sets: Vec<Vec<&str>> = vec![
                    vec![mine, apps[0]],
                    vec![apps[0], mine],
                    vec![mine, apps[1]],
                    vec![apps[1], mine],
                    vec![mine, apps[0], apps[1]],
                    vec![apps[0], mine, apps[1]],
                    vec![apps[0], apps[1], mine],
                    vec![apps[1], apps[0], mine],
                    vec![mine, mine, apps[1]],
                ];
                for set in sets {
                    let mut h: Vec<(&str, &str)> =
                        set.iter().map(|a| ("authorization", *a)).collect();
                    let c = format!("workspaced_session={session}");
                    if v != Visibility::Public && !mine.starts_with("Bearer the-") {
                        // Admitted by the cookie where the header is not enough.
                        h.push(("cookie", &c));
                    }
                    h.push(("x-app", "1"));
                    let lane = cleaned(&w, v, &raw("GET", "/x", &h));
                    let auth: Vec<&str> = lane
                        .iter()
                        .filter(|(k, _)| k == "authorization")
                        .map(|(_, v)| v.as_str())
                        .collect();
                    let want: Vec<&str> =
                        set.iter().copied().filter(|a| apps.contains(a)).collect();
                    assert_eq!(auth, want, "{v:?} {set:?}");
                    assert!(!lane.iter().any(|(k, _)| k == "cookie"), "{lane:?}");
                }
            }
            // Several Cookie headers, the daemon's among the app's.
            let h = [
                ("authorization", format!("Bearer {TOKEN}")),
                ("cookie", format!("a=1; workspaced_session={session}; b=2")),
                ("cookie", "workspaced_ticket=t".to_owned()),
                ("cookie", "c=3;d=4".to_owned()),
                ("cookie", format!("workspaced_session={TOKEN};e=5")),
                (
                    "cookie",
                    "workspaced_session=x; workspaced_ticket=y".to_owned(),
                ),
                ("cookie", "f=6".to_owned()),
            ];
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let lane = cleaned(&w, v, &raw("GET", "/x", &h));
            let cookies: Vec<&str> = lane
                .iter()
                .filter(|(k, _)| k == "cookie")
                .map(|(_, v)| v.as_str())
                .collect();
            assert_eq!(cookies, ["a=1; b=2", "c=3;d=4", "e=5", "f=6"], "{v:?}");
            assert!(!lane.iter().any(|(k, _)| k == "authorization"));
        }
    }

    #[test]
    fn the_daemons_query_parameters_go_and_the_rest_stays_byte_for_byte() {
        assert!(carries_daemon_params("a=1&access_token=t"));
        assert!(carries_daemon_params("workspaced_ticket"));
        assert!(carries_daemon_params("access%5Ftoken=t"));
        assert!(!carries_daemon_params("a=1&my_access_token=t"));
        assert_eq!(app_query("a=1&b=%2F"), "a=1&b=%2F");
        assert_eq!(
            app_query("x=1&access_token=t&y=%2F&&workspaced_ticket=u&access%5ftoken=v"),
            "x=1&y=%2F&"
        );
        assert_eq!(app_query("access_token=t"), "");
    }
}
