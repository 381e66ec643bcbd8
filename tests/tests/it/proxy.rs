//! The reverse proxy: routing by path and host, streaming, SSE, WebSocket,
//! credentials never reaching the app, visibility, and bad input.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use integration_tests::{jwt, upstream, TestDaemon, TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

use crate::ports::{set_visibility, wait_listening};

const HTML: &str = "text/html,application/xhtml+xml";

/// Sends raw bytes, returns everything read until the server closes (10 s at most).
async fn raw(addr: &str, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn proxied(d: &TestDaemon, app: &upstream::App, visibility: &str) {
    wait_listening(d, app.port()).await;
    assert_eq!(
        set_visibility(d, app.port(), visibility).await.status(),
        200
    );
}

#[tokio::test]
async fn path_and_host_routing_reach_the_app() {
    let d = TestDaemon::start();
    let app = upstream::start("127.0.0.1:0").await;
    // An IPv6 listener may draw the number of the daemon's own port (on
    // 127.0.0.1), which the daemon never lists as an app's: draw again.
    let own: u16 = d.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let v6 = loop {
        let a = upstream::start("[::1]:0").await;
        if a.port() != own {
            break a;
        }
    };
    proxied(&d, &app, "private").await;
    proxied(&d, &v6, "private").await;
    let p = app.port();

    let r = d
        .req(Method::GET, &format!("/proxy/{p}/hello/a%20b?x=1&y=%2F&&z"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello from the app");
    let seen = app.seen_at("/hello/a%20b");
    assert_eq!(
        seen[0].target, "/hello/a%20b?x=1&y=%2F&&z",
        "query byte for byte"
    );
    assert_eq!(seen[0].header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen[0].header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen[0].header("x-forwarded-host"), Some(d.addr.as_str()));

    // The app bound to [::1] only is reached over IPv6 loopback.
    let r = d
        .req(Method::GET, &format!("/proxy/{}/v6", v6.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(v6.seen_at("/v6").len(), 1);

    // /proxy/{port} without the slash redirects, query kept.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .get(d.url(&format!("/proxy/{p}?q=1")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.headers()["location"], format!("/proxy/{p}/?q=1"));

    // Host routing: every path belongs to the app, even the daemon's own.
    for path in ["/api/v1/ports", "/healthz", "/host"] {
        let r = d
            .req(Method::GET, path)
            .header("host", format!("{p}-ws-test.example.dev:8443"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.text().await.unwrap(), "hello from the app", "{path}");
    }
    let seen = app.seen_at("/api/v1/ports");
    assert_eq!(
        seen[0].header("host"),
        Some(format!("{p}-ws-test.example.dev:8443").as_str())
    );

    // A first label that does not start with digits and a dash is the daemon's.
    let r = d
        .http
        .get(d.url("/healthz"))
        .header("host", "abc-ws-test.example.dev")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
    for host in ["99999-ws.example.dev", "0-ws.example.dev"] {
        let r = d
            .http
            .get(d.url("/"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{host}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "invalid_port"
        );
    }
    for path in [
        "/proxy/0/",
        "/proxy/65536/",
        "/proxy/abc/",
        "/proxy/99999999999/x",
        "/proxy/-1",
    ] {
        let r = d.req(Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "invalid_port"
        );
    }
}

#[tokio::test]
async fn host_routing_can_be_turned_off() {
    let d = TestDaemon::builder().arg("host-routing", "false").start();
    let app = upstream::start("127.0.0.1:0").await;
    proxied(&d, &app, "public").await;
    let r = d
        .http
        .get(d.url("/healthz"))
        .header("host", format!("{}-ws.example", app.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
}

#[tokio::test]
async fn the_app_never_sees_the_daemons_credential() {
    let d = TestDaemon::builder()
        .arg("port-url-template", "http://${PORT}-ws-test.example.dev/")
        .start();
    let app = upstream::start("127.0.0.1:0").await;
    proxied(&d, &app, "private").await;
    let p = app.port();
    let owner_jwt = jwt("owner", "ws-test", 600);
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The browser's session cookie names a session made from a page load.
    let signed_in = no_redirect
        .get(d.url(&format!("/?access_token={TOKEN}")))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    let session_cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    let daemon_session = session_cookie.split(';').next().unwrap().to_owned();

    // Header, query (with an upgrade-free API call the query is ignored, so
    // the header authorizes), cookie; on a connection the general path
    // keeps (`/rec`), and on new ones, which the fast lane takes (`/lane`).
    for (client, path) in [(&d.http, "rec"), (&d.fresh, "lane")] {
        let r = client
            .get(d.url(&format!("/proxy/{p}/{path}?access_token={TOKEN}&keep=1")))
            .bearer_auth(TOKEN)
            .header("cookie", format!("a=1; {daemon_session}; b=2"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = client
            .get(d.url(&format!("/proxy/{p}/{path}?x=1")))
            .bearer_auth(&owner_jwt)
            .header("cookie", format!("a=1; {daemon_session}"))
            .header("cookie", "b=2")
            .header("x-forwarded-for", "203.0.113.7")
            .header("connection", "x-hop")
            .header("x-hop", "secret of the hop")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // The session cookie authorizes; the app's own Authorization passes.
        let r = client
            .get(d.url(&format!("/proxy/{p}/{path}?y=1")))
            .header("cookie", &daemon_session)
            .header("authorization", "Bearer the-apps-own-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // A page load with access_token: 303 without it, with the session cookie.
    let r = no_redirect
        .get(d.url(&format!("/proxy/{p}/rec?access_token={TOKEN}&z=2")))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], format!("/proxy/{p}/rec?z=2"));
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("workspaced_session=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );

    // A ticket: host-routed, single use, turned into a cookie for that host.
    let (status, body) = d
        .post_json(&format!("/api/v1/ports/{p}/open"), serde_json::json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let url = body["url"].as_str().unwrap();
    let prefix = format!("http://{p}-ws-test.example.dev/?workspaced_ticket=");
    assert!(url.starts_with(&prefix), "{url}");
    let ticket = &url[prefix.len()..];
    let host = format!("{p}-ws-test.example.dev");
    let r = no_redirect
        .get(d.url(&format!("/rec?workspaced_ticket={ticket}&t=1")))
        .header("host", &host)
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/rec?t=1");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let session = set.split(';').next().unwrap().to_owned();
    assert!(!session.contains(ticket) && !session.contains(TOKEN));
    let r = no_redirect
        .get(d.url("/rec?t=1"))
        .header("host", &host)
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the ticket's session is the owner's at that host"
    );
    let r = no_redirect
        .get(d.url(&format!("/rec?workspaced_ticket={ticket}")))
        .header("host", &host)
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a ticket is single use");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));

    let seen = app.seen_at("/rec");
    assert_eq!(seen.len(), 4, "{seen:#?}");
    for s in &seen {
        let all = format!("{} {:?}", s.target, s.headers);
        for secret in [
            TOKEN,
            owner_jwt.as_str(),
            ticket,
            "workspaced_session",
            "access_token",
            "workspaced_ticket",
        ] {
            assert!(!all.contains(secret), "the app saw {secret}: {all}");
        }
    }
    let lane = app.seen_at("/lane");
    assert_eq!(lane.len(), 3, "{lane:#?}");
    for (path, seen) in [("/rec", &seen), ("/lane", &lane)] {
        for s in &seen[..3] {
            let all = format!("{} {:?}", s.target, s.headers);
            for secret in [
                TOKEN,
                owner_jwt.as_str(),
                "workspaced_session",
                "access_token",
            ] {
                assert!(!all.contains(secret), "the app saw {secret}: {all}");
            }
        }
        assert_eq!(seen[0].target, format!("{path}?keep=1"));
        assert_eq!(seen[0].all("cookie"), ["a=1; b=2"]);
        // Each Cookie header is cleaned where it stands.
        assert_eq!(seen[1].all("cookie"), ["a=1", "b=2"]);
        assert_eq!(
            seen[1].header("x-forwarded-for"),
            Some("203.0.113.7, 127.0.0.1")
        );
        assert_eq!(seen[1].header("x-hop"), None, "{path}");
        assert_eq!(seen[1].header("connection"), None, "{path}");
        assert_eq!(
            seen[2].header("authorization"),
            Some("Bearer the-apps-own-token")
        );
    }
}

#[tokio::test]
async fn visibility_decides_who_gets_in() {
    let d = TestDaemon::start();
    let app = upstream::start("127.0.0.1:0").await;
    wait_listening(&d, app.port()).await;
    let p = app.port();
    let member = jwt("member", "ws-test", 600);
    // Each check runs on a kept connection and on a new one (see `fresh`).
    let clients = [&d.http, &d.fresh];
    let get = |client: &reqwest::Client, cred: Option<&str>, page: bool| {
        let mut r = client.get(d.url(&format!("/proxy/{p}/v")));
        if let Some(c) = cred {
            r = r.bearer_auth(c);
        }
        if page {
            r = r.header("accept", HTML);
        }
        async move { r.send().await.unwrap() }
    };

    // Private by default: the owner only.
    for c in clients {
        assert_eq!(get(c, Some(TOKEN), false).await.status(), 200);
        let owner = jwt("owner", "ws-test", 600);
        assert_eq!(get(c, Some(&owner), false).await.status(), 200);
        let r = get(c, Some(&member), false).await;
        assert_eq!(r.status(), 403);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "forbidden"
        );
        let r = get(c, None, false).await;
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        for (cred, status) in [(None, 401), (Some(member.as_str()), 403)] {
            let r = get(c, cred, true).await;
            assert_eq!(r.status(), status);
            assert!(r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"));
            assert!(!r.text().await.unwrap().contains("hello from the app"));
        }
    }
    let before = app.seen_at("/v").len();

    assert_eq!(set_visibility(&d, p, "internal").await.status(), 200);
    for c in clients {
        assert_eq!(get(c, Some(&member), false).await.status(), 200);
        assert_eq!(get(c, Some(TOKEN), false).await.status(), 200);
        assert_eq!(get(c, None, false).await.status(), 401);
        let elsewhere = jwt("member", "other-ws", 600);
        assert_eq!(get(c, Some(&elsewhere), false).await.status(), 401);
    }

    assert_eq!(set_visibility(&d, p, "public").await.status(), 200);
    for c in clients {
        assert_eq!(get(c, None, false).await.status(), 200);
        assert_eq!(get(c, Some("a-bad-credential"), false).await.status(), 200);
    }

    assert_eq!(set_visibility(&d, p, "none").await.status(), 200);
    for c in clients {
        let r = get(c, Some(TOKEN), false).await;
        assert_eq!(r.status(), 502);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "port_not_available"
        );
        let r = get(c, Some(TOKEN), true).await;
        assert_eq!(r.status(), 502);
        assert!(r.text().await.unwrap().contains("not available"));
    }
    assert_eq!(
        app.seen_at("/v").len(),
        before + 8,
        "refused requests never reached the app"
    );
}

#[tokio::test]
async fn nothing_listening_is_502_with_a_page_for_people() {
    let d = TestDaemon::start();
    let r = d.req(Method::GET, "/proxy/9/").send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "port_not_available"
    );
    let r = d
        .http
        .get(d.url("/proxy/9/"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
}

#[tokio::test]
async fn server_sent_events_arrive_one_by_one() {
    let d = TestDaemon::start();
    let app = upstream::start("127.0.0.1:0").await;
    proxied(&d, &app, "public").await;
    let mut r = d
        .http
        .get(d.url(&format!("/proxy/{}/sse", app.port())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    for i in 1..=3 {
        // The app sends event i+1 only after the test has read event i.
        let mut got = String::new();
        while !got.ends_with("\n\n") {
            let chunk = tokio::time::timeout(Duration::from_secs(10), r.chunk())
                .await
                .expect("the event arrives before the next is sent")
                .unwrap()
                .unwrap();
            got.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        assert_eq!(got, format!("data: event {i}\n\n"));
        app.sse_next.notify_one();
    }
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let d = TestDaemon::start();
    let app = upstream::start("127.0.0.1:0").await;
    proxied(&d, &app, "private").await;
    let mut req = format!(
        "ws://{}/proxy/{}/ws?access_token={TOKEN}",
        d.addr,
        app.port()
    )
    .into_client_request()
    .unwrap();
    req.headers_mut()
        .insert("cookie", "theme=dark".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    for msg in [
        Message::Text("hello".into()),
        Message::Binary(vec![0u8, 1, 2, 255].into()),
    ] {
        ws.send(msg.clone()).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
    }
    ws.close(None).await.unwrap();
    let seen = app.seen_at("/ws");
    assert_eq!(seen[0].target, "/ws", "access_token removed");
    assert_eq!(seen[0].header("cookie"), Some("theme=dark"));
    assert_eq!(seen[0].header("upgrade"), Some("websocket"));

    // Without a credential the upgrade is refused before reaching the app.
    let req = format!("ws://{}/proxy/{}/ws", d.addr, app.port());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(app.seen_at("/ws").len(), 1);
}

#[tokio::test]
async fn chunked_bodies_pass_both_ways() {
    let d = TestDaemon::start();
    let app = upstream::start("127.0.0.1:0").await;
    proxied(&d, &app, "public").await;
    let p = app.port();
    let resp = raw(
        &d.addr,
        format!(
            "POST /proxy/{p}/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let decoded: String = body
        .split("\r\n")
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(decoded, "hello, world");
    let seen = app.seen_at("/echo");
    assert_eq!(seen[0].header("transfer-encoding"), Some("chunked"));
}

/// Reads one response (a Content-Length or a chunked body): (head, body).
async fn response(s: &mut tokio::net::TcpStream) -> (String, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Reads until `done` says where what is wanted ends.
    let mut until = async |got: &mut Vec<u8>, done: &dyn Fn(&[u8]) -> Option<usize>| loop {
        if let Some(end) = done(got) {
            return end;
        }
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(got));
        got.extend_from_slice(&buf[..n]);
    };
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let head_end = until(&mut got, &|g| Some(find(g, b"\r\n\r\n")? + 4)).await;
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let body = match head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        Some(len) => {
            let end = head_end + len.trim().parse::<usize>().unwrap();
            until(&mut got, &|g| (g.len() >= end).then_some(end)).await;
            got[head_end..end].to_vec()
        }
        None => {
            assert!(head.contains("transfer-encoding: chunked"), "{head}");
            let end = until(&mut got, &|g| {
                Some(find(&g[head_end..], b"0\r\n\r\n")? + head_end + 5)
            })
            .await;
            let mut body = Vec::new();
            let mut rest = &got[head_end..end];
            loop {
                let line = find(rest, b"\r\n").unwrap();
                let n =
                    usize::from_str_radix(std::str::from_utf8(&rest[..line]).unwrap(), 16).unwrap();
                if n == 0 {
                    break body;
                }
                body.extend_from_slice(&rest[line + 2..line + 2 + n]);
                rest = &rest[line + 2 + n + 2..];
            }
        }
    };
    (head, String::from_utf8(body).unwrap())
}

/// Asserts a 400 with the contract's error `code`, then that the server closes.
async fn refused_and_closed(s: &mut tokio::net::TcpStream, code: &str) {
    let (head, body) = response(s).await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], code, "{body}");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("the connection closes after the refusal")
        .unwrap();
    assert!(
        rest.is_empty(),
        "nothing after the refusal: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test]
async fn request_smuggling_is_400_and_never_reaches_the_app() {
    let d = TestDaemon::start();
    let app = upstream::start("127.0.0.1:0").await;
    proxied(&d, &app, "public").await;
    let p = app.port();
    let connect = || tokio::net::TcpStream::connect(&d.addr);
    let smuggle = |first: &str| {
        format!(
            "POST {first} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /proxy/{p}/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        )
    };

    // The first request of a connection, in the path form.
    let mut s = connect().await.unwrap();
    s.write_all(smuggle(&format!("/proxy/{p}/a")).as_bytes())
        .await
        .unwrap();
    refused_and_closed(&mut s, "ambiguous_framing").await;

    // The second request of a keep-alive connection, in the host form.
    let mut s = connect().await.unwrap();
    s.write_all(format!("GET /first HTTP/1.1\r\nHost: {p}-ws.example\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (head, body) = response(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, "hello from the app");
    s.write_all(
        smuggle("/b")
            .replace("Host: x", &format!("Host: {p}-ws.example"))
            .as_bytes(),
    )
    .await
    .unwrap();
    refused_and_closed(&mut s, "ambiguous_framing").await;

    // After an upgrade the daemon refused (no credential), the connection
    // is still HTTP and still checked.
    let mut s = connect().await.unwrap();
    s.write_all(
        format!(
            "GET /api/v1/ports/{p}/tunnel HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (head, _) = response(&mut s).await;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    s.write_all(smuggle(&format!("/proxy/{p}/c")).as_bytes())
        .await
        .unwrap();
    refused_and_closed(&mut s, "ambiguous_framing").await;

    // Lengths that differ, and codings the proxy cannot pass on.
    for (framing, code) in [
        (
            "Content-Length: 3\r\nContent-Length: 4",
            "ambiguous_framing",
        ),
        ("Transfer-Encoding: gzip, chunked", "invalid_framing"),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            "invalid_framing",
        ),
    ] {
        let mut s = connect().await.unwrap();
        s.write_all(
            format!("POST /proxy/{p}/d HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n0\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        refused_and_closed(&mut s, code).await;
    }

    // The app saw the one good request and nothing else.
    let seen: Vec<String> = app
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.header("user-agent") != Some("workspaced-probe"))
        .map(|s| s.target.clone())
        .collect();
    assert_eq!(seen, ["/first"]);
}

#[tokio::test]
async fn an_upstream_that_hangs_is_504_and_one_that_breaks_is_502() {
    let d = TestDaemon::builder()
        .env("WORKSPACED_UPSTREAM_TIMEOUT", "1s")
        .arg("default-visibility", "public")
        .start();
    let (hang, _h) = upstream::hanging().await;
    let (mid, _m) = upstream::closing_mid_body().await;
    let (early, _e) = upstream::raw_server(|mut s| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
    })
    .await;
    wait_listening(&d, hang).await;
    wait_listening(&d, mid).await;
    wait_listening(&d, early).await;

    // On a kept connection and on new ones (see `fresh`).
    for c in [&d.http, &d.fresh] {
        let started = std::time::Instant::now();
        let r = c
            .get(d.url(&format!("/proxy/{hang}/")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 504);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "upstream_timeout"
        );
        assert!(started.elapsed() < Duration::from_secs(8));

        let r = c
            .get(d.url(&format!("/proxy/{mid}/")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.bytes().await.is_err(),
            "a body cut short is an error, not a short success"
        );

        // The daemon goes on serving.
        let r = c.get(d.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = c
            .get(d.url(&format!("/proxy/{early}/")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 502, "closed without an answer");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "upstream_failed"
        );
    }
}

/// The daemon's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_gibibyte_streams_both_ways_in_flat_memory() {
    const GIB: u64 = 1 << 30;
    const BOUND_KIB: u64 = 160 * 1024;
    let _pace = integration_tests::throughput_lock().await;
    let d = TestDaemon::start();
    let app = upstream::start("127.0.0.1:0").await;
    proxied(&d, &app, "public").await;
    let p = app.port();
    let pid = d.pid();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // Upload: 1 GiB with a Content-Length, counted by the app as it streams.
    let mut s = tokio::net::TcpStream::connect(&d.addr).await.unwrap();
    s.write_all(
        format!("POST /proxy/{p}/count HTTP/1.1\r\nHost: x\r\nContent-Length: {GIB}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let chunk = vec![b'u'; 1 << 20];
    for _ in 0..1024 {
        s.write_all(&chunk).await.unwrap();
    }
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(&format!("\r\n{GIB}\r\n")), "{resp}");

    // Download: 1 GiB read as it comes.
    let mut s = tokio::net::TcpStream::connect(&d.addr).await.unwrap();
    s.write_all(
        format!("GET /proxy/{p}/download?n={GIB} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    assert!(total > GIB, "headers and 1 GiB of body, got {total}");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        peak < BOUND_KIB,
        "the daemon's RSS peaked at {peak} KiB while 2 GiB passed"
    );
}

/// Reads one request head from `s` into `buf` and returns it (lowercased);
/// `None` when the peer closed. What follows the head stays in `buf`.
async fn request_head(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).to_ascii_lowercase();
            buf.drain(..i + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads a response head only (the answer to HEAD, or a 204).
async fn head_only(s: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let head = request_head(s, &mut buf).await.expect("a response head");
    assert!(buf.is_empty(), "no body after {head}: {buf:?}");
    head
}

#[tokio::test]
async fn one_connection_carries_pipelined_uploads_and_daemon_routes() {
    let d = TestDaemon::start();
    let app = upstream::start("127.0.0.1:0").await;
    proxied(&d, &app, "private").await;
    let p = app.port();
    let host = &d.addr;
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
    };
    let mut s = tokio::net::TcpStream::connect(&d.addr).await.unwrap();

    // Two requests in one write are answered in order.
    let two = get(&format!("/proxy/{p}/one")) + &get(&format!("/proxy/{p}/two"));
    s.write_all(two.as_bytes()).await.unwrap();
    for _ in 0..2 {
        let (head, body) = response(&mut s).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(body, "hello from the app");
    }
    // A small upload arrives whole.
    let post = format!(
        "POST /proxy/{p}/count HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 11\r\n\r\nhello world"
    );
    s.write_all(post.as_bytes()).await.unwrap();
    assert_eq!(response(&mut s).await.1, "11");
    // The app saw the three on one kept connection, without the credential.
    let seen: Vec<_> = ["/one", "/two", "/count"]
        .iter()
        .map(|path| app.seen_at(path).pop().expect("seen"))
        .collect();
    assert!(seen.iter().all(|r| r.peer == seen[0].peer), "{seen:?}");
    assert!(seen.iter().all(|r| r.header("authorization").is_none()));

    // The daemon's own routes on the same connection, then the app again.
    s.write_all(get("/api/v1/ports").as_bytes()).await.unwrap();
    let (head, body) = response(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(body.contains(&format!("\"port\":{p}")), "{body}");
    s.write_all(get(&format!("/proxy/{p}/three")).as_bytes())
        .await
        .unwrap();
    assert_eq!(response(&mut s).await.1, "hello from the app");
    // Without the credential: the sign-in refusal, and the connection goes on.
    let anonymous = format!("GET /proxy/{p}/four HTTP/1.1\r\nHost: {host}\r\n\r\n");
    s.write_all(anonymous.as_bytes()).await.unwrap();
    assert!(response(&mut s).await.0.starts_with("http/1.1 401"));
    assert!(app.seen_at("/four").is_empty());

    // A request without Host, on either path, reaches the app with the
    // address it was reached at.
    let no_host =
        format!("GET /proxy/{p}/no-host HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    s.write_all(no_host.as_bytes()).await.unwrap();
    assert_eq!(response(&mut s).await.1, "hello from the app");
    let mut fresh = tokio::net::TcpStream::connect(&d.addr).await.unwrap();
    fresh.write_all(no_host.as_bytes()).await.unwrap();
    assert_eq!(response(&mut fresh).await.1, "hello from the app");
    let seen = app.seen_at("/no-host");
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.header("host"), Some(format!("127.0.0.1:{p}").as_str()));
    }
}

#[tokio::test]
async fn an_app_that_closes_its_kept_connection_gets_a_new_one() {
    let d = TestDaemon::builder()
        .arg("default-visibility", "public")
        .start();
    // Answers one request per connection and closes it, as a server does
    // whose keep-alive timeout has passed.
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (p, _server) = upstream::raw_server({
        let requests = requests.clone();
        move |mut s| {
            let requests = requests.clone();
            async move {
                let mut buf = Vec::new();
                let Some(head) = request_head(&mut s, &mut buf).await else {
                    return;
                };
                requests
                    .lock()
                    .unwrap()
                    .push(head.lines().next().unwrap_or("").to_owned());
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
        }
    })
    .await;
    wait_listening(&d, p).await;
    let mut s = tokio::net::TcpStream::connect(&d.addr).await.unwrap();
    for (method, path) in [("GET", "/a"), ("POST", "/b"), ("GET", "/c")] {
        let req =
            format!("{method} /proxy/{p}{path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let (head, body) = response(&mut s).await;
        assert!(head.starts_with("http/1.1 200"), "{method} {path}: {head}");
        assert_eq!(body, "ok");
    }
    let seen = requests.lock().unwrap().clone();
    for want in ["get /a http/1.1", "post /b http/1.1", "get /c http/1.1"] {
        assert_eq!(seen.iter().filter(|r| *r == want).count(), 1, "{seen:?}");
    }
}

#[tokio::test]
async fn answers_without_a_length_head_answers_and_interim_answers_keep_the_connection() {
    let d = TestDaemon::builder()
        .arg("default-visibility", "public")
        .start();
    let (p, _server) = upstream::raw_server(|mut s| async move {
        let mut buf = Vec::new();
        while let Some(head) = request_head(&mut s, &mut buf).await {
            let answer: &[u8] = if head.starts_with("get /until-close ") {
                // The body ends when the connection does.
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil ")
                    .await;
                let _ = s.write_all(b"the end").await;
                return;
            } else if head.starts_with("get /garbage ") {
                b"SPDY/9 200 OK\r\n\r\n"
            } else if head.starts_with("head ") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
            } else {
                b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 204 No Content\r\nx-after-hints: 1\r\n\r\n"
            };
            if s.write_all(answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    wait_listening(&d, p).await;
    let mut s = tokio::net::TcpStream::connect(&d.addr).await.unwrap();
    let send =
        |method: &str, path: &str| format!("{method} /proxy/{p}{path} HTTP/1.1\r\nHost: x\r\n\r\n");
    for _ in 0..2 {
        s.write_all(send("GET", "/until-close").as_bytes())
            .await
            .unwrap();
        let (head, body) = response(&mut s).await;
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        assert_eq!(body, "until the end");

        s.write_all(send("HEAD", "/x").as_bytes()).await.unwrap();
        let head = head_only(&mut s).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-length: 5"), "{head}");

        s.write_all(send("GET", "/no-content").as_bytes())
            .await
            .unwrap();
        let head = head_only(&mut s).await;
        assert!(
            head.starts_with("http/1.1 204"),
            "interim answer skipped: {head}"
        );
        assert!(head.contains("x-after-hints: 1"), "{head}");

        // An answer that is not HTTP is the app's failure, told as such.
        s.write_all(send("GET", "/garbage").as_bytes())
            .await
            .unwrap();
        let (head, body) = response(&mut s).await;
        assert!(head.starts_with("http/1.1 502"), "{head}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "upstream_failed", "{body}");
    }
}

/// Which of the proxy's two paths serves a request: a fresh connection is
/// the fast lane's; one that served a daemon route first is hyper's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    Fast,
    General,
}

/// A connection whose next request `lane` serves.
async fn connection(d: &TestDaemon, lane: Lane) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(&d.addr).await.unwrap();
    if lane == Lane::General {
        let healthz = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", d.addr);
        s.write_all(healthz.as_bytes()).await.unwrap();
        let (head, _) = response(&mut s).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
    }
    s
}

/// Sends a request head (no body unless `body`) and reads the answer.
async fn exchange(s: &mut tokio::net::TcpStream, head: &str, body: &str) -> (String, String) {
    s.write_all(format!("{head}\r\n{body}").as_bytes())
        .await
        .unwrap();
    response(s).await
}

/// The session id a 303 sets as `workspaced_session`.
fn session_of(r: &reqwest::Response) -> String {
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers()["set-cookie"].to_str().unwrap();
    let pair = set.split(';').next().unwrap();
    pair.strip_prefix("workspaced_session=")
        .unwrap_or_else(|| panic!("a session cookie: {set}"))
        .to_owned()
}

fn no_redirect() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A browser's session on the daemon's own host, as a page load with
/// `access_token` at a private port gets it.
async fn browser_session(d: &TestDaemon, p: u16) -> String {
    let r = no_redirect()
        .get(d.url(&format!("/proxy/{p}/?access_token={TOKEN}")))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    session_of(&r)
}

/// Opens a host-routed port with a ticket: the port session's id.
async fn port_session(d: &TestDaemon, p: u16) -> String {
    let (status, body) = d
        .post_json(&format!("/api/v1/ports/{p}/open"), serde_json::json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let url = body["url"].as_str().unwrap();
    let ticket = url.split_once("workspaced_ticket=").unwrap().1;
    let r = no_redirect()
        .get(d.url(&format!("/?workspaced_ticket={ticket}")))
        .header("host", format!("{p}-ws-test.example.dev"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    session_of(&r)
}

#[tokio::test]
async fn the_app_sees_its_own_authorization_and_cookies_in_order_and_nothing_of_the_daemons() {
    let d = TestDaemon::builder()
        .arg("port-url-template", "http://${PORT}-ws-test.example.dev/")
        .start();
    let app = upstream::start("127.0.0.1:0").await;
    proxied(&d, &app, "private").await;
    let p = app.port();
    let owner_jwt = jwt("owner", "ws-test", 600);
    let member_jwt = jwt("member", "ws-test", 600);
    // A browser's session on the daemon's host (path form), and a port
    // session from a ticket (host form).
    let browser = browser_session(&d, p).await;
    let port = port_session(&d, p).await;

    let daemons = [
        format!("Bearer {TOKEN}"),
        format!("Bearer {owner_jwt}"),
        format!("Bearer {member_jwt}"),
    ];
    let apps = ["Basic YXBwOnNlY3JldA==", "Bearer the-apps-own-token"];
    let all: Vec<&str> = daemons
        .iter()
        .map(String::as_str)
        .chain(apps.iter().copied())
        .collect();
    // Every order of two and of three of them.
    let mut orders: Vec<Vec<&str>> = Vec::new();
    for a in &all {
        for b in all.iter().filter(|b| b != &a) {
            orders.push(vec![a, b]);
            for c in all.iter().filter(|c| c != &a && c != &b) {
                orders.push(vec![a, b, c]);
            }
        }
    }
    let secrets = [
        TOKEN,
        owner_jwt.as_str(),
        member_jwt.as_str(),
        browser.as_str(),
        port.as_str(),
        "workspaced_session",
        "workspaced_ticket",
        "ticket-secret",
        "access_token",
    ];
    let mut n = 0;
    for visibility in ["private", "internal", "public"] {
        assert_eq!(set_visibility(&d, p, visibility).await.status(), 200);
        for lane in [Lane::Fast, Lane::General] {
            // The path form with the browser's session, the host form with the port's.
            for (prefix, host, session) in [
                (format!("/proxy/{p}"), d.addr.clone(), &browser),
                (String::new(), format!("{p}-ws-test.example.dev"), &port),
            ] {
                let mut general = connection(&d, Lane::General).await;
                for order in &orders {
                    n += 1;
                    let mut head = format!(
                        "GET {prefix}/mix/{n}?q=1 HTTP/1.1\r\nHost: {host}\r\nCookie: app1=a; workspaced_session={session}; app2=b\r\n"
                    );
                    for a in order {
                        head.push_str(&format!("Authorization: {a}\r\n"));
                    }
                    head.push_str(
                        "Cookie: workspaced_ticket=ticket-secret\r\nX-App: 1\r\nCookie: app3=c\r\n",
                    );
                    let (answer, body) = match lane {
                        Lane::Fast => {
                            let mut s = connection(&d, Lane::Fast).await;
                            exchange(&mut s, &head, "").await
                        }
                        Lane::General => exchange(&mut general, &head, "").await,
                    };
                    let what = format!("{visibility} {lane:?} {host} {order:?}");
                    assert!(answer.starts_with("http/1.1 200"), "{what}: {answer}");
                    assert_eq!(body, "hello from the app", "{what}");
                    let seen = app.seen_at(&format!("/mix/{n}"));
                    assert_eq!(seen.len(), 1, "{what}");
                    let seen = &seen[0];
                    let theirs: Vec<&str> =
                        order.iter().copied().filter(|a| apps.contains(a)).collect();
                    assert_eq!(seen.all("authorization"), theirs, "{what}");
                    assert_eq!(seen.all("cookie"), ["app1=a; app2=b", "app3=c"], "{what}");
                    assert_eq!(seen.all("x-app"), ["1"], "{what}");
                    assert_eq!(seen.target, format!("/mix/{n}?q=1"), "{what}");
                    let everything = format!("{} {:?}", seen.target, seen.headers);
                    for secret in secrets {
                        assert!(
                            !everything.contains(secret),
                            "{what}: the app saw {secret}: {everything}"
                        );
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn a_port_session_ends_with_its_port_and_after_its_ttl() {
    let ttl = Duration::from_secs(3);
    let d = TestDaemon::builder()
        .arg("port-url-template", "http://${PORT}-ws-test.example.dev/")
        .arg("session-ttl", "3s")
        .start();
    let app = upstream::start("127.0.0.1:0").await;
    proxied(&d, &app, "private").await;
    let p = app.port();
    // One request with the session, on each path: its status.
    let with = async |session: &str| -> Vec<u16> {
        let mut got = Vec::new();
        for lane in [Lane::Fast, Lane::General] {
            let mut s = connection(&d, lane).await;
            let (head, _) = exchange(
                &mut s,
                &format!(
                    "GET /s HTTP/1.1\r\nHost: {p}-ws-test.example.dev\r\nCookie: workspaced_session={session}\r\n"
                ),
                "",
            )
            .await;
            got.push(head[9..12].parse().unwrap());
        }
        got
    };

    // The port set to none and back: the session has ended.
    let session = port_session(&d, p).await;
    assert_eq!(with(&session).await, [200, 200]);
    assert_eq!(set_visibility(&d, p, "none").await.status(), 200);
    assert_eq!(set_visibility(&d, p, "private").await.status(), 200);
    assert_eq!(
        with(&session).await,
        [401, 401],
        "ended when the port went none"
    );
    // A session made for a public port ends when the port becomes private.
    assert_eq!(set_visibility(&d, p, "public").await.status(), 200);
    let public = port_session(&d, p).await;
    assert_eq!(set_visibility(&d, p, "private").await.status(), 200);
    assert_eq!(with(&public).await, [401, 401], "ended below public");

    // The port closes and a server listens there again: ended too.
    let session = port_session(&d, p).await;
    assert_eq!(with(&session).await, [200, 200]);
    drop(app);
    crate::ports::wait_ports(&d, "the port closed", |l| !l.iter().any(|e| e["port"] == p)).await;
    let app = upstream::start(&format!("127.0.0.1:{p}")).await;
    wait_listening(&d, p).await;
    assert_eq!(
        with(&session).await,
        [401, 401],
        "ended when the port closed"
    );

    // `session_ttl` after its last use; each use keeps it for another ttl.
    let session = port_session(&d, p).await;
    let start = tokio::time::Instant::now();
    assert_eq!(with(&session).await, [200, 200]);
    tokio::time::sleep(ttl / 2).await;
    assert_eq!(with(&session).await, [200, 200]);
    tokio::time::sleep(ttl / 2).await;
    assert!(start.elapsed() >= ttl);
    assert_eq!(with(&session).await, [200, 200], "kept by its last use");
    tokio::time::sleep(ttl).await;
    assert_eq!(
        with(&session).await,
        [401, 401],
        "ended a ttl after its last use"
    );
    assert_eq!(
        app.seen_at("/s").len(),
        6,
        "only the sessions alive got through"
    );
}

#[tokio::test]
async fn cookie_credentialed_posts_and_upgrades_come_only_from_the_ports_own_origin() {
    let d = TestDaemon::builder()
        .arg("port-url-template", "http://${PORT}-ws-test.example.dev/")
        .start();
    let app = upstream::start("127.0.0.1:0").await;
    proxied(&d, &app, "private").await;
    let p = app.port();
    let host = format!("{p}-ws-test.example.dev");
    let session = port_session(&d, p).await;
    let cookie = format!("workspaced_session={session}");
    let browser = browser_session(&d, p).await;
    let upgrade = "Connection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let foreign = [
        "Origin: http://4000-ws-test.example.dev\r\n",
        "Origin: https://3000-other.example.dev\r\n",
        "Origin: null\r\n",
        "Sec-Fetch-Site: cross-site\r\n",
        "Sec-Fetch-Site: same-site\r\n",
    ];
    for lane in [Lane::Fast, Lane::General] {
        for from in foreign {
            for (method, extra, body) in [
                ("POST", "Content-Length: 2\r\n", "{}"),
                ("GET", upgrade, ""),
                ("DELETE", "", ""),
            ] {
                let mut s = connection(&d, lane).await;
                let (head, answer) = exchange(
                    &mut s,
                    &format!(
                        "{method} /o HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n{from}{extra}"
                    ),
                    body,
                )
                .await;
                let what = format!("{lane:?} {method} {from}");
                assert!(head.starts_with("http/1.1 403"), "{what}: {head}");
                let v: Value = serde_json::from_str(&answer).unwrap();
                assert_eq!(v["error"]["code"], "origin_not_allowed", "{what}");
            }
        }
        // The path form: a browser session on the daemon's own origin.
        let mut s = connection(&d, lane).await;
        let (head, answer) = exchange(
            &mut s,
            &format!(
                "POST /proxy/{p}/o HTTP/1.1\r\nHost: {}\r\nCookie: workspaced_session={browser}\r\nOrigin: http://{host}\r\nContent-Length: 0\r\n",
                d.addr
            ),
            "",
        )
        .await;
        assert!(head.starts_with("http/1.1 403"), "{head}");
        assert!(answer.contains("origin_not_allowed"), "{answer}");
    }
    assert!(
        app.seen_at("/o").is_empty(),
        "refused before reaching the app"
    );

    // From the port's own origin: the app gets them.
    for lane in [Lane::Fast, Lane::General] {
        let mut s = connection(&d, lane).await;
        let (head, answer) = exchange(
            &mut s,
            &format!("POST /count HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nOrigin: http://{host}\r\nContent-Length: 5\r\n"),
            "hello",
        )
        .await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(answer, "5");
        // The app's own GETs, wherever its links came from.
        for from in foreign {
            let (head, answer) = exchange(
                &mut s,
                &format!("GET /page HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n{from}"),
                "",
            )
            .await;
            assert!(head.starts_with("http/1.1 200"), "{lane:?} {from}: {head}");
            assert_eq!(answer, "hello from the app");
        }
        let mut s = connection(&d, lane).await;
        let (head, _) = exchange(
            &mut s,
            &format!(
                "POST /proxy/{p}/count HTTP/1.1\r\nHost: {}\r\nCookie: workspaced_session={browser}\r\nOrigin: http://{}\r\nContent-Length: 0\r\n",
                d.addr, d.addr
            ),
            "",
        )
        .await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
    }
    assert_eq!(app.seen_at("/count").len(), 4);
    assert_eq!(app.seen_at("/page").len(), 2 * foreign.len());

    // A WebSocket from the port's own origin opens and echoes.
    let mut req = format!("ws://{}/ws", d.addr).into_client_request().unwrap();
    let h = req.headers_mut();
    h.insert("host", host.parse().unwrap());
    h.insert("cookie", cookie.parse().unwrap());
    h.insert("origin", format!("http://{host}").parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::Text("same origin".into())).await.unwrap();
    let back = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(back, Message::Text("same origin".into()));
    assert_eq!(app.seen_at("/ws").len(), 1);
}

/// A port session does not outlive the credential that opened its ticket:
/// opened with a JWT, it ends at the JWT's `exp`, as a browser session does.
#[tokio::test]
async fn a_port_session_ends_when_the_jwt_that_opened_it_expires() {
    let d = TestDaemon::builder()
        .arg("port-url-template", "http://${PORT}-ws-test.example.dev/")
        .start();
    let app = upstream::start("127.0.0.1:0").await;
    proxied(&d, &app, "private").await;
    let p = app.port();
    let ttl = 4;
    let token = jwt("owner", "ws-test", ttl);
    let opened = std::time::Instant::now();
    let body: Value = reqwest::Client::new()
        .post(d.url(&format!("/api/v1/ports/{p}/open")))
        .bearer_auth(&token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = body["url"].as_str().unwrap();
    let ticket = url.split_once("workspaced_ticket=").unwrap().1;
    let r = no_redirect()
        .get(d.url(&format!("/?workspaced_ticket={ticket}")))
        .header("host", format!("{p}-ws-test.example.dev"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    let session = session_of(&r);
    let status = async || {
        let r = no_redirect()
            .get(d.url("/s"))
            .header("host", format!("{p}-ws-test.example.dev"))
            .header("cookie", format!("workspaced_session={session}"))
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    };
    assert_eq!(status().await, 200);
    integration_tests::until(
        Duration::from_secs(ttl as u64 + 10),
        "the session to end",
        async || (status().await == 401).then_some(()),
    )
    .await;
    // The JWT's exp is whole seconds: it passed within a second of ttl.
    assert!(
        opened.elapsed() >= Duration::from_secs(ttl as u64 - 1),
        "ended by the JWT's exp, not before: {:?}",
        opened.elapsed()
    );
}
