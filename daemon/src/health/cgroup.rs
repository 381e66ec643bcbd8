//! Resources of the daemon's cgroup: memory use and limit, CPU time and
//! limit, from cgroup v2 or, per controller, v1. A value that cannot be read
//! is `None`, never a made-up number. The parsing is pure; `Cgroup::own`
//! is the only part that looks at this process.

use std::path::{Path, PathBuf};

/// The resources the status reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Resources {
    pub memory_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub cpu_usage_seconds: Option<f64>,
    pub cpu_limit_cores: Option<f64>,
}

/// Where each controller's files are for one process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cgroup {
    /// The v2 (unified) directory, when the process is in one that exists.
    pub unified: Option<PathBuf>,
    pub memory_v1: Option<PathBuf>,
    pub cpu_v1: Option<PathBuf>,
    pub cpuacct_v1: Option<PathBuf>,
}

/// The directory of a cgroup under its mount, or the mount itself when the
/// path is not visible there (a cgroup namespace shows `/`-relative paths).
fn dir_under(mount: &Path, rel: &str) -> Option<PathBuf> {
    let joined = mount.join(rel.trim_start_matches('/'));
    if joined.is_dir() {
        Some(joined)
    } else if mount.is_dir() {
        Some(mount.to_owned())
    } else {
        None
    }
}

impl Cgroup {
    /// Finds the directories from `/proc/<pid>/cgroup` text and the cgroup
    /// mount root (normally `/sys/fs/cgroup`).
    pub fn locate(proc_cgroup: &str, root: &Path) -> Cgroup {
        let mut cg = Cgroup::default();
        // v2 is at the root on a pure v2 machine, at `unified` on a hybrid one.
        let v2_mount = [root.to_owned(), root.join("unified")]
            .into_iter()
            .find(|p| p.join("cgroup.controllers").is_file());
        for line in proc_cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if id == "0" && controllers.is_empty() {
                cg.unified = v2_mount.as_deref().and_then(|m| dir_under(m, path));
                continue;
            }
            for c in controllers.split(',') {
                let slot = match c {
                    "memory" => &mut cg.memory_v1,
                    "cpu" => &mut cg.cpu_v1,
                    "cpuacct" => &mut cg.cpuacct_v1,
                    _ => continue,
                };
                // The mount may be `cpu`, `cpuacct` or the combined `cpu,cpuacct`.
                let mount = [root.join(controllers), root.join(c)]
                    .into_iter()
                    .find(|m| m.is_dir());
                *slot = mount.and_then(|m| dir_under(&m, path));
            }
        }
        cg
    }

    /// The cgroup of this process.
    pub fn own() -> Cgroup {
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Cgroup::locate(&text, Path::new("/sys/fs/cgroup"))
    }

    /// Reads the resources now. v1 controllers win over the unified
    /// hierarchy on a hybrid machine, where v2 usually has none of them.
    pub fn read(&self) -> Resources {
        let file = |dir: &Option<PathBuf>, name: &str| {
            dir.as_ref()
                .and_then(|d| std::fs::read_to_string(d.join(name)).ok())
        };
        let v2_has = |controller: &str| {
            self.unified
                .as_ref()
                .and_then(|d| std::fs::read_to_string(d.join("cgroup.controllers")).ok())
                .is_some_and(|c| c.split_whitespace().any(|w| w == controller))
                || file(&self.unified, &format!("{controller}.max")).is_some()
        };
        let mut r = Resources::default();
        if self.memory_v1.is_some() {
            r.memory_bytes = file(&self.memory_v1, "memory.usage_in_bytes").and_then(|s| int(&s));
            r.memory_limit_bytes =
                file(&self.memory_v1, "memory.limit_in_bytes").and_then(|s| v1_memory_limit(&s));
        } else if v2_has("memory") {
            r.memory_bytes = file(&self.unified, "memory.current").and_then(|s| int(&s));
            r.memory_limit_bytes = file(&self.unified, "memory.max").and_then(|s| v2_max(&s));
        }
        if self.cpuacct_v1.is_some() {
            r.cpu_usage_seconds = file(&self.cpuacct_v1, "cpuacct.usage")
                .and_then(|s| int(&s))
                .map(|ns| ns as f64 / 1e9);
        } else {
            r.cpu_usage_seconds = file(&self.unified, "cpu.stat")
                .and_then(|s| v2_usage_usec(&s))
                .map(|us| us as f64 / 1e6);
        }
        if self.cpu_v1.is_some() {
            let quota = file(&self.cpu_v1, "cpu.cfs_quota_us");
            let period = file(&self.cpu_v1, "cpu.cfs_period_us");
            r.cpu_limit_cores = quota.zip(period).and_then(|(q, p)| v1_cpu_limit(&q, &p));
        } else if v2_has("cpu") {
            r.cpu_limit_cores = file(&self.unified, "cpu.max").and_then(|s| v2_cpu_limit(&s));
        }
        r
    }
}

