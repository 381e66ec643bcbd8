//! Entry points of the fuzz targets (`fuzz/`), shared with the stable test
//! that replays the committed corpus (`daemon/tests/fuzz_corpus.rs`), so CI
//! runs every corpus file through exactly the code the fuzzer ran. Each one
//! takes arbitrary bytes and panics only on a broken invariant.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::{AsyncRead, ReadBuf};

use crate::confine::{self, Root};
use crate::files::edit::{self, Encoding, Position, TextEdit};
use crate::files::{index, patch};
use crate::http::framing::{Framing, UpgradeAnswer};

/// The first NUL splits an input in two; without one the first part is empty.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[], data),
    }
}

/// A file's content, then a unified diff of it.
pub fn patch(data: &[u8]) {
    let (content, diff) = split(data);
    let Ok(diff) = std::str::from_utf8(diff) else {
        return;
    };
    if let Ok(out) = patch::apply(content, diff) {
        // Nothing but the diff's own lines can appear: the result is at
        // most the file plus every line the diff adds.
        assert!(out.len() <= content.len() + diff.len());
    }
}

/// A text, then edits of 5 bytes each (start line and character, end line
/// and character, length of the inserted text) followed by their text.
pub fn edit(data: &[u8]) {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let (text, mut rest) = split(data);
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let mut edits = Vec::new();
    while let [sl, sc, el, ec, n, tail @ ..] = rest {
        let n = (*n as usize).min(tail.len());
        let Ok(insert) = std::str::from_utf8(&tail[..n]) else {
            return;
        };
        edits.push(TextEdit {
            start: Position {
                line: u32::from(*sl),
                character: u32::from(*sc),
            },
            end: Position {
                line: u32::from(*el),
                character: u32::from(*ec),
            },
            text: insert.to_owned(),
        });
        rest = &tail[n..];
    }
    let enc = if mode & 1 == 0 {
        Encoding::Utf16
    } else {
        Encoding::Utf8
    };
    if let Ok(out) = edit::apply(text, &edits, enc) {
        let inserted: usize = edits.iter().map(|e| e.text.len()).sum();
        assert!(out.len() <= text.len() + inserted);
    }
}

/// A workspace path through the text checks, then walked from the root of
/// [`confine_tree`]'s workspace.
pub fn confine(root: &Root, data: &[u8]) {
    confine_text(data);
    confine_walk(root, data);
}

/// The text checks of a workspace path.
fn confine_text(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parts) = confine::components(path) {
        let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
        for p in [path, &decoded] {
            assert!(!p.starts_with('/') && !p.contains('\0'), "{path:?}");
            assert!(
                p.is_empty() || p.split('/').all(|c| !c.is_empty() && c != ".."),
                "{path:?}"
            );
        }
        assert!(parts.iter().all(|c| *c != ".." && !c.is_empty()));
    }
}

/// A small workspace with symlinks inside, outside, absolute, looping and
/// dangling, for [`confine_walk`]; `dir` is an empty directory.
pub fn confine_tree(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::symlink;
    let ws = dir.join("ws");
    std::fs::create_dir_all(ws.join("a/b/c"))?;
    std::fs::create_dir_all(dir.join("outside/secret"))?;
    std::fs::write(ws.join("a/file"), "x")?;
    symlink("b", ws.join("a/in"))?;
    symlink("../..", ws.join("a/b/up"))?;
    symlink("../../..", ws.join("a/b/out"))?;
    symlink("../outside", ws.join("away"))?;
    symlink(dir.join("outside"), ws.join("abs_out"))?;
    symlink(ws.join("a/b"), ws.join("abs_in"))?;
    symlink("loop", ws.join("loop"))?;
    symlink("nowhere", ws.join("dangling"))?;
    symlink("file", ws.join("a/tofile"))?;
    Ok(())
}

/// A path walked from the root of [`confine_tree`]'s workspace: whatever
/// opens lies inside it.
fn confine_walk(root: &Root, data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let real = root.path();
    if let Ok(fd) = root.open_dir(path) {
        let at = root.real_path(&fd).expect("an opened directory has a path");
        assert!(at.starts_with(real), "{path:?} opened {at:?}");
    }
    if let Ok((fd, name)) = root.open_parent(path) {
        let at = root.real_path(&fd).expect("an opened directory has a path");
        assert!(at.starts_with(real), "{path:?} opened {at:?}");
        assert!(
            !name.contains('/') && name != "..",
            "{path:?} named {name:?}"
        );
    }
}

/// Bytes that arrive a few at a time, as a client may send them.
struct Pieces<'a> {
    data: &'a [u8],
    step: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.step.min(self.data.len()).min(out.remaining());
        out.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

/// A connection's bytes through the framing checks below hyper; the first
/// byte sets how many arrive at once.
pub fn framing(data: &[u8]) {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let io = Pieces {
        data,
        step: usize::from(step).max(1) * 16,
    };
    let mut conn = Framing::resume(io, Arc::new(UpgradeAnswer::default()), BytesMut::new());
    let mut cx = Context::from_waker(Waker::noop());
    let mut buf = vec![0u8; 4096];
    let mut handed = 0;
    // Each round hands over bytes or ends; a bound keeps a bug from hanging.
    for _ in 0..data.len() * 2 + 64 {
        let mut out = ReadBuf::new(&mut buf);
        match Pin::new(&mut conn).poll_read(&mut cx, &mut out) {
            Poll::Ready(Ok(())) if out.filled().is_empty() => break,
            Poll::Ready(Ok(())) => handed += out.filled().len(),
            Poll::Ready(Err(_)) | Poll::Pending => break,
        }
    }
    // hyper gets the client's bytes, or fewer and then one stand-in head.
    assert!(handed <= data.len() + 128, "{handed} of {}", data.len());
}

/// A request head and an upstream's answer head, as the fast lane reads them.
pub fn lane(data: &[u8]) {
    crate::proxy::lane::fuzz_heads(data);
}

/// A git index file in `git_dir`.
pub fn index(git_dir: &Path, data: &[u8]) {
    // The pure parser first: whatever the bytes claim, no allocation beyond
    // what they can hold, and never a panic.
    if let Ok(entries) = index::parse(data) {
        assert!(entries.len() <= data.len() / 62);
    }
    let path = git_dir.join("index");
    std::fs::write(&path, data).expect("write the index");
    let read = index::Index::read(git_dir);
    assert!(read.entries.len() <= data.len() / 62);
}

/// A WebSocket text message, as a terminal client's and as a sync client's.
pub fn ws_control(data: &[u8]) {
    if let Ok(body) = std::str::from_utf8(data) {
        let _ = crate::terminal::attach::fuzz_control(body);
        crate::http::sync::fuzz_message(body);
    }
}
