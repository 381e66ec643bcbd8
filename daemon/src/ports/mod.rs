//! Ports (PROTOCOL.md, "Ports"): the registry of every listening TCP port and
//! devfile endpoint with its visibility, and the detector that keeps it
//! current by asking the kernel four times a second.
//!
//! Why netlink `sock_diag` first: with a LISTEN filter the kernel walks only
//! its listening hash, where a read of `/proc/net/tcp{,6}` walks the whole
//! established hash, milliseconds of CPU per poll on a large machine
//! (measured in docs/benchmarks.md). `/proc` stays as the fallback for
//! sandboxes that refuse the netlink socket.

pub mod diag;

pub mod devfile;
pub mod owner;
pub mod procnet;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::Visibility;
use crate::events::{Event, EventBus};
use devfile::Endpoint;

/// How often the tables are read while the workspace is in use.
pub const POLL: Duration = Duration::from_millis(300);
/// How often while nobody uses the workspace: each read walks the kernel's
/// listening hash in cold caches, about a millisecond here, so a quiet
/// workspace reads less often, and still finds a server within a second.
pub const POLL_QUIET: Duration = Duration::from_millis(750);
/// Without activity for this long, the workspace is quiet.
pub const QUIET_AFTER: Duration = Duration::from_secs(60);

/// A port as the API shows it (PROTOCOL.md `Port`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortInfo {
    pub port: u16,
    pub protocol: &'static str,
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    pub name: Option<String>,
    pub source: &'static str,
    pub visibility: Visibility,
    pub url: String,
    pub http: Option<bool>,
}

/// What is listening on one port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listening {
    /// Every address a socket on this port is bound to, sorted.
    pub addrs: Vec<IpAddr>,
    pub pid: Option<u32>,
    pub process: Option<String>,
}

impl Listening {
    /// Where the daemon connects: loopback of the family bound, or the
    /// bound address itself when it is a specific one.
    pub fn upstream(&self, port: u16) -> Option<SocketAddr> {
        let pick = |a: &IpAddr| match a {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            other => *other,
        };
        // IPv4 first: a dual-stack `::` and a `0.0.0.0` both answer there.
        let best = self
            .addrs
            .iter()
            .find(|a| a.is_ipv4() && (a.is_loopback() || a.is_unspecified()))
            .or_else(|| {
                self.addrs
                    .iter()
                    .find(|a| a.is_loopback() || a.is_unspecified())
            })
            .or(self.addrs.first())?;
        Some(SocketAddr::new(pick(best), port))
    }
}

/// Fixed settings of the registry.
#[derive(Clone, Debug)]
pub struct Settings {
    pub max_visibility: Visibility,
    pub default_visibility: Visibility,
    pub ignore: Vec<u16>,
    /// The daemon's own port, never listed.
    pub own_port: u16,
    pub url_template: String,
}

#[derive(Debug, Default)]
struct State {
    listening: BTreeMap<u16, Listening>,
    declared: BTreeMap<u16, Endpoint>,
    /// Visibility chosen with PUT; kept when a server restarts on its port.
    chosen: HashMap<u16, Visibility>,
    http: HashMap<u16, bool>,
    /// Per port, how often it fell below private, internal and public (a
    /// close counts as falling below all three): a port session made for a
    /// level holds the count it was made at and ends when it moves.
    cuts: HashMap<u16, [u64; 3]>,
}

/// The index of `level` in [`State::cuts`]; `none` counts as private, the
/// least a session can be for.
fn cut_index(level: Visibility) -> usize {
    match level {
        Visibility::None | Visibility::Private => 0,
        Visibility::Internal => 1,
        Visibility::Public => 2,
    }
}

const CUT_LEVELS: [Visibility; 3] = [
    Visibility::Private,
    Visibility::Internal,
    Visibility::Public,
];

/// Why a visibility change was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SetError {
    NotFound,
    AboveMax(Visibility),
}

/// The shared registry of ports.
#[derive(Debug)]
pub struct Ports {
    settings: Settings,
    state: Mutex<State>,
    events: EventBus,
    /// Set while detection works in a fallback mode (`/proc`, or not at all).
    degraded: std::sync::atomic::AtomicBool,
}

impl Ports {
    pub fn new(settings: Settings, declared: Vec<Endpoint>, events: EventBus) -> Self {
        let state = State {
            declared: declared.into_iter().map(|e| (e.port, e)).collect(),
            ..State::default()
        };
        Ports {
            settings,
            state: Mutex::new(state),
            events,
            degraded: Default::default(),
        }
    }

