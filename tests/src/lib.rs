//! Fixtures for the integration tests: the real `workspaced` binary started
//! on `127.0.0.1:0` in a temp workspace, with clients for HTTP and WebSocket.

pub mod tls;
pub mod upstream;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};

pub const TOKEN: &str = "test-owner-token-0123456789";
pub const JWT_SECRET: &str = "test-jwt-secret";

/// The daemon binary, built once per test run (a no-op when up to date).
pub fn daemon_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_daemon(None)).clone()
}

/// The target of the static daemon (no libc, no OpenSSL from the system),
/// the binary that runs in every other container of a workspace.
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-musl";

/// The static daemon binary, built once per test run (a no-op when up to date).
pub fn static_daemon_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_daemon(Some(STATIC_TARGET)))
        .clone()
}

/// `cargo build` of the daemon (for `target`, else the host), and its path.
fn build_daemon(target: Option<&str>) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "workspaced",
        "--bin",
        "workspaced",
    ]);
    if let Some(t) = target {
        cmd.args(["--target", t]);
    }
    let status = cmd.current_dir(&root).status().expect("run cargo build");
    assert!(status.success(), "building workspaced ({target:?}) failed");
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dir = if dir.is_absolute() {
        dir
    } else {
        root.join(dir)
    };
    match target {
        Some(t) => dir.join(t).join("debug/workspaced"),
        None => dir.join("debug/workspaced"),
    }
}

/// What the daemon wrote on stderr, shared with the thread that reads it.
#[derive(Default)]
pub struct Log {
    text: Mutex<String>,
    grew: Condvar,
}

impl Log {
    pub fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Waits until a line satisfies `f`, returning what `f` extracted.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&str) -> Option<T>,
    ) -> Option<T> {
        let deadline = std::time::Instant::now() + timeout;
        let mut text = self.text.lock().unwrap();
        loop {
            if let Some(v) = text.lines().find_map(&mut f) {
                return Some(v);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return None;
            }
            text = self.grew.wait_timeout(text, deadline - now).unwrap().0;
        }
    }
}

/// Builds a daemon with settings; `start` runs it.
pub struct Builder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    config: Option<String>,
    token: Option<String>,
    workspace: Option<tempfile::TempDir>,
    state: Option<tempfile::TempDir>,
    binary: Option<PathBuf>,
    launcher: Vec<String>,
    listen: String,
}

impl Builder {
    /// Runs this binary instead of the workspace's debug build.
    pub fn binary(mut self, path: PathBuf) -> Self {
        self.binary = Some(path);
        self
    }

    /// Starts the daemon through a command that ends by exec'ing its
    /// arguments (`unshare --mount sh -c '...; exec "$@"' sh`), so the
    /// daemon keeps the pid the test holds.
    pub fn launcher(mut self, argv: &[&str]) -> Self {
        self.launcher = argv.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Listens here instead of `127.0.0.1:0` (a restart on the same port).
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = addr.to_owned();
        self
    }

    /// A flag and its value: `.arg("max-terminals", "2")`.
    pub fn arg(mut self, flag: &str, value: &str) -> Self {
        self.args.push(format!("--{flag}"));
        self.args.push(value.to_owned());
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    /// The config file's text.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    /// Lets the daemon generate its token instead of being given one.
    pub fn generated_token(mut self) -> Self {
        self.token = None;
        self
    }

    /// Uses this directory as the workspace.
    pub fn workspace(mut self, dir: tempfile::TempDir) -> Self {
        self.workspace = Some(dir);
        self
    }

    /// Uses this directory for the state (e.g. a previous daemon's).
    pub fn state(mut self, dir: tempfile::TempDir) -> Self {
        self.state = Some(dir);
        self
    }

    pub fn start(self) -> TestDaemon {
        let workspace = self
            .workspace
            .unwrap_or_else(|| tempfile::tempdir().unwrap());
        let state = self.state.unwrap_or_else(|| tempfile::tempdir().unwrap());
        let secret = state.path().join("jwt-secret");
        std::fs::write(&secret, JWT_SECRET).unwrap();
        let binary = self.binary.clone().unwrap_or_else(daemon_binary);
        let mut cmd = match self.launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        cmd.arg("serve")
            .args(["--listen", &self.listen])
            .arg("--workspace")
            .arg(workspace.path())
            .args(["--name", "ws-test"])
            .arg("--state-dir")
            .arg(state.path().join("state"))
            .arg("--jwt-secret-file")
            .arg(&secret)
            .args(&self.args)
            .env_remove("WORKSPACED_TOKEN")
            .env("RUST_LOG", "debug")
            .env("SHELL", "/bin/bash")
            // Login shells must not run this machine's dotfiles (pyenv's
            // rehash there serialises shells on a lock and takes seconds).
            .env("HOME", state.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(t) = &self.token {
            cmd.env("WORKSPACED_TOKEN", t);
        }
        if let Some(toml) = &self.config {
            let f = state.path().join("workspaced.toml");
            std::fs::write(&f, toml).unwrap();
            cmd.arg("--config").arg(f);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start workspaced");
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().unwrap();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut t = l.text.lock().unwrap();
                t.push_str(&line);
                t.push('\n');
                l.grew.notify_all();
            }
        });
        let addr = log
            .wait_for(Duration::from_secs(20), |line| {
                let rest = &line[line.find("serving listen=")? + "serving listen=".len()..];
                Some(rest.split_whitespace().next()?.to_owned())
            })
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("workspaced did not start; its log:\n{}", log.text())
            });
        let token = self
            .token
            .clone()
            .unwrap_or_else(|| std::fs::read_to_string(state.path().join("state/token")).unwrap());
        TestDaemon {
            child: Some(child),
            addr,
            token,
            log,
            workspace,
            state,
            http: reqwest::Client::new(),
            fresh: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("an HTTP client"),
        }
    }
}

