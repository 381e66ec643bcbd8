//! Browsers and other origins: the session cookie names an in-memory
//! session, a cookie alone never authorizes an upgrade or an unsafe method
//! from another origin, CORS for `allowed_origins`, and the daemon's own
//! host form (`<own port>-ws.example`).

use std::time::Duration;

use integration_tests::{jwt, until, TestDaemon, TOKEN, WAIT};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

const HTML: &str = "text/html,application/xhtml+xml";
const IDE: &str = "https://ide.example.com";

fn no_redirect() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in as a browser does (a page load with `access_token`) and returns
/// the `Set-Cookie` value and the `name=value` pair to send back.
async fn sign_in(d: &TestDaemon, credential: &str, host: Option<&str>) -> (String, String) {
    let mut r = no_redirect()
        .get(d.url(&format!("/?access_token={credential}")))
        .header("accept", HTML);
    if let Some(h) = host {
        r = r.header("host", h).header("x-forwarded-proto", "https");
    }
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let pair = set.split(';').next().unwrap().to_owned();
    (set, pair)
}

/// The port of the daemon's own listener.
fn own_port(d: &TestDaemon) -> u16 {
    d.addr.rsplit(':').next().unwrap().parse().unwrap()
}

fn is_websocket_route(method: &Method) -> bool {
    // Every GET is sent as an upgrade: an upgrade is checked whatever the
    // route, and the WebSocket routes are GETs.
    method == Method::GET
}

/// One request of the route table, with the body that would change
/// something if it were let through.
fn request(
    client: &reqwest::Client,
    d: &TestDaemon,
    method: &Method,
    template: &str,
    terminal: &str,
    port: u16,
) -> reqwest::RequestBuilder {
    let path = template
        .replace("{id}", terminal)
        .replace("{port}", &port.to_string())
        .replace("{*path}", "pwned.txt");
    let mut r = client.request(method.clone(), d.url(&path));
    if is_websocket_route(method) {
        r = r
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    }
    let body = match (method.as_str(), template) {
        ("PUT", "/api/v1/files/{*path}") => {
            return r.header("if-none-match", "*").body("pwned");
        }
        ("POST", "/api/v1/sync/apply") => json!({"changes": [
            {"op": "write", "path": "pwned-apply.txt", "base": null, "content": "pwned"}
        ]}),
        ("PUT", "/api/v1/ports/{port}") => json!({"visibility": "public"}),
        ("PUT", "/api/v1/idle") => json!({"timeout": "1m"}),
        ("POST", _) | ("PUT", _) => json!({}),
        _ => return r,
    };
    r.json(&body)
}

