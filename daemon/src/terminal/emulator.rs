//! The headless terminal behind the screen replay (`vt100`), fed so that it
//! parses only what can still show: plain lines of a flood that scroll off
//! before anything could display them are skipped, with a proof that the
//! screen after the skipping feed is the one after feeding every byte.
//!
//! # Why a skipped line cannot show
//!
//! The emulator keeps no scrollback (it is created with 0 rows of it), so a
//! row that scrolls off the top is gone. A line is skipped when all of this
//! holds; each point is what makes it exact:
//!
//! 1. It is read in the parser's ground state (`Scan` mirrors `vte`'s state
//!    machine), from an LF to the next LF, with no ESC in between: `vte`
//!    leaves the ground state only on ESC, so every byte of it is printed or
//!    executed, none belongs to a sequence or a string (an OSC title may hold
//!    CR LF: it is not in the ground state, so it is never skipped).
//! 2. The LF before it is preceded by a CR read in the ground state too
//!    (`onlcr` output): the line starts at column 0.
//! 3. It is `C CR LF` where `C` has fewer bytes than the screen has columns,
//!    no CR, no C0 control, no DEL, is valid UTF-8 without C1 code points,
//!    and starts with a printable ASCII byte. Each character advances the
//!    cursor by at most as many columns as it has bytes (ASCII 1 column, 1
//!    byte; any other character at most 2 columns, at least 2 bytes), so the
//!    cursor never reaches the wrap check (`col + width > cols`): `C` writes
//!    only the cells (and at most clears the wrap flag) of the cursor's row,
//!    never wraps, and leaves the cursor on that row. Printing changes no attribute, mode, saved cursor
//!    or title. A zero-width character is appended to the cell before it,
//!    which is on the same row because `C` starts with a 1-column character
//!    (at column 0 it would be appended to the row above).
//! 4. At least `rows` LFs follow, counting its own, within the same ground
//!    run, and the scroll region is the whole screen. In the ground state
//!    nothing moves the cursor up (only CR, BS and HT move it, sideways; LF,
//!    VT, FF and wraps move it down or scroll), so nothing writes that row
//!    again, and each LF either moves the cursor down or scrolls: the gap
//!    between the cursor's row and that row grows by one per LF, and after
//!    `rows` of them the row has scrolled off.
//!
//! Feeding `CR LF` in place of `C CR LF` moves the cursor exactly as the
//! line did (column 0 before and after, one row down or one scroll), so
//! everything but that row, which is gone at the end of the run, is the
//! same. `N > rows` consecutive skipped lines are fed as `rows` of `CR LF`:
//! in both cases the last LF scrolls (the cursor starts on a row >= 0 and
//! moves `rows` or more times), the cursor is on the bottom row, which is a
//! fresh blank row, and the last skipped line's `rows - 1` or more LFs that
//! follow scroll off every row above it, whatever they held.
//!
//! A scroll region (DECSTBM, `CSI t;b r`) changes point 4, and `vt100` does
//! not expose it: `Scan` follows it from the bytes, per screen (primary and
//! alternate), and nothing is skipped while the active screen's region may
//! be smaller than the screen. `vt100` resets both on RIS (`ESC c`) and does
//! not implement DECSTR (`CSI ! p`), so only the former clears it here.

use std::ops::Range;

/// The window title and icon name (OSC 0, 1 and 2), which `vt100` reports
/// only through callbacks, kept for the screen replay.
#[derive(Debug, Default)]
struct Titles {
    title: Vec<u8>,
    icon: Vec<u8>,
}

/// A title longer than this is cut: it is replayed to every client.
const MAX_TITLE: usize = 4096;

fn keep_title(to: &mut Vec<u8>, s: &[u8]) {
    to.clear();
    // BEL and ESC would end the OSC early when replayed.
    to.extend(
        s.iter()
            .copied()
            .filter(|&b| b != 0x07 && b != 0x1b)
            .take(MAX_TITLE),
    );
}

impl vt100::Callbacks for Titles {
    fn set_window_icon_name(&mut self, _: &mut vt100::Screen, name: &[u8]) {
        keep_title(&mut self.icon, name);
    }

    fn set_window_title(&mut self, _: &mut vt100::Screen, title: &[u8]) {
        keep_title(&mut self.title, title);
    }

