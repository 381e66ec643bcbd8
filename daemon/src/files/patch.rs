//! Strict unified-diff application: every hunk must match exactly at its
//! stated line, no fuzz and no offset.

/// Why a diff was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The diff text is not a unified diff.
    #[error("the diff is malformed: {0}")]
    Malformed(String),
    /// A hunk does not match the file.
    #[error("hunk {0} does not match the file at its stated line")]
    DoesNotApply(usize),
}

/// One line of a file or a hunk: its text and whether a newline ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line<'a> {
    text: &'a [u8],
    newline: bool,
}

fn split_lines(content: &[u8]) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        match rest.iter().position(|b| *b == b'\n') {
            Some(i) => {
                out.push(Line {
                    text: &rest[..i],
                    newline: true,
                });
                rest = &rest[i + 1..];
            }
            None => {
                out.push(Line {
                    text: rest,
                    newline: false,
                });
                rest = &[];
            }
        }
    }
    out
}

struct Hunk<'a> {
    old_start: usize,
    old_len: usize,
    new_len: usize,
    /// (tag, line) with tag b' ', b'-' or b'+'.
    lines: Vec<(u8, Line<'a>)>,
}

fn parse_range(s: &str) -> Option<(usize, usize)> {
    match s.split_once(',') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => Some((s.parse().ok()?, 1)),
    }
}

fn parse_header(line: &[u8]) -> Option<(usize, usize, usize, usize)> {
    let s = std::str::from_utf8(line).ok()?;
    let rest = s.strip_prefix("@@ -")?;
    let (old, rest) = rest.split_once(" +")?;
    let (new, _) = rest.split_once(" @@")?;
    let (a, b) = parse_range(old)?;
    let (c, d) = parse_range(new)?;
    Some((a, b, c, d))
}

fn parse(diff: &[u8]) -> Result<Vec<Hunk<'_>>, PatchError> {
    let lines = split_lines(diff);
    let mut hunks: Vec<Hunk> = Vec::new();
    let mut i = 0;
    // Headers before the first hunk (`diff --git`, `---`, `+++`, `index`) are skipped.
    while i < lines.len() && !lines[i].text.starts_with(b"@@") {
        i += 1;
    }
    while i < lines.len() {
        let header = lines[i].text;
        let (old_start, old_len, _, new_len) = parse_header(header).ok_or_else(|| {
            PatchError::Malformed(format!(
                "bad hunk header {:?}",
                String::from_utf8_lossy(header)
            ))
        })?;
        i += 1;
        let mut hunk = Hunk {
            old_start,
            old_len,
            new_len,
            lines: Vec::new(),
        };
        let (mut old_seen, mut new_seen) = (0, 0);
        while i < lines.len() && (old_seen < old_len || new_seen < new_len) {
            let l = lines[i];
            i += 1;
            if l.text.starts_with(b"\\") {
                if let Some(last) = hunk.lines.last_mut() {
                    last.1.newline = false;
                }
                continue;
            }
            let (tag, text) = match l.text.split_first() {
                Some((t @ (b' ' | b'-' | b'+'), rest)) => (*t, rest),
                // Some tools drop the space of an empty context line.
                None => (b' ', &[][..]),
                Some(_) => {
                    return Err(PatchError::Malformed(format!(
                        "unexpected line {:?} in a hunk",
                        String::from_utf8_lossy(l.text)
                    )))
                }
            };
            match tag {
                b' ' => {
                    old_seen += 1;
                    new_seen += 1;
                }
                b'-' => old_seen += 1,
                _ => new_seen += 1,
            }
            hunk.lines.push((
                tag,
                Line {
                    text,
                    newline: l.newline,
                },
            ));
        }
        if old_seen != old_len || new_seen != new_len {
            return Err(PatchError::Malformed(
                "a hunk has fewer lines than its header says".into(),
            ));
        }
        // A marker right after the counted lines belongs to the last line.
        while i < lines.len() && lines[i].text.starts_with(b"\\") {
            if let Some(last) = hunk.lines.last_mut() {
                last.1.newline = false;
            }
            i += 1;
        }
        // Between hunks (or after the last) only blank lines or git's headers.
        while i < lines.len() && !lines[i].text.starts_with(b"@@") {
            if !lines[i].text.is_empty() {
                return Err(PatchError::Malformed(format!(
                    "unexpected line {:?} after a hunk",
                    String::from_utf8_lossy(lines[i].text)
                )));
            }
            i += 1;
        }
        hunks.push(hunk);
    }
    if hunks.is_empty() {
        return Err(PatchError::Malformed("the diff has no hunk".into()));
    }
    Ok(hunks)
}