async fn error_code(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return (status, String::new());
    }
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn a_cookie_from_another_origin_gets_nothing_on_any_route() {
    let d = TestDaemon::builder().arg("allowed-origins", IDE).start();
    let routes = workspaced::http::api_route_list();
    assert!(routes
        .iter()
        .any(|(m, p)| m == Method::DELETE && *p == "/api/v1/session"));
    // Real resources behind every template, so a refusal that let the
    // request through would show.
    let (status, term) = d.post_json("/api/v1/terminals", json!({})).await;
    assert_eq!(status, 201, "{term}");
    let terminal = term["id"].as_str().unwrap().to_owned();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    until(WAIT, "the port to be listed", async || {
        let ports = d.get_json("/api/v1/ports").await;
        ports
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["port"] == port)
            .map(|p| assert_eq!(p["visibility"], "private"))
    })
    .await;
    let idle_before = d.get_json("/api/v1/idle").await;
    let (_, session) = sign_in(&d, TOKEN, None).await;
    let client = reqwest::Client::new();
    let own = format!("http://{}", d.addr);

    let foreign: [(&str, &str); 4] = [
        ("origin", "http://3000-ws.example.com"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ];
    for (method, template) in &routes {
        for (name, value) in foreign {
            let r = request(&client, &d, method, template, &terminal, port)
                .header("cookie", &session)
                .header(name, value)
                .send()
                .await
                .unwrap();
            // GETs go as upgrades, the rest are unsafe: all are checked.
            let (status, code) = error_code(r).await;
            assert_eq!(
                (status, code.as_str()),
                (StatusCode::FORBIDDEN, "origin_not_allowed"),
                "{method} {template} with the cookie and {name}: {value}"
            );
        }
    }
    // The console and the heartbeat route check the same way.
    for (method, path) in [(Method::POST, "/"), (Method::POST, "/activity/tick")] {
        let r = client
            .request(method.clone(), d.url(path))
            .header("cookie", &session)
            .header("origin", "http://3000-ws.example.com")
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(r).await,
            (StatusCode::FORBIDDEN, "origin_not_allowed".into()),
            "{method} {path}"
        );
    }
    let r = client
        .get(d.url("/api/v1/events"))
        .header("cookie", &session)
        .header("origin", "http://3000-ws.example.com")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Nothing happened: no terminal, no file, no visibility, idle untouched.
    let list = d.get_json("/api/v1/terminals").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], terminal.as_str());
    for f in ["pwned.txt", "pwned-apply.txt"] {
        assert!(!d.root().join(f).exists(), "{f} was written");
    }
    let ports = d.get_json("/api/v1/ports").await;
    let p = ports.as_array().unwrap().iter().find(|p| p["port"] == port);
    assert_eq!(p.unwrap()["visibility"], "private");
    let idle = d.get_json("/api/v1/idle").await;
    assert_eq!(idle["timeout_seconds"], idle_before["timeout_seconds"]);
    assert!(idle["sources"].get("heartbeat").is_none(), "{idle}");
    // The session was not signed out either.
    let r = client
        .get(d.url("/api/v1/terminals"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // From the daemon's own origin and from an allowed origin the cookie
    // works (a fresh session each time: one of the routes signs out).
    for origin in [own.as_str(), IDE] {
        for (method, template) in &routes {
            let (_, session) = sign_in(&d, TOKEN, None).await;
            let r = request(&client, &d, method, template, &terminal, port)
                .header("cookie", &session)
                .header("origin", origin)
                .send()
                .await
                .unwrap();
            let (status, code) = error_code(r).await;
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{method} {template} from {origin}: {status} {code}"
            );
        }
    }
    // A Bearer header, or an access_token on an upgrade, is not the
    // browser's doing: another origin does not matter.
    for (method, template) in &routes {
        let r = request(&client, &d, method, template, &terminal, port)
            .bearer_auth(TOKEN)
            .header("origin", "http://3000-ws.example.com")
            .send()
            .await
            .unwrap();
        let (status, code) = error_code(r).await;
        assert!(
            status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
            "{method} {template} with a Bearer header: {status} {code}"
        );
        if is_websocket_route(method) {
            let path = template
                .replace("{id}", &terminal)
                .replace("{port}", &port.to_string())
                .replace("{*path}", "x");
            let r = client
                .get(d.url(&format!("{path}?access_token={TOKEN}")))
                .header("origin", "null")
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                .send()
                .await
                .unwrap();
            let status = r.status();
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{template} upgrade with access_token: {status}"
            );
        }
    }
    drop(listener);
}

