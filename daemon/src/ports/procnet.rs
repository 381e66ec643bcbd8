//! Parsing of `/proc/net/tcp` and `/proc/net/tcp6`: the listening sockets of
//! the network namespace, with their socket inodes. Pure text in, values out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One listening socket.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listener {
    pub port: u16,
    pub addr: IpAddr,
    pub inode: u64,
}

/// The kernel's state number for `LISTEN`.
const TCP_LISTEN: &str = "0A";

/// The listening sockets in one table's text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Listener> {
    text.lines().skip(1).filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Listener> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?;
    let local = fields.next()?;
    let _remote = fields.next()?;
    if fields.next()? != TCP_LISTEN {
        return None;
    }
    // tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    let inode = fields.nth(5)?.parse().ok()?;
    let (addr, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(Listener {
        port,
        addr: parse_addr(addr)?,
        inode,
    })
}

/// The kernel prints addresses as 32-bit words in host byte order.
fn parse_addr(hex: &str) -> Option<IpAddr> {
    match hex.len() {
        8 => {
            let w = u32::from_str_radix(hex, 16).ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes())))
        }
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                let w = u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok()?;
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            let v6 = Ipv6Addr::from(bytes);
            Some(match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            })
        }
        _ => None,
    }
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0
   1: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 99 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 555 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 556 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn listening_v4_sockets_only() {
        assert_eq!(
            parse(TCP),
            vec![
                Listener {
                    port: 8080,
                    addr: "127.0.0.1".parse().unwrap(),
                    inode: 123456
                },
                Listener {
                    port: 3000,
                    addr: "0.0.0.0".parse().unwrap(),
                    inode: 7
                },
            ]
        );
    }

    #[test]
    fn v6_loopback_and_wildcard() {
        let l = parse(TCP6);
        assert_eq!(l[0].addr, "::1".parse::<IpAddr>().unwrap());
        assert_eq!((l[0].port, l[0].inode), (8081, 555));
        assert_eq!(l[1].addr, "::".parse::<IpAddr>().unwrap());
        assert_eq!(l[1].port, 80);
    }

    #[test]
    fn garbage_is_skipped() {
        assert!(parse("header\nnot a line\n  0: zz:zz 0 0A\n").is_empty());
    }
}