    /// Whether detection works in a fallback mode (the built-in `ports`
    /// component is then `degraded`).
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    pub fn url(&self, port: u16) -> String {
        self.settings
            .url_template
            .replace("${PORT}", &port.to_string())
    }

    /// Whether `open` needs a ticket: the port's URL is not on the daemon's own host.
    pub fn url_is_host_routed(&self) -> bool {
        !self.settings.url_template.contains("/proxy/${PORT}")
    }

    fn listed(&self, port: u16) -> bool {
        port != self.settings.own_port && !self.settings.ignore.contains(&port)
    }

    fn info(&self, s: &State, port: u16) -> Option<PortInfo> {
        if !self.listed(port) {
            return None;
        }
        let listening = s.listening.get(&port);
        let declared = s.declared.get(&port);
        if listening.is_none() && declared.is_none() {
            return None;
        }
        Some(PortInfo {
            port,
            protocol: "tcp",
            address: listening
                .and_then(|l| l.addrs.first())
                .map(|a| a.to_string()),
            pid: listening.and_then(|l| l.pid),
            process: listening.and_then(|l| l.process.clone()),
            name: declared.map(|d| d.name.clone()),
            source: if declared.is_some() {
                "devfile"
            } else {
                "detected"
            },
            visibility: self.visibility_in(s, port),
            url: self.url(port),
            http: listening.and_then(|_| s.http.get(&port).copied()),
        })
    }

    fn visibility_in(&self, s: &State, port: u16) -> Visibility {
        let start = s
            .declared
            .get(&port)
            .map_or(self.settings.default_visibility, |d| d.visibility);
        s.chosen
            .get(&port)
            .copied()
            .unwrap_or(start)
            .min(self.settings.max_visibility)
    }

    pub fn list(&self) -> Vec<PortInfo> {
        let s = self.state.lock().unwrap();
        let ports: std::collections::BTreeSet<u16> = s
            .listening
            .keys()
            .chain(s.declared.keys())
            .copied()
            .collect();
        ports.into_iter().filter_map(|p| self.info(&s, p)).collect()
    }

    pub fn get(&self, port: u16) -> Option<PortInfo> {
        self.info(&self.state.lock().unwrap(), port)
    }

    /// The visibility of a listening port and where to reach it; `None`
    /// when nothing listens there (or it is not listed).
    pub fn target(&self, port: u16) -> Option<(Visibility, SocketAddr)> {
        let s = self.state.lock().unwrap();
        if !self.listed(port) {
            return None;
        }
        let addr = s.listening.get(&port)?.upstream(port)?;
        Some((self.visibility_in(&s, port), addr))
    }

    /// How often `port` has fallen below `level` or closed: what a port
    /// session compares to end when its port was lowered or closed.
    pub fn cuts(&self, port: u16, level: Visibility) -> u64 {
        let s = self.state.lock().unwrap();
        s.cuts.get(&port).map_or(0, |c| c[cut_index(level)])
    }

    /// Where a tunnel connects, whatever the visibility (the tunnel is the owner's).
    pub fn tunnel_target(&self, port: u16) -> Option<SocketAddr> {
        let s = self.state.lock().unwrap();
        s.listening.get(&port)?.upstream(port)
    }

    pub fn set_visibility(&self, port: u16, v: Visibility) -> Result<PortInfo, SetError> {
        let mut s = self.state.lock().unwrap();
        if self.info(&s, port).is_none() {
            return Err(SetError::NotFound);
        }
        if v > self.settings.max_visibility {
            return Err(SetError::AboveMax(self.settings.max_visibility));
        }
        let before = self.visibility_in(&s, port);
        s.chosen.insert(port, v);
        let after = self.visibility_in(&s, port);
        for level in CUT_LEVELS {
            if before >= level && after < level {
                s.cuts.entry(port).or_default()[cut_index(level)] += 1;
            }
        }
        let info = self.info(&s, port).expect("checked above");
        if before != v {
            self.events.send(Event::PortChanged { port: info.clone() });
        }
        Ok(info)
    }

    fn set_http(&self, port: u16, http: bool) {
        let mut s = self.state.lock().unwrap();
        if !s.listening.contains_key(&port) || s.http.get(&port) == Some(&http) {
            return;
        }
        s.http.insert(port, http);
        if let Some(info) = self.info(&s, port) {
            self.events.send(Event::PortChanged { port: info });
        }
    }

    /// Sets the listening set found at start, without events; returns the
    /// ports to probe.
    fn seed(&self, now: BTreeMap<u16, Listening>) -> Vec<(u16, SocketAddr)> {
        let mut s = self.state.lock().unwrap();
        let probe = now
            .iter()
            .filter(|(p, _)| self.listed(**p))
            .filter_map(|(p, l)| Some((*p, l.upstream(*p)?)))
            .collect();
        s.listening = now;
        probe
    }