#[tokio::test]
async fn every_401_asks_for_a_bearer_credential() {
    let d = TestDaemon::start();
    let client = no_redirect();
    let routes = workspaced::http::api_route_list();
    let paths = routes
        .iter()
        .map(|(m, p)| {
            (
                m.clone(),
                p.replace("{id}", "x")
                    .replace("{port}", "4999")
                    .replace("{*path}", "x"),
            )
        })
        .chain([
            (Method::GET, "/".to_owned()),
            (Method::GET, "/assets/app.js".to_owned()),
        ]);
    // A private port's refusals too (path form), JSON and page.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    until(WAIT, "the port to be listed", async || {
        let ports = d.get_json("/api/v1/ports").await;
        ports
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["port"] == port)
            .then_some(())
    })
    .await;
    let paths = paths.chain([(Method::GET, format!("/proxy/{port}/"))]);
    for (method, path) in paths {
        let page_load = method == Method::GET;
        for cookie in [None, Some("workspaced_session=no-such-session")] {
            for accept in [None, Some(HTML)] {
                if accept.is_some() && !page_load {
                    continue;
                }
                let mut r = client.request(method.clone(), d.url(&path));
                if let Some(c) = cookie {
                    r = r.header("cookie", c);
                }
                if let Some(a) = accept {
                    r = r.header("accept", a);
                }
                let r = r.send().await.unwrap();
                assert_eq!(r.status(), 401, "{method} {path} {cookie:?} {accept:?}");
                assert_eq!(
                    r.headers()
                        .get("www-authenticate")
                        .map(|v| v.to_str().unwrap()),
                    Some("Bearer"),
                    "{method} {path} {cookie:?} {accept:?}"
                );
                if accept.is_some() && !path.starts_with("/proxy/") {
                    let page = r.text().await.unwrap();
                    assert!(page.contains("access_token"), "the sign-in page: {page}");
                }
            }
        }
    }
}

