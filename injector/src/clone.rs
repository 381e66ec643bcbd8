//! `clone`: clones the project with git2 into a temporary sibling, renames
//! it into place and writes the success marker; retries with backoff; a
//! token is sent as HTTP basic auth and never logged.

use std::cell::Cell;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};

/// Written under `PROJECTS_ROOT` once the project is completely in place.
pub const MARKER: &str = ".gl_project_cloning_successful";
/// Written under `PROJECTS_ROOT` when every try failed.
pub const ERROR_LOG: &str = "project-clone-errors.log";
/// Waits between tries: 3 retries after the first try.
pub const DEFAULT_BACKOFF: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// What to clone and where.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: String,
    pub git_ref: Option<String>,
    pub depth: Option<u32>,
    pub dest: PathBuf,
    pub token_file: Option<PathBuf>,
    pub projects_root: PathBuf,
    pub backoff: Vec<Duration>,
}

/// What `clone` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    AlreadyCloned,
    Cloned {
        attempts: usize,
    },
    /// Every try failed; the message went to the error log.
    Failed {
        message: String,
    },
}

/// A secret that never prints.
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The URL without any `user:password@` part, for messages.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        if let Some((_, host)) = authority.rsplit_once('@') {
            return format!("{scheme}://<redacted>@{host}/{path}");
        }
    }
    url.to_string()
}

fn read_token(path: &Path) -> anyhow::Result<Option<Token>> {
    match fs::read_to_string(path) {
        Ok(s) => {
            let t = s.trim_end_matches(['\n', '\r']).to_string();
            Ok((!t.is_empty()).then_some(Token(t)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "no token file at {}; cloning without credentials",
                path.display()
            );
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("read the token file {}", path.display())),
    }
}

fn tmp_prefix(dest: &Path) -> anyhow::Result<(PathBuf, String)> {
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable file name", dest.display()))?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, format!(".{name}.tmp-clone-")))
}

fn remove_leftovers(dest: &Path) -> anyhow::Result<()> {
    let (parent, prefix) = tmp_prefix(dest)?;
    let Ok(rd) = fs::read_dir(&parent) else {
        return Ok(());
    };
    for e in rd.flatten() {
        if e.file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix))
        {
            fs::remove_dir_all(e.path())
                .with_context(|| format!("remove the interrupted clone {}", e.path().display()))?;
        }
    }
    Ok(())
}

/// Clones as described in the module docs. I/O errors around the clone
/// (e.g. an unwritable projects root) are errors; clone failures are an
/// [`Outcome::Failed`] after the error log is written.
pub fn clone(req: &Request) -> anyhow::Result<Outcome> {
    let marker = req.projects_root.join(MARKER);
    if marker.exists() && req.dest.exists() {
        return Ok(Outcome::AlreadyCloned);
    }
    fs::create_dir_all(&req.projects_root)
        .with_context(|| format!("create {}", req.projects_root.display()))?;
    let _ = fs::remove_file(&marker);
    remove_leftovers(&req.dest)?;
    if is_complete_clone(&req.dest, &req.url) {
        // Renamed into place, then stopped before the marker was written
        // (or the marker was deleted): never wipe a complete working copy.
        eprintln!(
            "{} is a complete clone of the project; writing the missing marker",
            req.dest.display()
        );
        write_marker(&req.projects_root, &redact_url(&req.url))?;
        return Ok(Outcome::AlreadyCloned);
    }
    if req.dest.symlink_metadata().is_ok() {
        eprintln!(
            "{} exists without the marker: an interrupted clone; cloning again",
            req.dest.display()
        );
        fs::remove_dir_all(&req.dest)
            .with_context(|| format!("remove the interrupted clone {}", req.dest.display()))?;
    }
    let token = match &req.token_file {
        Some(p) => read_token(p)?,
        None => None,
    };
    let url = redact_url(&req.url);
    let attempts = req.backoff.len() + 1;
    let mut last = String::new();
    for attempt in 1..=attempts {
        eprintln!(
            "cloning {url} into {} (try {attempt}/{attempts})",
            req.dest.display()
        );
        match try_clone(req, token.as_ref()) {
            Ok(()) => {
                write_marker(&req.projects_root, &url)?;
                let _ = fs::remove_file(req.projects_root.join(ERROR_LOG));
                return Ok(Outcome::Cloned { attempts: attempt });
            }
            Err(e) => {
                last = redact(&format!("{e:#}"), token.as_ref());
                eprintln!("clone of {url} failed: {last}");
                if e.downcast_ref::<Permanent>().is_some() {
                    break;
                }
                if let Some(wait) = req.backoff.get(attempt - 1) {
                    std::thread::sleep(*wait);
                }
            }
        }
    }
    let message = format!("cloning {url} into {} failed: {last}", req.dest.display());
    let log = req.projects_root.join(ERROR_LOG);
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("open {}", log.display()))?;
    writeln!(f, "{message}").with_context(|| format!("write {}", log.display()))?;
    Ok(Outcome::Failed { message })
}

fn write_marker(projects_root: &Path, url: &str) -> anyhow::Result<()> {
    let marker = projects_root.join(MARKER);
    let tmp = projects_root.join(format!("{MARKER}.tmp"));
    fs::write(&tmp, format!("{url}\n")).with_context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, &marker).with_context(|| format!("write {}", marker.display()))
}

