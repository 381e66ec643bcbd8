//! Listening TCP sockets through netlink `sock_diag` (`SOCK_DIAG_BY_FAMILY`
//! with a LISTEN-only state filter). The kernel then walks only its
//! listening hash, where `/proc/net/tcp` walks every bucket of the
//! established hash: on a large machine that is milliseconds of CPU per
//! read against microseconds (docs/benchmarks.md). Requests are built and
//! answers parsed as plain bytes; only the socket calls are `nix`'s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

use super::procnet::Listener;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// The older request, which dumps both families in one walk of the
/// kernel's listening hash (`inet_diag_dump_compat`: `AF_UNSPEC`).
const TCPDIAG_GETSOCK: u16 = 18;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_LISTEN: u32 = 10;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
/// `struct inet_diag_msg`.
const DIAG_MSG_LEN: usize = 72;

/// The `nlmsghdr` of a dump request of `len` bytes in all.
fn dump_header(len: u32, kind: u16, seq: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(len as usize);
    b.extend_from_slice(&len.to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b
}

/// One dump request for a family: `nlmsghdr` + `inet_diag_req_v2`.
fn request(family: u8, seq: u32) -> Vec<u8> {
    let mut b = dump_header(72, SOCK_DIAG_BY_FAMILY, seq);
    b.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
    b.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    b.resize(72, 0); // inet_diag_sockid: all wildcards
    b
}

/// One dump request for both families: `nlmsghdr` + `inet_diag_req`.
fn request_both(seq: u32) -> Vec<u8> {
    let mut b = dump_header(76, TCPDIAG_GETSOCK, seq);
    b.extend_from_slice(&[AF_INET, 0, 0, 0]);
    b.resize(16 + 4 + 48, 0); // inet_diag_sockid: all wildcards
    b.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b
}

fn u16_ne(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_ne(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses one datagram of the dump; `Ok(true)` once the dump is done.
pub fn parse(mut buf: &[u8], out: &mut Vec<Listener>) -> std::io::Result<bool> {
    let bad = || std::io::Error::other("malformed sock_diag answer");
    while buf.len() >= 16 {
        let len = u32_ne(buf, 0) as usize;
        let kind = u16_ne(buf, 4);
        if len < 16 || len > buf.len() {
            return Err(bad());
        }
        let body = &buf[16..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = if body.len() >= 4 {
                    -(u32_ne(body, 0) as i32)
                } else {
                    0
                };
                return Err(std::io::Error::from_raw_os_error(errno));
            }
            SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK if body.len() >= DIAG_MSG_LEN => {
                let port = u16::from_be_bytes([body[4], body[5]]);
                let addr = match body[0] {
                    AF_INET => IpAddr::V4(Ipv4Addr::new(body[8], body[9], body[10], body[11])),
                    AF_INET6 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(&body[8..24]);
                        let v6 = Ipv6Addr::from(a);
                        v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
                    }
                    _ => return Err(bad()),
                };
                let inode = u32_ne(body, 68) as u64;
                out.push(Listener { port, addr, inode });
            }
            _ => {}
        }
        let aligned = (len + 3) & !3;
        buf = &buf[aligned.min(buf.len())..];
    }
    Ok(false)
}

/// A sock_diag socket, kept open with its receive buffer between reads:
/// the detector reads four times a second, for as long as the daemon runs.
pub struct Diag {
    fd: std::os::fd::OwnedFd,
    buf: Vec<u8>,
    seq: u32,
    /// Whether the kernel answers the one request for both families; the
    /// walk of its listening hash is most of a read's cost, so one walk
    /// rather than two halves it.
    both: bool,
}

impl Diag {
    pub fn open() -> std::io::Result<Diag> {
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkSockDiag,
        )?;
        Ok(Diag {
            fd,
            buf: vec![0u8; 64 * 1024],
            seq: 0,
            both: true,
        })
    }

    /// Every listening TCP socket of the network namespace, IPv4 and IPv6.
    /// After an error the socket may hold the rest of a dump: drop it.
    pub fn listeners(&mut self) -> std::io::Result<Vec<Listener>> {
        let mut out = Vec::new();
        if self.both {
            self.seq = self.seq.wrapping_add(1);
            match self.dump(&request_both(self.seq), &mut out) {
                Ok(()) => return Ok(out),
                Err(e) => {
                    tracing::debug!(error = %e, "sock_diag's request for both families refused; asking per family");
                    self.both = false;
                    out.clear();
                }
            }
        }
        for family in [AF_INET, AF_INET6] {
            self.seq = self.seq.wrapping_add(1);
            self.dump(&request(family, self.seq), &mut out)?;
        }
        Ok(out)
    }

    fn dump(&mut self, request: &[u8], out: &mut Vec<Listener>) -> std::io::Result<()> {
        let kernel = NetlinkAddr::new(0, 0);
        socket::sendto(self.fd.as_raw_fd(), request, &kernel, MsgFlags::empty())?;
        loop {
            let n = socket::recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::empty())?;
            if n == 0 || parse(&self.buf[..n], out)? {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(family: u8, port: u16, addr: &[u8], inode: u32) -> Vec<u8> {
        let mut body = vec![0u8; DIAG_MSG_LEN];
        body[0] = family;
        body[1] = TCP_LISTEN as u8;
        body[4..6].copy_from_slice(&port.to_be_bytes());
        body[8..8 + addr.len()].copy_from_slice(addr);
        body[68..72].copy_from_slice(&inode.to_ne_bytes());
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + DIAG_MSG_LEN) as u32).to_ne_bytes());
        m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn parses_a_dump() {
        let mut buf = msg(AF_INET, 3000, &[127, 0, 0, 1], 77);
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        buf.extend(msg(AF_INET6, 8080, &v6, 78));
        let mut done = 16u32.to_ne_bytes().to_vec();
        done.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        done.extend_from_slice(&[0u8; 10]);
        buf.extend(done);
        let mut out = Vec::new();
        assert!(parse(&buf, &mut out).unwrap());
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].port, out[0].inode), (3000, 77));
        assert_eq!(out[0].addr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(out[1].addr, "::1".parse::<IpAddr>().unwrap());
        assert!(parse(&buf[..20], &mut out).is_err(), "a cut message");
    }

    #[test]
    fn agrees_with_proc() {
        let l = std::net::TcpListener::bind("[::1]:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut diag = Diag::open().unwrap();
        let found = diag.listeners().unwrap();
        assert!(
            diag.both,
            "this kernel answers the request for both families"
        );
        let again = diag.listeners().unwrap();
        let mut per_family = Diag::open().unwrap();
        per_family.both = false;
        let each = per_family.listeners().unwrap();
        // Other tests open listeners meanwhile: compare ours.
        let ours = |all: &[Listener]| {
            let mut v: Vec<Listener> = all
                .iter()
                .filter(|s| s.port == port || s.port == v4.local_addr().unwrap().port())
                .cloned()
                .collect();
            v.sort();
            v
        };
        assert_eq!(ours(&found).len(), 2, "{found:?}");
        assert_eq!(ours(&again), ours(&found), "the kept socket reads again");
        assert_eq!(
            ours(&each),
            ours(&found),
            "one request reads what the two do"
        );
        let s = found.iter().find(|s| s.port == port).expect("our listener");
        let text = std::fs::read_to_string("/proc/net/tcp6").unwrap();
        let p = super::super::procnet::parse(&text);
        let q = p.iter().find(|s| s.port == port).unwrap();
        assert_eq!((s.addr, s.inode), (q.addr, q.inode));
    }
}
