//! Which process owns a socket: the `socket:[inode]` links under
//! `/proc/<pid>/fd`, read where permissions allow, and its command line.

use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The owning pid of each wanted inode that could be found.
pub fn owners(proc_root: &Path, wanted: &HashSet<u64>) -> HashMap<u64, u32> {
    let mut found = HashMap::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = socket_inode(target.as_os_str().to_str().unwrap_or("")) else {
                continue;
            };
            if wanted.contains(&inode) {
                // The lowest pid wins: a forked server's parent before its workers.
                found.entry(inode).or_insert(pid);
            }
        }
        if found.len() == wanted.len() {
            break;
        }
    }
    found
}

fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The command line of a process, arguments joined by spaces.
pub fn cmdline(proc_root: &Path, pid: u32) -> Option<String> {
    let raw = std::fs::read(proc_root.join(pid.to_string()).join("cmdline")).ok()?;
    let s = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("pipe:[12345]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn finds_its_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let tables = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let inode = super::super::procnet::parse(&tables)
            .into_iter()
            .find(|s| s.port == port)
            .unwrap()
            .inode;
        let found = owners(Path::new("/proc"), &HashSet::from([inode]));
        assert_eq!(found.get(&inode), Some(&std::process::id()));
        assert!(cmdline(Path::new("/proc"), std::process::id()).is_some());
    }
}