    fn unhandled_osc(&mut self, _: &mut vt100::Screen, params: &[&[u8]]) {
        // A title with `;` in it arrives split at each `;`.
        if let [which @ (b"0" | b"1" | b"2"), rest @ ..] = params {
            let joined = rest.join(&b';');
            if which != b"1" {
                keep_title(&mut self.title, &joined);
            }
            if which != b"2" {
                keep_title(&mut self.icon, &joined);
            }
        }
    }
}

const ESC: u8 = 0x1b;
const CR: u8 = b'\r';
const LF: u8 = b'\n';

/// `vte`'s parser states, merged where the merge can only make `Scan`
/// think it is outside the ground state when `vte` is in it (never the
/// reverse).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Ground,
    Escape,
    EscapeIntermediate,
    /// CSI entry, parameters, intermediates or ignore: all end on a final
    /// byte 0x40..=0x7E.
    Csi,
    /// DCS entry, parameters or intermediates.
    DcsHead,
    /// DCS passthrough or ignore, SOS, PM, APC: ended by CAN, SUB or ESC
    /// (passthrough also by 0x9C, which is ignored here: staying out of the
    /// ground state longer only skips less).
    String,
    Osc,
}

/// A CSI sequence being read, as far as DECSTBM needs it.
#[derive(Clone, Copy, Debug, Default)]
struct CsiRead {
    /// Anything but digits and one `;`: an intermediate, a private marker,
    /// a subparameter, a third parameter. Then `r` is not a DECSTBM that
    /// this reads exactly, and the region is taken as maybe set.
    odd: bool,
    params: [u16; 2],
    /// Index of the parameter being read.
    at: usize,
}

/// What the scanner saw end, for the caller to act on.
enum Seen {
    Nothing,
    /// DECSTBM: whether it makes the region the whole screen (at `rows`),
    /// or `None` when not read exactly.
    Region(Option<(u16, u16)>),
    Reset,
}

/// A mirror of `vte`'s state machine, byte by byte outside the ground
/// state (see `vte::Parser::advance`), plus the scroll regions.
#[derive(Debug)]
struct Scan {
    state: State,
    csi: CsiRead,
    /// Per screen (primary, alternate): a scroll region may be set.
    region: [bool; 2],
}

impl Scan {
    fn new() -> Self {
        Scan {
            state: State::Ground,
            csi: CsiRead::default(),
            region: [false, false],
        }
    }

    /// One byte outside the ground state.
    fn step(&mut self, b: u8) -> Seen {
        use State::*;
        // "Anywhere" transitions, as `vte` applies them in every state but
        // the ground (CAN and SUB execute and end the sequence; ESC starts
        // a new one).
        match (self.state, b) {
            (_, 0x18 | 0x1a) => {
                self.state = Ground;
                return Seen::Nothing;
            }
            (Escape, ESC) => return Seen::Nothing,
            (_, ESC) => {
                self.state = Escape;
                return Seen::Nothing;
            }
            _ => {}
        }
        match self.state {
            Ground => {}
            Escape => match b {
                0x20..=0x2f => self.state = EscapeIntermediate,
                b'P' => self.state = DcsHead,
                b'X' | b'^' | b'_' => self.state = String,
                b'[' => {
                    self.csi = CsiRead::default();
                    self.state = Csi;
                }
                b']' => self.state = Osc,
                0x30..=0x7e => {
                    self.state = Ground;
                    if b == b'c' {
                        return Seen::Reset;
                    }
                }
                _ => {}
            },
            EscapeIntermediate => {
                if let 0x30..=0x7e = b {
                    self.state = Ground;
                }
            }
            Csi => match b {
                b'0'..=b'9' => {
                    if let Some(p) = self.csi.params.get_mut(self.csi.at) {
                        *p = p.saturating_mul(10).saturating_add(u16::from(b - b'0'));
                    }
                }
                b';' => {
                    self.csi.at += 1;
                    if self.csi.at >= self.csi.params.len() {
                        self.csi.odd = true;
                    }
                }
                0x20..=0x2f | b':' | 0x3c..=0x3f => self.csi.odd = true,
                0x40..=0x7e => {
                    self.state = Ground;
                    if b == b'r' {
                        let csi = std::mem::take(&mut self.csi);
                        return Seen::Region((!csi.odd).then_some((csi.params[0], csi.params[1])));
                    }
                }
                _ => {}
            },
            DcsHead => {
                if let 0x40..=0x7e = b {
                    self.state = String;
                }
            }
            String => {}
            Osc => {
                if b == 0x07 {
                    self.state = Ground;
                }
            }
        }
        Seen::Nothing
    }
}

