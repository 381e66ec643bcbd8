//! Credentials and roles on every route.

use integration_tests::{jwt, TestDaemon, TOKEN};
use reqwest::{Method, StatusCode};

fn concrete(path: &str) -> String {
    path.replace("{id}", "no-such-id")
        .replace("{port}", "4999")
        .replace("{*path}", "x")
}

#[tokio::test]
async fn every_api_route_checks_the_owner_credential() {
    let d = TestDaemon::start();
    let routes = workspaced::http::api_route_list();
    assert!(routes.len() >= 6, "the route list is the router's");
    let member = jwt("member", "ws-test", 600);
    let owner = jwt("owner", "ws-test", 600);
    let expired = jwt("owner", "ws-test", -3600);
    let other_ws = jwt("owner", "another-workspace", 600);
    for (method, template) in routes {
        let path = concrete(template);
        let send = |cred: Option<String>| {
            let mut r = d.http.request(method.clone(), d.url(&path));
            if let Some(c) = cred {
                r = r.bearer_auth(c);
            }
            if method == Method::POST || method == Method::PUT {
                r = r.header("content-type", "application/json").body("{}");
            }
            r.send()
        };
        let cases = [
            (None, StatusCode::UNAUTHORIZED),
            (Some("wrong-token".to_owned()), StatusCode::UNAUTHORIZED),
            (Some(expired.clone()), StatusCode::UNAUTHORIZED),
            (Some(other_ws.clone()), StatusCode::UNAUTHORIZED),
            (Some(member.clone()), StatusCode::FORBIDDEN),
        ];
        for (cred, want) in cases {
            let r = send(cred.clone()).await.unwrap();
            assert_eq!(r.status(), want, "{method} {template} with {cred:?}");
            if want == StatusCode::UNAUTHORIZED {
                assert_eq!(r.headers()["www-authenticate"], "Bearer");
            }
            let body: serde_json::Value = r.json().await.unwrap();
            assert!(body["error"]["code"].is_string(), "{body}");
            assert!(body["error"]["message"].is_string(), "{body}");
        }
        for cred in [TOKEN.to_owned(), owner.clone()] {
            let status = send(Some(cred)).await.unwrap().status();
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{method} {template} refused the owner: {status}"
            );
        }
    }
}

#[tokio::test]
async fn probes_ignore_credentials_and_unknown_routes_are_404() {
    let d = TestDaemon::start();
    for path in ["/healthz", "/readyz"] {
        for cred in [None, Some("bad")] {
            let mut r = d.http.get(d.url(path));
            if let Some(c) = cred {
                r = r.bearer_auth(c);
            }
            assert_eq!(r.send().await.unwrap().status(), 200, "{path}");
        }
    }
    let body: serde_json::Value = d
        .http
        .get(d.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body, serde_json::json!({"status": "ok"}));
    for cred in [None, Some(TOKEN)] {
        let mut r = d.http.get(d.url("/api/v1/nothing-here"));
        if let Some(c) = cred {
            r = r.bearer_auth(c);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 404);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn a_page_load_token_becomes_a_cookie_and_is_never_logged() {
    let d = TestDaemon::start();
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .get(d.url(&format!("/?x=1&access_token={TOKEN}&y=2")))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/?x=1&y=2");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("workspaced_session="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"));
    let session = cookie.split(';').next().unwrap().to_owned();

    // The cookie alone now opens the console and the API.
    let r = no_redirect
        .get(d.url("/"))
        .header("accept", "text/html")
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = no_redirect
        .get(d.url("/api/v1/terminals"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Behind TLS the cookie is Secure.
    let r = no_redirect
        .get(d.url(&format!("/?access_token={TOKEN}")))
        .header("accept", "text/html")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Secure"));

    // Outside a page load or an upgrade the query parameter is ignored.
    let r = no_redirect
        .get(d.url(&format!("/api/v1/terminals?access_token={TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A page load without a credential asks for the token, never the console.
    let r = no_redirect
        .get(d.url("/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("access_token") && page.contains("token"),
        "{page}"
    );
    let r = no_redirect
        .get(d.url(&format!("/?access_token={}", jwt("member", "ws-test", 600))))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A WebSocket upgrade may carry the token in the query.
    let ws = d
        .ws_with(&format!("/api/v1/events?access_token={TOKEN}"), None)
        .await;
    assert!(ws.is_ok());

    let log = d.log.text();
    assert!(log.contains("answered"), "debug logs are on: {log}");
    assert!(
        !log.contains(TOKEN),
        "the token leaked into the log:\n{log}"
    );
}

#[tokio::test]
async fn a_generated_token_is_printed_once_and_stored_privately() {
    use std::os::unix::fs::PermissionsExt;
    let d = TestDaemon::builder().generated_token().start();
    let url = format!("http://{}/?access_token={}", d.addr, d.token);
    assert_eq!(d.log.text().matches(&url).count(), 1, "{}", d.log.text());
    let meta = std::fs::metadata(d.state.path().join("state/token")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(d.get_json("/api/v1/terminals").await, serde_json::json!([]));
}