    /// Replaces the listening set, sending events; returns the ports that
    /// appeared (to be probed).
    pub(crate) fn update(&self, now: BTreeMap<u16, Listening>) -> Vec<(u16, SocketAddr)> {
        let mut s = self.state.lock().unwrap();
        let before = std::mem::replace(&mut s.listening, now);
        let mut opened = Vec::new();
        for (&port, l) in &s.listening {
            match before.get(&port) {
                None => {
                    if let Some(info) = self.info(&s, port) {
                        self.events.send(Event::PortOpened { port: info });
                        if let Some(addr) = l.upstream(port) {
                            opened.push((port, addr));
                        }
                    }
                }
                Some(old) if old != l => {
                    if let Some(info) = self.info(&s, port) {
                        self.events.send(Event::PortChanged { port: info });
                    }
                }
                Some(_) => {}
            }
        }
        let closed: Vec<u16> = before
            .keys()
            .filter(|p| !s.listening.contains_key(p))
            .copied()
            .collect();
        for port in closed {
            s.http.remove(&port);
            for c in s.cuts.entry(port).or_default() {
                *c += 1;
            }
            if self.listed(port) {
                self.events.send(Event::PortClosed { port });
            }
        }
        opened
    }
}

/// The detector's memory between two reads: which inode belongs to which pid.
#[derive(Default)]
struct Scanner {
    proc_root: PathBuf,
    owners: HashMap<u64, Option<(u32, Option<String>)>>,
    /// Set once netlink failed: `/proc` from then on.
    fallback: bool,
    diag: Option<diag::Diag>,
}

impl Scanner {
    /// The listening sockets; looks up owners only for inodes not seen before.
    #[cfg(test)]
    fn scan(&mut self) -> std::io::Result<BTreeMap<u16, Listening>> {
        let sockets = self.read()?;
        self.resolve(sockets)
    }