/// Whether DECSTBM with these parameters leaves the region the whole
/// screen, as `vt100` computes it (`Grid::set_scroll_region`).
fn full_region((top, bottom): (u16, u16), rows: u16) -> bool {
    let top = top.max(1) - 1;
    let bottom = if bottom == 0 { rows } else { bottom };
    let bottom = (bottom - 1).min(rows.saturating_sub(1));
    top >= bottom || (top == 0 && bottom == rows.saturating_sub(1))
}

/// Point 3 of the module's proof for the line's bytes before its final CR.
fn plain_short(c: &[u8], cols: u16) -> bool {
    if c.len() >= usize::from(cols) {
        return false;
    }
    let Some(&first) = c.first() else {
        return true;
    };
    if !(0x20..0x7f).contains(&first) {
        return false;
    }
    // Without an early exit, so that the loop is vectorised: lines are
    // short, and a flood is almost only lines that pass.
    let (control, high) = c.iter().fold((false, 0u8), |(control, high), &b| {
        (control | (b < 0x20) | (b == 0x7f), high | b)
    });
    if control {
        return false;
    }
    high < 0x80
        || std::str::from_utf8(c)
            .is_ok_and(|s| !s.chars().any(|ch| ('\u{80}'..='\u{9f}').contains(&ch)))
}

/// The headless terminal: `vt100` plus what it takes to skip exactly.
pub struct Emulator {
    parser: vt100::Parser<Titles>,
    scan: Scan,
    /// Bytes of output given to `feed` and not parsed.
    skipped: u64,
    /// LF positions of the ground run being looked at (kept to reuse).
    lfs: Vec<usize>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("scan", &self.scan)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

/// `vt100` 0.16 panics (an overflow, then an `unwrap` of a row that does
/// not exist) when a line wraps on a screen of 1 row, or a wide character
/// is printed on one of 1 column: a program could stop the terminal's
/// reader with a poisoned lock. The emulator is at least 2 by 2; a 1-row or
/// 1-column terminal (which the contract allows) is replayed as the top
/// left of that.
const MIN_EMULATED: u16 = 2;

impl Emulator {
    /// A blank screen of this size, with no scrollback (see the proof).
    pub fn new(rows: u16, cols: u16) -> Self {
        let (rows, cols) = (rows.max(MIN_EMULATED), cols.max(MIN_EMULATED));
        Emulator {
            parser: vt100::Parser::new_with_callbacks(rows, cols, 0, Titles::default()),
            scan: Scan::new(),
            skipped: 0,
            lfs: Vec::new(),
        }
    }

    pub fn set_size(&mut self, rows: u16, cols: u16) {
        // A region that was the whole screen stays so (`Grid::set_size`
        // moves its bottom with the screen's); one that was not is still
        // taken as maybe set.
        self.parser
            .screen_mut()
            .set_size(rows.max(MIN_EMULATED), cols.max(MIN_EMULATED));
    }

    /// Bytes given to `feed` that were never parsed.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Feeds output, continuing the bytes fed before, skipping what the
    /// module's proof allows.
    pub fn feed(&mut self, bytes: &[u8]) {
        // `fed`: bytes before it are parsed (or skipped); every split of
        // the parser's input falls after an ASCII byte that `vte` read
        // outside a UTF-8 sequence, so no character is cut differently.
        let (mut i, mut fed) = (0, 0);
        while i < bytes.len() {
            if self.scan.state == State::Ground {
                let end = memchr::memchr(ESC, &bytes[i..]).map_or(bytes.len(), |k| i + k);
                fed = self.skim(bytes, i..end, fed);
                i = end;
                if i < bytes.len() {
                    self.scan.state = State::Escape;
                    i += 1;
                }
                continue;
            }
            match self.scan.step(bytes[i]) {
                Seen::Nothing => {}
                Seen::Reset => self.scan.region = [false, false],
                Seen::Region(params) => {
                    // Which screen it applied to: the parser must have read it.
                    self.process(&bytes[fed..=i]);
                    fed = i + 1;
                    let screen = self.parser.screen();
                    let rows = screen.size().0;
                    let set = !params.is_some_and(|p| full_region(p, rows));
                    self.scan.region[usize::from(screen.alternate_screen())] = set;
                }
            }
            i += 1;
        }
        self.process(&bytes[fed..]);
    }