#[tokio::test]
async fn the_cookie_names_a_session_that_sign_out_and_restarts_end() {
    let mut d = TestDaemon::start();
    let client = no_redirect();
    let owner_jwt = jwt("owner", "ws-test", 600);
    let mut sessions = Vec::new();
    for credential in [TOKEN, owner_jwt.as_str()] {
        let (set, pair) = sign_in(&d, credential, None).await;
        let value = pair.strip_prefix("workspaced_session=").unwrap();
        assert!(
            !set.contains(credential),
            "the cookie is the credential: {set}"
        );
        assert!(!value.contains('.'), "the cookie looks like a JWT: {value}");
        assert!(value.len() >= 22, "at least 128 bits: {value}");
        sessions.push(pair);
    }
    assert_ne!(sessions[0], sessions[1]);
    // A cookie holding the token itself is no session.
    let r = client
        .get(d.url("/api/v1/terminals"))
        .header("cookie", format!("workspaced_session={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for s in &sessions {
        let r = client
            .get(d.url("/api/v1/terminals"))
            .header("cookie", s)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    // Sign out: 204, the cookie cleared, and a copy of it (stolen before) is 401.
    let stolen = sessions[0].clone();
    let r = client
        .delete(d.url("/api/v1/session"))
        .header("cookie", &stolen)
        .header("origin", format!("http://{}", d.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let cleared = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.starts_with("workspaced_session=;"), "{cleared}");
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("Path=/"),
        "{cleared}"
    );
    for (accept, want) in [(None, 401), (Some(HTML), 401)] {
        let mut r = client
            .get(d.url("/api/v1/terminals"))
            .header("cookie", &stolen);
        if let Some(a) = accept {
            r = r.header("accept", a);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), want);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
    let r = client
        .get(d.url("/"))
        .header("accept", HTML)
        .header("cookie", &stolen)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the console asks for the token again");
    // The other session lives on.
    let r = client
        .get(d.url("/api/v1/terminals"))
        .header("cookie", &sessions[1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A restart ends every session, the token staying the same.
    let state = std::mem::replace(&mut d.state, tempfile::tempdir().unwrap());
    drop(d);
    let d = TestDaemon::builder().state(state).start();
    let r = client
        .get(d.url("/api/v1/terminals"))
        .header("cookie", &sessions[1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn an_idle_session_ends_after_session_ttl_and_a_jwt_session_at_exp() {
    let ttl = Duration::from_secs(2);
    let d = TestDaemon::builder().arg("session-ttl", "2s").start();
    let client = reqwest::Client::new();
    let status = async |session: &str| {
        client
            .get(d.url("/api/v1/status"))
            .header("cookie", session)
            .send()
            .await
            .unwrap()
            .status()
    };
    let (_, idle) = sign_in(&d, TOKEN, None).await;
    let (_, busy) = sign_in(&d, TOKEN, None).await;
    let start = std::time::Instant::now();
    // Only using a session shows whether it lives, and a use extends it:
    // `busy` is used every quarter of the ttl until `idle` has been left
    // alone for longer than the ttl.
    while start.elapsed() < ttl + ttl / 2 {
        assert_eq!(status(&busy).await, 200, "a session in use lives on");
        tokio::time::sleep(ttl / 4).await;
    }
    assert_eq!(status(&idle).await, 401, "an idle session ends");
    assert_eq!(status(&busy).await, 200);

    // A session made from a JWT ends at the JWT's `exp`, even while in use.
    let d = TestDaemon::start();
    let short = jwt("owner", "ws-test", 2);
    let (_, session) = sign_in(&d, &short, None).await;
    until(
        Duration::from_secs(10),
        "the JWT's session to end",
        async || {
            let s = client
                .get(d.url("/api/v1/status"))
                .header("cookie", &session)
                .send()
                .await
                .unwrap()
                .status();
            (s == 401).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn cors_answers_allowed_origins_only_and_never_allows_credentials() {
    let d = TestDaemon::builder()
        .arg(
            "allowed-origins",
            &format!("{IDE},https://other.example.org:8443"),
        )
        .start();
    let client = reqwest::Client::new();
    for path in [
        "/api/v1/terminals",
        "/api/v1/files/a/b.txt",
        "/api/v1/no-such-route",
    ] {
        let r = client
            .request(Method::OPTIONS, d.url(path))
            .header("origin", IDE)
            .header("access-control-request-method", "PUT")
            .header("access-control-request-headers", "authorization, if-match")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{path}");
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], IDE);
        assert_eq!(
            h["access-control-allow-methods"],
            "GET, HEAD, PUT, POST, DELETE"
        );
        assert_eq!(
            h["access-control-allow-headers"],
            "authorization, content-type, if-match, if-none-match"
        );
        assert_eq!(h["access-control-max-age"], "600");
        assert_eq!(h["vary"], "Origin");
        assert!(h.get("access-control-allow-credentials").is_none());
    }
    // Actual answers, good and bad, to an allowed origin.
    for (auth, want) in [(Some(jwt("owner", "ws-test", 600)), 200), (None, 401)] {
        let mut r = client
            .get(d.url("/api/v1/terminals"))
            .header("origin", "https://other.example.org:8443");
        if let Some(a) = auth {
            r = r.bearer_auth(a);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), want);
        let h = r.headers();
        assert_eq!(
            h["access-control-allow-origin"],
            "https://other.example.org:8443"
        );
        assert_eq!(h["access-control-expose-headers"], "etag, location");
        assert_eq!(h["vary"], "Origin");
        assert!(h.get("access-control-allow-credentials").is_none());
    }
    // Other origins, the daemon's own, and routes outside /api/v1/ get none.
    let cases = [
        (
            Method::OPTIONS,
            "/api/v1/terminals",
            "https://evil.example.com",
        ),
        (Method::GET, "/api/v1/terminals", "https://evil.example.com"),
        (
            Method::OPTIONS,
            "/api/v1/terminals",
            "http://ide.example.com",
        ),
        (
            Method::GET,
            "/api/v1/terminals",
            &format!("http://{}", d.addr),
        ),
        (Method::OPTIONS, "/", IDE),
        (Method::GET, "/healthz", IDE),
    ];
    for (method, path, origin) in cases {
        let r = client
            .request(method.clone(), d.url(path))
            .bearer_auth(TOKEN)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 204, "{method} {path} from {origin}");
        for (name, _) in r.headers() {
            assert!(
                !name.as_str().starts_with("access-control-"),
                "{method} {path} from {origin}: {name}"
            );
        }
    }
}

#[tokio::test]
async fn the_daemons_own_host_form_is_the_daemon() {
    let d = TestDaemon::start();
    let own = own_port(&d);
    let host = format!("{own}-ws.example");
    let origin = format!("https://{host}");
    let client = no_redirect();

    // A ticketless page load with access_token: 303 and a Secure cookie.
    let r = client
        .get(d.url(&format!("/?access_token={TOKEN}&tab=1")))
        .header("host", &host)
        .header("x-forwarded-proto", "https")
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/?tab=1");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.contains("Secure") && set.contains("HttpOnly"), "{set}");
    let session = set.split(';').next().unwrap().to_owned();
    let send = |method: Method, path: &str| {
        client
            .request(method, d.url(path))
            .header("host", &host)
            .header("x-forwarded-proto", "https")
            .header("cookie", &session)
    };

    // The console and the API, as on 127.0.0.1.
    let r = send(Method::GET, "/")
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("new-terminal"));
    let r = send(Method::GET, "/assets/app.js").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = send(Method::GET, "/api/v1/status").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["workspace"]["name"],
        "ws-test"
    );
    // The lane hands such a request over too (a fresh connection each).
    let r = d
        .fresh
        .get(d.url("/api/v1/terminals"))
        .header("host", &host)
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The origin check: its own origin works, a sibling port's does not.
    let r = send(Method::POST, "/api/v1/terminals")
        .header("origin", &origin)
        .json(&json!({"command": ["cat"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let term: Value = r.json().await.unwrap();
    let id = term["id"].as_str().unwrap().to_owned();
    for bad in ["https://3000-ws.example", &format!("http://{host}"), "null"] {
        let r = send(Method::POST, "/api/v1/terminals")
            .header("origin", bad)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(r).await,
            (StatusCode::FORBIDDEN, "origin_not_allowed".into()),
            "{bad}"
        );
    }
    assert_eq!(
        d.get_json("/api/v1/terminals")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The WebSockets: attach and sync from its own origin, refused from another.
    let ws = |path: String, origin: String| {
        let mut req = format!("ws://{}{path}", d.addr)
            .into_client_request()
            .unwrap();
        let h = req.headers_mut();
        h.insert("host", host.parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert("cookie", session.parse().unwrap());
        h.insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(req)
    };
    let (mut sync, _) = ws("/api/v1/sync".into(), origin.clone()).await.unwrap();
    use futures_util::StreamExt;
    let hello = tokio::time::timeout(WAIT, sync.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let hello: Value = serde_json::from_str(hello.to_text().unwrap()).unwrap();
    assert_eq!(hello["type"], "hello");
    let (mut attach, _) = ws(format!("/api/v1/terminals/{id}/attach"), origin.clone())
        .await
        .unwrap();
    use futures_util::SinkExt;
    attach
        .send(tungstenite::Message::Binary(
            b"own-host-echo\n".to_vec().into(),
        ))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !integration_tests::contains(&seen, b"own-host-echo") {
        match tokio::time::timeout(WAIT, attach.next()).await.unwrap() {
            Some(Ok(tungstenite::Message::Binary(b))) => seen.extend_from_slice(&b),
            Some(Ok(_)) => {}
            other => panic!("attach ended: {other:?}"),
        }
    }
    for path in [
        "/api/v1/sync".to_owned(),
        format!("/api/v1/terminals/{id}/attach"),
    ] {
        match ws(path.clone(), "https://3000-ws.example".into()).await {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403, "{path}"),
            other => panic!("{path} from another origin: {:?}", other.map(|_| ())),
        }
    }

    // Another port's host is still that port's.
    let r = client
        .get(d.url("/api/v1/status"))
        .header("host", "4999-ws.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_GATEWAY, "port_not_available".into())
    );
}