fn int(s: &str) -> Option<u64> {
    s.trim().parse().ok()
}

/// v2 `memory.max`: `max` is no limit (and so `None`, not a number).
fn v2_max(s: &str) -> Option<u64> {
    int(s)
}

/// v1 reports "no limit" as a huge page-rounded number near `i64::MAX`.
fn v1_memory_limit(s: &str) -> Option<u64> {
    int(s).filter(|&n| n < (1u64 << 62))
}

fn v2_usage_usec(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(int)
}

/// v2 `cpu.max`: `"<quota> <period>"` or `"max <period>"`.
fn v2_cpu_limit(s: &str) -> Option<f64> {
    let mut parts = s.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next()?.parse().ok()?;
    (period > 0.0).then(|| quota / period)
}

fn v1_cpu_limit(quota: &str, period: &str) -> Option<f64> {
    let q: i64 = quota.trim().parse().ok()?;
    let p: i64 = period.trim().parse().ok()?;
    (q > 0 && p > 0).then(|| q as f64 / p as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn reads_a_v2_cgroup() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(r, "cgroup.controllers", "cpu memory pids\n");
        let d = r.join("kubepods/pod1");
        write(&d, "cgroup.controllers", "cpu memory\n");
        write(&d, "memory.current", "123456\n");
        write(&d, "memory.max", "max\n");
        write(&d, "cpu.stat", "usage_usec 2500000\nuser_usec 1\n");
        write(&d, "cpu.max", "150000 100000\n");
        let cg = Cgroup::locate("0::/kubepods/pod1\n", r);
        assert_eq!(cg.unified.as_deref(), Some(d.as_path()));
        let res = cg.read();
        assert_eq!(res.memory_bytes, Some(123456));
        assert_eq!(
            res.memory_limit_bytes, None,
            "max is no limit, not a number"
        );
        assert_eq!(res.cpu_usage_seconds, Some(2.5));
        assert_eq!(res.cpu_limit_cores, Some(1.5));
        std::fs::write(d.join("memory.max"), "1073741824\n").unwrap();
        std::fs::write(d.join("cpu.max"), "max 100000\n").unwrap();
        let res = cg.read();
        assert_eq!(res.memory_limit_bytes, Some(1 << 30));
        assert_eq!(res.cpu_limit_cores, None);
        // In a cgroup namespace the path is `/`: the mount root is the cgroup.
        write(r, "memory.current", "42\n");
        assert_eq!(Cgroup::locate("0::/\n", r).read().memory_bytes, Some(42));
    }

    #[test]
    fn reads_a_v1_or_hybrid_cgroup_and_says_null_where_unknowable() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(&r.join("unified"), "cgroup.controllers", "");
        let mem = r.join("memory/job/1");
        write(&mem, "memory.usage_in_bytes", "5000\n");
        write(&mem, "memory.limit_in_bytes", "9223372036854771712\n");
        let cpu = r.join("cpu,cpuacct/job");
        write(&cpu, "cpuacct.usage", "3000000000\n");
        write(&cpu, "cpu.cfs_quota_us", "-1\n");
        write(&cpu, "cpu.cfs_period_us", "100000\n");
        let text = "12:memory:/job/1\n3:cpu,cpuacct:/job\n0::/\n";
        let res = Cgroup::locate(text, r).read();
        assert_eq!(res.memory_bytes, Some(5000));
        assert_eq!(res.memory_limit_bytes, None);
        assert_eq!(res.cpu_usage_seconds, Some(3.0));
        assert_eq!(res.cpu_limit_cores, None);
        std::fs::write(cpu.join("cpu.cfs_quota_us"), "50000\n").unwrap();
        std::fs::write(mem.join("memory.limit_in_bytes"), "1048576\n").unwrap();
        let res = Cgroup::locate(text, r).read();
        assert_eq!(res.cpu_limit_cores, Some(0.5));
        assert_eq!(res.memory_limit_bytes, Some(1 << 20));
        // Nothing mounted: everything null.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            Cgroup::locate(text, empty.path()).read(),
            Resources::default()
        );
    }
}