    /// Looks at a ground run `run` of `bytes` (no ESC in it) and feeds the
    /// parser up to its skipped lines, returning the new `fed`.
    fn skim(&mut self, bytes: &[u8], run: Range<usize>, mut fed: usize) -> usize {
        let (rows, cols) = self.parser.screen().size();
        let rows_n = usize::from(rows);
        // A line can be skipped only with `rows` LFs from its own on, and
        // an LF before it: cheap ways out first.
        if run.len() <= rows_n * 2 {
            return fed;
        }
        self.lfs.clear();
        self.lfs
            .extend(memchr::memchr_iter(LF, &bytes[run.clone()]).map(|k| run.start + k));
        if self.lfs.len() <= rows_n {
            return fed;
        }
        // The scroll region of the screen in use at the run's start.
        self.process(&bytes[fed..run.start]);
        fed = run.start;
        if self.scan.region[usize::from(self.parser.screen().alternate_screen())] {
            return fed;
        }
        let lfs = std::mem::take(&mut self.lfs);
        let last = lfs.len() - rows_n;
        let mut j = 1;
        while j <= last {
            let first = j;
            while j <= last && self.skippable(bytes, &run, lfs[j - 1], lfs[j], cols) {
                j += 1;
            }
            if j > first {
                let lines = j - first;
                let (from, to) = (lfs[first - 1] + 1, lfs[j - 1] + 1);
                self.process(&bytes[fed..from]);
                for _ in 0..lines.min(rows_n) {
                    self.process(b"\r\n");
                }
                self.skipped += (to - from - 2 * lines.min(rows_n)) as u64;
                fed = to;
            } else {
                j += 1;
            }
        }
        self.lfs = lfs;
        fed
    }

    /// Points 2 and 3 of the proof for the line after the LF at `before`
    /// up to the LF at `lf`, both inside the ground run `run`.
    fn skippable(
        &self,
        bytes: &[u8],
        run: &Range<usize>,
        before: usize,
        lf: usize,
        cols: u16,
    ) -> bool {
        before > run.start
            && bytes[before - 1] == CR
            && lf > before + 1
            && bytes[lf - 1] == CR
            && plain_short(&bytes[before + 1..lf - 1], cols)
    }

    /// Feeds every byte, for comparison in tests.
    #[doc(hidden)]
    pub fn feed_every_byte(&mut self, bytes: &[u8]) {
        self.process(bytes);
    }

    /// `vt100` 0.16 also panics on a wide character cut by a narrowing
    /// resize (an `unwrap` past the row's end). Output from the terminal's
    /// program must not stop its reader or poison its locks: the screen
    /// is started afresh (same size and titles) and the panic logged.
    fn process(&mut self, bytes: &[u8]) {
        let run =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.parser.process(bytes)));
        if run.is_err() {
            tracing::warn!("the terminal emulator failed on this output; its screen starts afresh");
            let (rows, cols) = self.parser.screen().size();
            let titles = std::mem::take(self.parser.callbacks_mut());
            self.parser = vt100::Parser::new_with_callbacks(rows, cols, 0, titles);
            self.scan = Scan::new();
        }
    }

    /// Bytes that reproduce the screen on a fresh terminal: the alternate
    /// screen, colours, cursor, modes and title included.
    pub fn screen_bytes(&self) -> Vec<u8> {
        let screen = self.parser.screen();
        let titles = self.parser.callbacks();
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(b"\x1b[0m\x1b[?1049l\x1b[H\x1b[2J");
        if titles.title == titles.icon {
            if !titles.title.is_empty() {
                osc(&mut out, b"0", &titles.title);
            }
        } else {
            osc(&mut out, b"1", &titles.icon);
            osc(&mut out, b"2", &titles.title);
        }
        if screen.alternate_screen() {
            out.extend_from_slice(b"\x1b[?1049h\x1b[H\x1b[2J");
        }
        out.extend_from_slice(&screen.state_formatted());
        out.extend_from_slice(&screen.cursor_state_formatted());
        out
    }
}