    /// The listening sockets, without their owners: a netlink exchange (or
    /// two small files).
    fn read(&mut self) -> std::io::Result<Vec<procnet::Listener>> {
        let sockets = if self.fallback {
            self.read_proc()?
        } else {
            let read = match self.diag.as_mut() {
                Some(d) => d.listeners(),
                None => diag::Diag::open().and_then(|d| self.diag.insert(d).listeners()),
            };
            if read.is_err() {
                self.diag = None;
            }
            match read {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "netlink sock_diag refused; reading /proc/net/tcp instead");
                    self.fallback = true;
                    self.read_proc()?
                }
            }
        };
        Ok(sockets)
    }

    fn read_proc(&self) -> std::io::Result<Vec<procnet::Listener>> {
        let mut sockets = Vec::new();
        let mut any = false;
        for table in ["net/tcp", "net/tcp6"] {
            match std::fs::read_to_string(self.proc_root.join(table)) {
                Ok(text) => {
                    any = true;
                    sockets.extend(procnet::parse(&text));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if !any {
            return Err(std::io::Error::other(
                "neither /proc/net/tcp nor tcp6 exists",
            ));
        }
        Ok(sockets)
    }

    fn resolve(
        &mut self,
        mut sockets: Vec<procnet::Listener>,
    ) -> std::io::Result<BTreeMap<u16, Listening>> {
        let inodes: HashSet<u64> = sockets.iter().map(|s| s.inode).collect();
        self.owners.retain(|i, _| inodes.contains(i));
        let unknown: HashSet<u64> = inodes
            .iter()
            .filter(|i| !self.owners.contains_key(i))
            .copied()
            .collect();
        if !unknown.is_empty() {
            let found = owner::owners(&self.proc_root, &unknown);
            for inode in unknown {
                let entry = found
                    .get(&inode)
                    .map(|&pid| (pid, owner::cmdline(&self.proc_root, pid)));
                self.owners.insert(inode, entry);
            }
        }
        let mut out: BTreeMap<u16, Listening> = BTreeMap::new();
        sockets.sort();
        for s in sockets {
            let l = out.entry(s.port).or_default();
            if !l.addrs.contains(&s.addr) {
                l.addrs.push(s.addr);
            }
            if l.pid.is_none() {
                if let Some(Some((pid, cmd))) = self.owners.get(&s.inode) {
                    l.pid = Some(*pid);
                    l.process = cmd.clone();
                }
            }
        }
        for l in out.values_mut() {
            l.addrs.sort_by_key(|a| (a.is_ipv6(), *a));
        }
        Ok(out)
    }
}

/// Runs the detector until `cancel`: polls, updates the registry, probes
/// each new port once for HTTP. The first read happens here, before the
/// daemon serves, so what listened at start is listed from the first
/// request and announces no `port_opened`.
///
/// The polls run on a thread of their own, every [`POLL`] while the
/// workspace is in use and every [`POLL_QUIET`] when it is quiet. A round that finds the sockets
/// of the round before (nearly all of them) ends there, without waking the
/// runtime: four wake-ups a second through the runtime's timer cost the
/// idle daemon about 1% of a core here, mostly in cold caches.
pub fn spawn_detector(
    ports: Arc<Ports>,
    activity: crate::activity::Activity,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) {
    let mut scanner = Scanner {
        proc_root: PathBuf::from("/proc"),
        ..Scanner::default()
    };
    let mut last = scanner.read().unwrap_or_default();
    last.sort();
    let initial = scanner.resolve(last.clone()).unwrap_or_default();
    spawn_probes(&ports, tracker, &cancel, ports.seed(initial));
    let runtime = tokio::runtime::Handle::current();
    let tracker = tracker.clone();
    // Keeps the shutdown drain waiting for the thread's last round.
    let running = tracker.token();
    let span = tracing::info_span!("ports");
    let spawned = std::thread::Builder::new()
        .name("ports".into())
        .spawn(move || {
            let _running = running;
            let _span = span.enter();
            // Probes are tasks: spawned from here onto the daemon's runtime.
            let _runtime = runtime.enter();
            let mut warned = false;
            loop {
                let quiet = activity.last_instant().elapsed() > QUIET_AFTER;
                std::thread::sleep(if quiet { POLL_QUIET } else { POLL });
                if cancel.is_cancelled() {
                    return;
                }
                // `None`: the sockets of the round before.
                let result = scanner.read().and_then(|mut sockets| {
                    sockets.sort();
                    if sockets == last {
                        return Ok(None);
                    }
                    last.clone_from(&sockets);
                    scanner.resolve(sockets).map(Some)
                });
                ports
                    .degraded
                    .store(scanner.fallback || result.is_err(), Ordering::Relaxed);
                match result {
                    Ok(None) => {}
                    Ok(Some(now)) => spawn_probes(&ports, &tracker, &cancel, ports.update(now)),
                    Err(e) if !warned => {
                        warned = true;
                        tracing::warn!(error = %e, "cannot read the socket tables; ports are not detected");
                    }
                    Err(_) => {}
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the port detector's thread; ports are not detected");
    }
}

/// Probes each newly seen port once for HTTP, in the background.
fn spawn_probes(
    ports: &Arc<Ports>,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
    new: impl IntoIterator<Item = (u16, SocketAddr)>,
) {
    for (port, addr) in new {
        let ports = ports.clone();
        let cancel = cancel.clone();
        tracker.spawn(
            async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    http = probe_http(addr) => ports.set_http(port, http),
                }
            }
            .instrument(tracing::debug_span!("probe", port)),
        );
    }
}

/// Whether the server on `addr` answers an HTTP request with HTTP.
async fn probe_http(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        // HEAD: the answer has no body, so closing after the status line
        // resets nothing (a dev server would print a traceback otherwise).
        s.write_all(b"HEAD / HTTP/1.0\r\nHost: localhost\r\nUser-Agent: workspaced-probe\r\n\r\n")
            .await?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await?;
        let is_http = &buf == b"HTTP/";
        // Read the rest of the head so the close is orderly.
        let mut head = buf.to_vec();
        let mut rest = [0u8; 4096];
        while head.len() < 64 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut rest).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&rest[..n]),
            }
        }
        Ok::<_, std::io::Error>(is_http)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), attempt).await,
        Ok(Ok(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(max: Visibility) -> Ports {
        Ports::new(
            Settings {
                max_visibility: max,
                default_visibility: Visibility::Private,
                ignore: vec![22],
                own_port: 60080,
                url_template: "https://${PORT}-ws.example/".into(),
            },
            vec![Endpoint {
                name: "web".into(),
                port: 3000,
                visibility: Visibility::Public,
            }],
            EventBus::default(),
        )
    }

    fn listening(addr: &str) -> Listening {
        Listening {
            addrs: vec![addr.parse().unwrap()],
            pid: Some(1),
            process: Some("srv".into()),
        }
    }

    #[test]
    fn starting_visibility_is_capped() {
        let p = ports(Visibility::Internal);
        let rx = p.events.subscribe();
        drop(rx);
        assert_eq!(p.get(3000).unwrap().visibility, Visibility::Internal);
        assert_eq!(p.get(3000).unwrap().address, None);
        p.update(BTreeMap::from([
            (8080, listening("::1")),
            (22, listening("0.0.0.0")),
            (60080, listening("127.0.0.1")),
        ]));
        let list = p.list();
        assert_eq!(
            list.iter().map(|i| i.port).collect::<Vec<_>>(),
            vec![3000, 8080]
        );
        assert_eq!(list[1].visibility, Visibility::Private);
        assert_eq!(list[1].source, "detected");
        assert_eq!(list[1].url, "https://8080-ws.example/");
        assert_eq!(
            p.target(8080).unwrap().1,
            "[::1]:8080".parse::<SocketAddr>().unwrap()
        );
        assert!(p.target(3000).is_none());
        assert!(p.target(22).is_none());
        assert_eq!(
            p.set_visibility(8080, Visibility::Public),
            Err(SetError::AboveMax(Visibility::Internal))
        );
        assert_eq!(
            p.set_visibility(9, Visibility::Private),
            Err(SetError::NotFound)
        );
        assert_eq!(
            p.set_visibility(8080, Visibility::None).unwrap().visibility,
            Visibility::None
        );
    }

    #[test]
    fn wildcard_binds_are_reached_on_loopback() {
        let l = Listening {
            addrs: vec!["0.0.0.0".parse().unwrap(), "::".parse().unwrap()],
            ..Listening::default()
        };
        assert_eq!(l.upstream(5).unwrap().to_string(), "127.0.0.1:5");
        assert_eq!(listening("::").upstream(5).unwrap().to_string(), "[::1]:5");
        assert_eq!(
            listening("10.1.2.3").upstream(5).unwrap().to_string(),
            "10.1.2.3:5"
        );
    }

    #[test]
    fn events_on_open_change_close() {
        let p = ports(Visibility::Public);
        let mut rx = p.events.subscribe();
        let opened = p.update(BTreeMap::from([(8080, listening("127.0.0.1"))]));
        assert_eq!(opened.len(), 1);
        assert!(matches!(rx.try_recv().unwrap(), Event::PortOpened { port } if port.port == 8080));
        p.set_http(8080, true);
        assert!(
            matches!(rx.try_recv().unwrap(), Event::PortChanged { port } if port.http == Some(true))
        );
        p.update(BTreeMap::new());
        assert!(matches!(
            rx.try_recv().unwrap(),
            Event::PortClosed { port: 8080 }
        ));
        assert!(p.get(8080).is_none());
    }

    #[test]
    fn lowering_and_closing_move_the_cuts_of_the_levels_left() {
        let p = ports(Visibility::Public);
        p.update(BTreeMap::from([(8080, listening("127.0.0.1"))]));
        let cuts = || CUT_LEVELS.map(|l| p.cuts(8080, l));
        assert_eq!(cuts(), [0, 0, 0]);
        p.set_visibility(8080, Visibility::Public).unwrap();
        p.set_visibility(8080, Visibility::Internal).unwrap();
        assert_eq!(cuts(), [0, 0, 1], "below public only");
        p.set_visibility(8080, Visibility::Public).unwrap();
        assert_eq!(cuts(), [0, 0, 1], "raising cuts nothing");
        p.set_visibility(8080, Visibility::None).unwrap();
        assert_eq!(cuts(), [1, 1, 2]);
        assert_eq!(p.cuts(8080, Visibility::None), 1, "none counts as private");
        p.set_visibility(8080, Visibility::Private).unwrap();
        p.update(BTreeMap::new());
        assert_eq!(cuts(), [2, 2, 3], "a close cuts every level");
        assert_eq!(p.cuts(9, Visibility::Private), 0);
    }

    #[test]
    fn scanner_sees_a_listener_with_its_pid() {
        let l = std::net::TcpListener::bind("[::1]:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut s = Scanner {
            proc_root: PathBuf::from("/proc"),
            ..Scanner::default()
        };
        let found = s.scan().unwrap();
        assert!(!s.fallback, "netlink sock_diag works here");
        let got = &found[&port];
        assert_eq!(got.addrs, vec!["::1".parse::<IpAddr>().unwrap()]);
        assert_eq!(got.pid, Some(std::process::id()));
        drop(l);
        assert!(!s.scan().unwrap().contains_key(&port));

        let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = l.local_addr().unwrap().port();
        s.fallback = true;
        let found = s.scan().unwrap();
        assert_eq!(
            found[&port].addrs,
            vec!["0.0.0.0".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(found[&port].pid, Some(std::process::id()));
    }
}
