//! The scrollback ring: the last N bytes of a terminal's output, addressed by
//! absolute offsets from the terminal's start. Pure data, no I/O.

use std::collections::VecDeque;

#[derive(Debug, Default)]
pub struct Ring {
    buf: VecDeque<u8>,
    /// Absolute offset of `buf[0]`.
    start: u64,
}

impl Ring {
    /// Offset of the oldest byte kept.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Offset just past the newest byte: the total output so far.
    pub fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    /// Appends `data` at the end.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend(data);
    }

    /// Drops every byte before offset `keep_from`.
    pub fn trim(&mut self, keep_from: u64) {
        let n = keep_from
            .saturating_sub(self.start)
            .min(self.buf.len() as u64) as usize;
        self.buf.drain(..n);
        self.start += n as u64;
    }

    /// Copies up to `max` bytes from absolute offset `from` into `out`.
    /// Returns `None` when `from` was evicted or lies beyond the end.
    pub fn read(&self, from: u64, max: usize, out: &mut Vec<u8>) -> Option<usize> {
        if from < self.start || from > self.end() {
            return None;
        }
        let begin = (from - self.start) as usize;
        let len = (self.buf.len() - begin).min(max);
        let (a, b) = self.buf.as_slices();
        let range = begin..begin + len;
        if range.end <= a.len() {
            out.extend_from_slice(&a[range]);
        } else if range.start >= a.len() {
            out.extend_from_slice(&b[range.start - a.len()..range.end - a.len()]);
        } else {
            out.extend_from_slice(&a[range.start..]);
            out.extend_from_slice(&b[..range.end - a.len()]);
        }
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_bytes_by_absolute_offset() {
        let mut r = Ring::default();
        r.push(b"hello");
        assert_eq!((r.start(), r.end()), (0, 5));
        r.push(b" world");
        r.trim(3);
        assert_eq!((r.start(), r.end()), (3, 11));
        let mut out = Vec::new();
        assert_eq!(r.read(3, 100, &mut out), Some(8));
        assert_eq!(out, b"lo world");
        assert_eq!(r.read(2, 100, &mut out), None);
        assert_eq!(r.read(12, 100, &mut out), None);
        out.clear();
        assert_eq!(r.read(11, 100, &mut out), Some(0));
        r.trim(100);
        assert_eq!((r.start(), r.end()), (11, 11));
    }

    #[test]
    fn reads_across_the_wrap_in_any_split() {
        let mut r = Ring::default();
        let mut all = Vec::new();
        for i in 0..100u8 {
            let chunk: Vec<u8> = (0..(i % 7 + 1))
                .map(|j| i.wrapping_mul(31).wrapping_add(j))
                .collect();
            r.push(&chunk);
            all.extend_from_slice(&chunk);
            r.trim(r.end().saturating_sub(16));
            let mut out = Vec::new();
            r.read(r.start(), usize::MAX, &mut out).unwrap();
            assert_eq!(out, &all[r.start() as usize..]);
        }
    }
}