fn osc(out: &mut Vec<u8>, which: &[u8], text: &[u8]) {
    out.extend_from_slice(b"\x1b]");
    out.extend_from_slice(which);
    out.push(b';');
    out.extend_from_slice(text);
    out.push(0x07);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay_of(output: &[u8]) -> Vec<u8> {
        let mut e = Emulator::new(24, 80);
        e.feed(output);
        e.screen_bytes()
    }

    #[test]
    fn the_replay_sets_the_title_and_icon_name_last_given() {
        let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        let r = replay_of(b"\x1b]0;one\x07text\x1b]0;two\x1b\\");
        assert!(find(&r, b"\x1b]0;two\x07"));
        assert!(!find(&r, b"one"));
        let r = replay_of(b"\x1b]2;a;b\x07\x1b]1;icon\x07");
        assert!(find(&r, b"\x1b]2;a;b\x07"));
        assert!(find(&r, b"\x1b]1;icon\x07"));
        // Nothing set: no OSC at all.
        assert!(!find(&replay_of(b"plain"), b"\x1b]"));
        // A hostile title cannot end the OSC early or grow without bound.
        let mut long = b"\x1b]2;".to_vec();
        long.extend(std::iter::repeat_n(b'x', 100_000));
        long.push(0x07);
        assert!(replay_of(&long).len() < 10_000);
    }

    /// Feeds `chunks` to a skipping emulator and their concatenation,
    /// every byte, to another; asserts the same screen and returns how
    /// many bytes the first skipped.
    fn same_screen(rows: u16, cols: u16, chunks: &[&[u8]]) -> u64 {
        let (mut skim, mut every) = (Emulator::new(rows, cols), Emulator::new(rows, cols));
        for c in chunks {
            skim.feed(c);
        }
        every.feed_every_byte(&chunks.concat());
        assert_eq!(
            String::from_utf8_lossy(&skim.screen_bytes()),
            String::from_utf8_lossy(&every.screen_bytes()),
        );
        skim.skipped()
    }

    fn flood(lines: usize, line: &str) -> Vec<u8> {
        (0..lines)
            .flat_map(|i| format!("{line} {i}\r\n").into_bytes())
            .collect()
    }

    #[test]
    fn a_flood_of_plain_lines_is_mostly_skipped_and_the_screen_is_exact() {
        let out = flood(10_000, "some log line");
        let skipped = same_screen(24, 80, &[b"$ prompt\r\n", &out, b"$ "]);
        assert!(
            skipped > out.len() as u64 * 95 / 100,
            "{skipped} of {}",
            out.len()
        );
        // The same flood after a screen drawn with the cursor at the top
        // and colours on: what stays below the cursor is kept.
        let mut drawn = b"\x1b[2J".to_vec();
        for r in 1..=24 {
            drawn.extend(format!("\x1b[{r};1H\x1b[3{}mrow {r} of the old screen", r % 8).bytes());
        }
        drawn.extend(b"\x1b[1;1H\x1b[0m");
        assert!(same_screen(24, 80, &[&drawn, &out]) > 0);
        // Fewer lines than rows after the skippable ones: a short flood.
        assert!(same_screen(24, 80, &[&drawn, &flood(30, "x")]) > 0);
        // Across feeds cut anywhere, even inside a line.
        let (a, b) = out.split_at(12_345);
        assert!(same_screen(24, 80, &[a, b]) > 0);
        // The benchmark's output (`base64`: 76 columns and CR LF), fed in
        // the terminal's batches of 256 KiB: about 1% is parsed.
        let line = format!("{}\r\n", "A".repeat(76));
        let b64 = line.repeat((4 << 20) / line.len());
        let mut e = Emulator::new(24, 80);
        for batch in b64.as_bytes().chunks(256 * 1024) {
            e.feed(batch);
        }
        assert!(e.skipped() > b64.len() as u64 * 98 / 100, "{}", e.skipped());
        // UTF-8, wide characters and combining marks after the first column.
        let wide = flood(500, "x 日本語 e\u{301} ünïcödé");
        assert!(same_screen(24, 80, &[&wide]) > 0);
    }

    #[test]
    fn nothing_is_skipped_while_a_scroll_region_may_be_set() {
        let out = flood(500, "line");
        assert_eq!(same_screen(24, 80, &[b"\x1b[2;10r", &out]), 0);
        // Set in a CSI cut across two feeds.
        assert_eq!(same_screen(24, 80, &[b"\x1b[2;", b"10r", &out]), 0);
        // Not read exactly: taken as set.
        assert_eq!(same_screen(24, 80, &[b"\x1b[2:1;10r", &out]), 0);
        // Reset by `CSI r`, by its full-screen form, and by RIS.
        for reset in [
            &b"\x1b[r"[..],
            b"\x1b[1;24r",
            b"\x1b[;r",
            b"\x1b[0;99r",
            b"\x1bc",
        ] {
            let skipped = same_screen(24, 80, &[b"\x1b[2;10r", reset, &out]);
            assert!(skipped > 0, "{}", String::from_utf8_lossy(reset));
        }
        // DECSTR is not implemented by vt100: it resets nothing.
        assert_eq!(same_screen(24, 80, &[b"\x1b[2;10r\x1b[!p", &out]), 0);
        // Each screen has its own: a region on the alternate screen does
        // not hold the primary one back, and is still there on return.
        let alt = b"\x1b[?1049h\x1b[5;10r\x1b[?1049l";
        assert!(same_screen(24, 80, &[alt, &out]) > 0);
        assert_eq!(same_screen(24, 80, &[alt, b"\x1b[?47h", &out]), 0);
        // A region that a resize makes the whole screen is still taken as
        // maybe set (the scanner does not follow resizes): it only skips less.
        let mut e = Emulator::new(24, 80);
        e.feed(b"\x1b[1;20r");
        e.set_size(20, 80);
        e.feed(&out);
        assert_eq!(e.skipped(), 0);
    }

    #[test]
    fn lines_that_could_show_or_act_elsewhere_are_parsed() {
        let cases: Vec<Vec<u8>> = vec![
            // No CR: each line starts where the one before ended.
            (0..200)
                .flat_map(|i| format!("line {i}\n").into_bytes())
                .collect(),
            // As long as the screen is wide: it wraps.
            flood(200, &"w".repeat(78)),
            // A combining mark in the first column joins the row above.
            flood(200, "\u{301}mark"),
            // Tabs, backspace, other controls, DEL, C1 and invalid UTF-8.
            flood(200, "a\tb"),
            flood(200, "ab\x08c"),
            flood(200, "a\x0bb"),
            flood(200, "a\x7fb"),
            flood(200, "a\u{85}b"),
            (0..200)
                .flat_map(|i| [b"bad \xff ".to_vec(), format!("{i}\r\n").into_bytes()].concat())
                .collect(),
            // Inside an OSC string, a DCS string or an APC: not printed.
            [b"\x1b]0;".to_vec(), flood(200, "title"), b"\x07".to_vec()].concat(),
            [b"\x1bPq".to_vec(), flood(200, "dcs"), b"\x1b\\".to_vec()].concat(),
            [b"\x1b_".to_vec(), flood(200, "apc"), b"\x1b\\".to_vec()].concat(),
        ];
        for case in &cases {
            let skipped = same_screen(24, 80, &[case]);
            assert_eq!(skipped, 0, "{}", String::from_utf8_lossy(case));
        }
        // The strings' own lines are never skipped: only the last rows'
        // worth of bytes after the terminator could be.
        let osc = [b"\x1b]0;".to_vec(), flood(200, "title"), b"\x07".to_vec()].concat();
        assert_eq!(same_screen(24, 80, &[&osc, &flood(10, "after")]), 0);
    }

    #[test]
    fn a_screen_of_one_row_or_one_column_survives_wraps_and_wide_characters() {
        let out = "wrapping past the edge 日本 \u{301}\r\n".repeat(50);
        for (rows, cols) in [(1, 1), (1, 80), (24, 1), (1, 2)] {
            let mut e = Emulator::new(rows, cols);
            e.feed(out.as_bytes());
            e.set_size(1, 1);
            e.feed(out.as_bytes());
            assert!(!e.screen_bytes().is_empty());
        }
    }

    #[test]
    fn a_wide_character_cut_by_a_resize_does_not_stop_the_emulator() {
        let mut e = Emulator::new(24, 10);
        e.feed("abcdefgh日".as_bytes());
        e.set_size(24, 9);
        e.feed("\rabcdefg日".as_bytes());
        e.feed(b"\x1b]0;still here\x07after");
        let replay = String::from_utf8_lossy(&e.screen_bytes()).into_owned();
        assert!(
            replay.contains("still here") && replay.contains("after"),
            "{replay}"
        );
    }

    #[test]
    fn the_scanner_leaves_strings_and_sequences_as_vte_does() {
        // Each of these ends its sequence; what follows is printed text.
        for end in [
            &b"\x1b[1;2m"[..],
            b"\x1b]0;t\x07",
            b"\x1b]0;t\x1b\\",
            b"\x1bP1$r\x1b\\",
            b"\x1b(B",
            b"\x1b[1\x18",
            b"\x1b]0;t\x1a",
        ] {
            let skipped = same_screen(24, 80, &[end, &flood(300, "text")]);
            assert!(skipped > 0, "{}", String::from_utf8_lossy(end));
        }
        // A DCS ended by the C1 string terminator (0x9c): vte is back in
        // the ground state, the scanner still waits (it may only skip less).
        assert_eq!(same_screen(24, 80, &[b"\x1bPq\x9c", &flood(300, "t")]), 0);
    }
}
