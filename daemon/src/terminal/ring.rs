//! The scrollback ring: the last N bytes of a terminal's output, addressed by
//! absolute offsets from the terminal's start. Pure data, no I/O.

use std::collections::VecDeque;

#[derive(Debug)]
pub struct Ring {
    buf: VecDeque<u8>,
    /// Absolute offset of `buf[0]`.
    start: u64,
    cap: usize,
}

impl Ring {
    pub fn new(cap: usize) -> Self {
        Ring {
            buf: VecDeque::new(),
            start: 0,
            cap: cap.max(1),
        }
    }

    /// Offset of the oldest byte kept.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Offset just past the newest byte: the total output so far.
    pub fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    /// How many of the oldest bytes appending `len` more will evict.
    pub fn evicts(&self, len: usize) -> usize {
        (self.buf.len() + len).saturating_sub(self.cap)
    }

    /// Appends `data`, evicting the oldest bytes beyond the capacity.
    /// Callers that must see every byte (the emulator) read what
    /// [`Ring::evicts`] names before calling this.
    pub fn push(&mut self, data: &[u8]) {
        let data = if data.len() > self.cap {
            let skip = data.len() - self.cap;
            self.start += (self.buf.len() + skip) as u64;
            self.buf.clear();
            &data[skip..]
        } else {
            data
        };
        let evict = self.evicts(data.len()).min(self.buf.len());
        self.buf.drain(..evict);
        self.start += evict as u64;
        self.buf.extend(data);
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
    fn keeps_the_last_cap_bytes_with_absolute_offsets() {
        let mut r = Ring::new(8);
        r.push(b"hello");
        assert_eq!((r.start(), r.end()), (0, 5));
        assert_eq!(r.evicts(5), 2);
        r.push(b" world");
        assert_eq!((r.start(), r.end()), (3, 11));
        let mut out = Vec::new();
        assert_eq!(r.read(3, 100, &mut out), Some(8));
        assert_eq!(out, b"lo world");
        assert_eq!(r.read(2, 100, &mut out), None);
        assert_eq!(r.read(12, 100, &mut out), None);
        out.clear();
        assert_eq!(r.read(11, 100, &mut out), Some(0));
        r.push(b"0123456789ab");
        assert_eq!((r.start(), r.end()), (15, 23));
        out.clear();
        r.read(20, 2, &mut out);
        assert_eq!(out, b"9a");
    }

    #[test]
    fn reads_across_the_wrap_in_any_split() {
        let mut r = Ring::new(16);
        let mut all = Vec::new();
        for i in 0..100u8 {
            let chunk: Vec<u8> = (0..(i % 7 + 1))
                .map(|j| i.wrapping_mul(31).wrapping_add(j))
                .collect();
            r.push(&chunk);
            all.extend_from_slice(&chunk);
            let mut out = Vec::new();
            r.read(r.start(), usize::MAX, &mut out).unwrap();
            assert_eq!(out, &all[r.start() as usize..]);
        }
    }
}