/// A running daemon; killed when dropped.
pub struct TestDaemon {
    child: Option<Child>,
    pub addr: String,
    pub token: String,
    pub log: Arc<Log>,
    pub workspace: tempfile::TempDir,
    pub state: tempfile::TempDir,
    pub http: reqwest::Client,
    /// A client that opens a new connection for every request. The daemon
    /// serves a connection's plain proxied requests in the proxy's fast lane
    /// until one needs the general path, which then keeps the connection:
    /// proxied requests from `fresh` take the lane, those from `http` after
    /// an API call usually the general path.
    pub fresh: reqwest::Client,
}

impl TestDaemon {
    pub fn builder() -> Builder {
        Builder {
            args: Vec::new(),
            env: Vec::new(),
            config: None,
            token: Some(TOKEN.to_owned()),
            workspace: None,
            state: None,
            binary: None,
            launcher: Vec::new(),
            listen: "127.0.0.1:0".to_owned(),
        }
    }

    pub fn start() -> TestDaemon {
        Self::builder().start()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn root(&self) -> &Path {
        self.workspace.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A request with the owner token as a Bearer header.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }

    /// Sends an owner request without a body: its status and its JSON body
    /// (`Null` when the body is not JSON).
    pub async fn call(&self, method: reqwest::Method, path: &str) -> (u16, serde_json::Value) {
        let r = self.req(method, path).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.req(reqwest::Method::GET, path).send().await.unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .req(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Opens a WebSocket with the owner token as a Bearer header.
    pub async fn ws(&self, path: &str) -> Ws {
        self.ws_with(path, Some(&self.token.clone()))
            .await
            .expect("websocket upgrade")
    }

    pub async fn ws_with(&self, path: &str, token: Option<&str>) -> Result<Ws, tungstenite::Error> {
        let mut req = format!("ws://{}{path}", self.addr)
            .into_client_request()
            .unwrap();
        if let Some(t) = token {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async_with_config(
            req,
            Some(
                tungstenite::protocol::WebSocketConfig::default()
                    .max_message_size(None)
                    .max_frame_size(None),
            ),
            true,
        )
        .await?;
        Ok(Ws { inner: ws })
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig).unwrap();
    }

    /// Waits for the daemon to exit on its own.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "workspaced did not exit in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A JWT for this workspace with a role, valid for `ttl_secs` (negative: expired).
    pub fn jwt(&self, role: &str, audience: &str, ttl_secs: i64) -> String {
        jwt(role, audience, ttl_secs)
    }
}

pub fn jwt(role: &str, audience: &str, ttl_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "someone", "role": role, "aud": audience, "exp": now + ttl_secs}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A WebSocket client with helpers for the terminal protocol.
pub struct Ws {
    pub inner: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

/// One frame as a test sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Text(serde_json::Value),
    Binary(Vec<u8>),
    Close(Option<u16>),
}

pub const WAIT: Duration = Duration::from_secs(15);

impl Ws {
    pub async fn send_text(&mut self, v: serde_json::Value) {
        self.inner
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_bytes(&mut self, b: &[u8]) {
        self.inner
            .send(Message::Binary(b.to_vec().into()))
            .await
            .unwrap();
    }

    /// The next frame (pings skipped); `Close(None)` when the stream ended.
    pub async fn next(&mut self) -> Frame {
        loop {
            let msg = tokio::time::timeout(WAIT, self.inner.next())
                .await
                .expect("a frame within the wait");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Frame::Text(serde_json::from_str(&t).unwrap())
                }
                Some(Ok(Message::Binary(b))) => return Frame::Binary(b.to_vec()),
                Some(Ok(Message::Close(c))) => return Frame::Close(c.map(|c| u16::from(c.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Frame::Close(None),
            }
        }
    }

    pub async fn next_json(&mut self) -> serde_json::Value {
        match self.next().await {
            Frame::Text(v) => v,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Collects output until `pred` holds on everything received, returning
    /// all binary bytes; text frames are kept in `texts`.
    pub async fn read_until(
        &mut self,
        texts: &mut Vec<serde_json::Value>,
        mut pred: impl FnMut(&[u8]) -> bool,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + 4 * WAIT;
        while !pred(&out) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out; got {:?}",
                String::from_utf8_lossy(&out)
            );
            match self.next().await {
                Frame::Binary(b) => out.extend_from_slice(&b),
                Frame::Text(v) => texts.push(v),
                Frame::Close(c) => panic!(
                    "closed ({c:?}) before the condition; got {:?}",
                    String::from_utf8_lossy(&out)
                ),
            }
        }
        out
    }
}

/// Held by tests that move data as fast as they can (gigabytes through the
/// proxy) or depend on keeping pace with such a stream, so that on a
/// two-core machine one does not starve the other into a timeout.
pub async fn throughput_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
pub async fn until<T>(timeout: Duration, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