/// Applies a unified diff of one file to `content`.
pub fn apply(content: &[u8], diff: &str) -> Result<Vec<u8>, PatchError> {
    let hunks = parse(diff.as_bytes())?;
    let file = split_lines(content);
    let mut out: Vec<Line> = Vec::with_capacity(file.len());
    let mut pos = 0; // next file line to copy
    for (n, h) in hunks.iter().enumerate() {
        // `-N,0` inserts after line N; otherwise the hunk starts at line N.
        let start = if h.old_len == 0 {
            h.old_start
        } else {
            h.old_start
                .checked_sub(1)
                .ok_or(PatchError::DoesNotApply(n + 1))?
        };
        if start < pos || start + h.old_len > file.len() {
            return Err(PatchError::DoesNotApply(n + 1));
        }
        out.extend_from_slice(&file[pos..start]);
        let mut at = start;
        for (tag, line) in &h.lines {
            match tag {
                b'+' => out.push(*line),
                _ => {
                    if file[at] != *line {
                        return Err(PatchError::DoesNotApply(n + 1));
                    }
                    if *tag == b' ' {
                        out.push(*line);
                    }
                    at += 1;
                }
            }
        }
        let _ = h.new_len;
        pos = at;
    }
    out.extend_from_slice(&file[pos..]);
    let mut bytes = Vec::with_capacity(content.len());
    for (i, l) in out.iter().enumerate() {
        bytes.extend_from_slice(l.text);
        if l.newline {
            bytes.push(b'\n');
        } else if i + 1 != out.len() {
            // A line without a newline can only be the last one.
            return Err(PatchError::DoesNotApply(hunks.len()));
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_git_diff() {
        let old = b"a\nb\nc\nd\ne\n";
        let diff = "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -2,3 +2,3 @@\n b\n-c\n+C\n d\n";
        assert_eq!(apply(old, diff).unwrap(), b"a\nb\nC\nd\ne\n");
    }

    #[test]
    fn no_newline_at_end() {
        let old = b"x\ny";
        let diff = "@@ -2 +2,2 @@\n-y\n\\ No newline at end of file\n+y\n+z\n";
        assert_eq!(apply(old, diff).unwrap(), b"x\ny\nz\n");
        let back = "@@ -1,3 +1,2 @@\n x\n-y\n-z\n+y\n\\ No newline at end of file\n";
        assert_eq!(apply(b"x\ny\nz\n", back).unwrap(), b"x\ny");
    }

    #[test]
    fn insertion_into_empty_and_deletion_to_empty() {
        assert_eq!(apply(b"", "@@ -0,0 +1 @@\n+new\n").unwrap(), b"new\n");
        assert_eq!(apply(b"old\n", "@@ -1 +0,0 @@\n-old\n").unwrap(), b"");
    }

    #[test]
    fn no_fuzz_no_offset() {
        let old = b"a\nb\nc\n";
        // Right text, wrong line.
        assert_eq!(
            apply(old, "@@ -1,1 +1,1 @@\n-b\n+B\n"),
            Err(PatchError::DoesNotApply(1))
        );
        assert_eq!(
            apply(old, "@@ -2,1 +2,1 @@\n-x\n+B\n"),
            Err(PatchError::DoesNotApply(1))
        );
        assert!(matches!(
            apply(old, "nonsense"),
            Err(PatchError::Malformed(_))
        ));
        assert!(matches!(
            apply(old, "@@ -1,2 +1,2 @@\n a\n"),
            Err(PatchError::Malformed(_))
        ));
    }

    #[test]
    fn several_hunks() {
        let old: String = (1..=20).map(|i| format!("{i}\n")).collect();
        let diff = "@@ -2 +2 @@\n-2\n+two\n@@ -10,2 +10,3 @@\n 10\n+10.5\n 11\n";
        let new = String::from_utf8(apply(old.as_bytes(), diff).unwrap()).unwrap();
        assert!(new.starts_with("1\ntwo\n3\n"));
        assert!(new.contains("10\n10.5\n11\n"));
    }
}