/// A repository at `dest` with a checked-out commit whose `origin` is `url`.
fn is_complete_clone(dest: &Path, url: &str) -> bool {
    let Ok(repo) = git2::Repository::open(dest) else {
        return false;
    };
    let head_ok = repo
        .head()
        .ok()
        .and_then(|h| h.peel_to_commit().ok())
        .is_some();
    let origin_ok = repo
        .find_remote("origin")
        .ok()
        .is_some_and(|r| r.url().ok() == Some(url));
    head_ok && origin_ok
}

/// A failure that another try cannot fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Permanent(String);

fn redact(message: &str, token: Option<&Token>) -> String {
    match token {
        Some(t) if !t.0.is_empty() => message.replace(&t.0, "<redacted>"),
        _ => message.to_string(),
    }
}

fn try_clone(req: &Request, token: Option<&Token>) -> anyhow::Result<()> {
    let (parent, prefix) = tmp_prefix(&req.dest)?;
    let tmp = parent.join(format!("{prefix}{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("remove {}", tmp.display()))?;
    }
    let auth_tries = Cell::new(0u32);
    let mut callbacks = git2::RemoteCallbacks::new();
    callbacks.credentials(|_url, _user, allowed| {
        auth_tries.set(auth_tries.get() + 1);
        match token {
            _ if auth_tries.get() > 1 => Err(git2::Error::from_str(
                "authentication failed: the server refused the token (check the token file)",
            )),
            Some(t) if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) => {
                git2::Cred::userpass_plaintext("oauth2", &t.0)
            }
            Some(_) => Err(git2::Error::from_str(
                "the server asked for a kind of credential other than a token",
            )),
            None => Err(git2::Error::from_str(
                "authentication required and no token was given (--token-file)",
            )),
        }
    });
    let mut fetch = git2::FetchOptions::new();
    fetch.remote_callbacks(callbacks);
    if let Some(d) = req.depth {
        fetch.depth(i32::try_from(d).unwrap_or(i32::MAX));
    }
    let mut builder = git2::build::RepoBuilder::new();
    builder.fetch_options(fetch);
    let result = builder.clone(&req.url, &tmp);
    let repo = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            if auth_tries.get() > 1
                || e.class() == git2::ErrorClass::Http && e.message().contains("401")
            {
                return Err(anyhow!(
                    "authentication failed: the server refused the token (check the token file)"
                ));
            }
            return Err(anyhow!("{}", e.message()));
        }
    };
    if let Some(r) = &req.git_ref {
        if let Err(e) = checkout(&repo, r) {
            drop(repo);
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    }
    drop(repo);
    fs::rename(&tmp, &req.dest)
        .with_context(|| format!("rename {} to {}", tmp.display(), req.dest.display()))?;
    Ok(())
}

/// Checks out a branch (as a local tracking branch), a tag or a commit.
fn checkout(repo: &git2::Repository, r: &str) -> anyhow::Result<()> {
    if let Ok(remote) = repo.find_branch(&format!("origin/{r}"), git2::BranchType::Remote) {
        let commit = remote.get().peel_to_commit()?;
        let mut local = match repo.find_branch(r, git2::BranchType::Local) {
            Ok(b) => b,
            Err(_) => repo.branch(r, &commit, false)?,
        };
        local.set_upstream(Some(&format!("origin/{r}")))?;
        repo.checkout_tree(
            commit.as_object(),
            Some(git2::build::CheckoutBuilder::new().force()),
        )?;
        repo.set_head(&format!("refs/heads/{r}"))?;
        return Ok(());
    }
    let obj = repo.revparse_single(r).map_err(|_| {
        Permanent(format!(
            "ref `{r}` is neither a branch, a tag nor a commit of the repository"
        ))
    })?;
    let commit = obj.peel_to_commit()?;
    repo.checkout_tree(
        commit.as_object(),
        Some(git2::build::CheckoutBuilder::new().force()),
    )?;
    repo.set_head_detached(commit.id())?;
    Ok(())
}

/// Parses `1s,2s,4s` (humantime durations, comma-separated).
pub fn parse_backoff(s: &str) -> Result<Vec<Duration>, String> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|p| humantime::parse_duration(p.trim()).map_err(|e| format!("`{p}`: {e}")))
        .collect()
}

/// Fails unless `PROJECTS_ROOT` or the destination's parent is usable.
pub fn projects_root(dest: &Path) -> anyhow::Result<PathBuf> {
    if let Some(root) = std::env::var_os("PROJECTS_ROOT").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(root));
    }
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => Ok(p.to_path_buf()),
        Some(_) => Ok(PathBuf::from(".")),
        None => bail!(
            "{} has no parent directory; set PROJECTS_ROOT",
            dest.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("https://u:secret@host/a/b.git"),
            "https://<redacted>@host/a/b.git"
        );
        assert_eq!(redact_url("https://host/a.git"), "https://host/a.git");
        assert_eq!(redact_url("file:///tmp/r"), "file:///tmp/r");
    }

    #[test]
    fn tokens_never_print() {
        let t = Token("s3cr3t".into());
        assert!(!format!("{t:?}").contains("s3cr3t"));
        assert_eq!(redact("bad s3cr3t here", Some(&t)), "bad <redacted> here");
    }

    #[test]
    fn backoff_parses() {
        assert_eq!(parse_backoff("1s,2s,4s").unwrap(), DEFAULT_BACKOFF.to_vec());
        assert_eq!(
            parse_backoff("10ms").unwrap(),
            vec![Duration::from_millis(10)]
        );
        assert!(parse_backoff("x").is_err());
    }
}
