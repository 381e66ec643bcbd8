//! HTML answers for people: the token prompt and the console page.

use axum::extract::Path;
use axum::http::{header, StatusCode};

use super::ApiError;
use axum::response::{Html, IntoResponse, Response};

const LOGIN: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>workspaced: sign in</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>body{font:16px system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}
input{width:100%;padding:.5rem;font:inherit}button{margin-top:.75rem;padding:.5rem 1rem;font:inherit}</style>
</head><body><h1>This workspace needs a token</h1><p>{{REASON}}</p>
<form method="get"><label for="t">Access token</label>
<input id="t" name="access_token" type="password" autocomplete="off" autofocus>
<button type="submit">Open</button></form></body></html>"#;

/// The page that asks for the token (401) or says the role is not enough (403).
pub fn login(status: StatusCode) -> Response {
    let reason = if status == StatusCode::FORBIDDEN {
        "Your credential is valid, but only the workspace owner may open this page."
    } else {
        "Paste the workspace token, or open the link that <code>workspaced serve</code> printed."
    };
    challenge((status, Html(LOGIN.replace("{{REASON}}", reason))).into_response())
}

/// Every 401 says how to authenticate, pages for people included.
fn challenge(mut resp: Response) -> Response {
    if resp.status() == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    resp
}

/// The console's files, embedded from `editor-assets/console/` (the npm
/// dependencies are fetched by `build.rs`).
#[derive(rust_embed::Embed)]
#[folder = "../editor-assets/console/"]
#[include = "index.html"]
#[include = "app.js"]
#[include = "style.css"]
#[include = "node_modules/@xterm/xterm/lib/xterm.js"]
#[include = "node_modules/@xterm/xterm/css/xterm.css"]
#[include = "node_modules/@xterm/addon-fit/lib/addon-fit.js"]
struct Console;

fn embedded(path: &str) -> Response {
    match Console::get(path) {
        Some(file) => {
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            (
                [
                    (header::CONTENT_TYPE, mime.as_ref().to_owned()),
                    (header::CACHE_CONTROL, "no-cache".to_owned()),
                ],
                file.data.into_owned(),
            )
                .into_response()
        }
        None => ApiError::not_found(format!("console file {path:?}")).into_response(),
    }
}

/// The console at `/`.
pub async fn console() -> Response {
    embedded("index.html")
}

/// The console's scripts and styles at `/assets/{*path}`.
pub async fn asset(Path(path): Path<String>) -> Response {
    embedded(&path)
}

fn port_page(status: StatusCode, title: &str, text: &str) -> Response {
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>workspaced: {title}</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>body{{font:16px system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}</style>
</head><body><h1>{title}</h1><p>{text}</p></body></html>"#
    );
    challenge((status, Html(page)).into_response())
}

/// A proxied port with nothing listening, or with visibility `none` (502).
pub fn port_unavailable(port: u16) -> Response {
    port_page(
        StatusCode::BAD_GATEWAY,
        &format!("Port {port} is not available"),
        "Nothing in the workspace is listening on this port, or it is not exposed. Start the server, or change the port's visibility, then reload this page.",
    )
}

/// A page load refused at a private (owner) or internal (members) port.
pub fn port_refused(status: StatusCode, port: u16) -> Response {
    let text = if status == StatusCode::FORBIDDEN {
        "Your credential is valid, but this port is private: only the workspace owner may open it."
    } else {
        "This port is not public. Open it from the workspace (its link carries a one-time ticket), or sign in to the workspace first."
    };
    port_page(status, &format!("Port {port} needs a sign-in"), text)
}
