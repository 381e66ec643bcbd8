//! LSP text edits (`didChange` content changes): positions are (line,
//! character) with characters counted in UTF-16 code units or UTF-8 bytes.
//! A position beyond its line or the text, or inside a character, is refused.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Utf16,
    Utf8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: u32,
    pub character: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextEdit {
    pub start: Position,
    pub end: Position,
    pub text: String,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("edit {index}: {why}")]
pub struct EditError {
    pub index: usize,
    pub why: String,
}

/// The byte offset of a position in `text`.
fn offset(text: &str, pos: Position, enc: Encoding) -> Result<usize, String> {
    let mut line_start = 0;
    for _ in 0..pos.line {
        match text[line_start..].find('\n') {
            Some(i) => line_start += i + 1,
            None => {
                return Err(format!(
                    "line {} is beyond the text's {} lines",
                    pos.line,
                    text.matches('\n').count() + 1
                ))
            }
        }
    }
    let rest = &text[line_start..];
    let mut line = &rest[..rest.find('\n').unwrap_or(rest.len())];
    if let Some(l) = line.strip_suffix('\r') {
        line = l;
    }
    let want = pos.character as usize;
    let mut units = 0;
    for (i, c) in line.char_indices() {
        if units == want {
            return Ok(line_start + i);
        }
        units += match enc {
            Encoding::Utf16 => c.len_utf16(),
            Encoding::Utf8 => c.len_utf8(),
        };
        if units > want {
            return Err(format!(
                "character {} of line {} is inside a character",
                pos.character, pos.line
            ));
        }
    }
    if units == want {
        return Ok(line_start + line.len());
    }
    Err(format!(
        "character {} is beyond the end of line {} ({} units long)",
        pos.character, pos.line, units
    ))
}

/// Applies edits in order, each to the result of the one before.
pub fn apply(text: &str, edits: &[TextEdit], enc: Encoding) -> Result<String, EditError> {
    let mut cur = text.to_owned();
    for (index, e) in edits.iter().enumerate() {
        let err = |why| EditError { index, why };
        let start = offset(&cur, e.start, enc).map_err(err)?;
        let end = offset(&cur, e.end, enc).map_err(err)?;
        if end < start {
            return Err(err("its end is before its start".into()));
        }
        cur.replace_range(start..end, &e.text);
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(line: u32, character: u32) -> Position {
        Position { line, character }
    }

    fn edit(s: (u32, u32), e: (u32, u32), text: &str) -> TextEdit {
        TextEdit {
            start: pos(s.0, s.1),
            end: pos(e.0, e.1),
            text: text.into(),
        }
    }

    #[test]
    fn utf16_positions_around_emoji_and_cjk() {
        // "😀" is 2 UTF-16 units (4 bytes); "漢" is 1 unit (3 bytes).
        let text = "a😀b漢c\nsecond\n";
        let out = apply(text, &[edit((0, 3), (0, 4), "B")], Encoding::Utf16).unwrap();
        assert_eq!(out, "a😀B漢c\nsecond\n");
        let out = apply(text, &[edit((0, 4), (0, 5), "字")], Encoding::Utf16).unwrap();
        assert_eq!(out, "a😀b字c\nsecond\n");
        // Inside the surrogate pair.
        assert!(apply(text, &[edit((0, 2), (0, 2), "x")], Encoding::Utf16).is_err());
        // UTF-8: "b" starts at byte 5.
        let out = apply(text, &[edit((0, 5), (0, 6), "B")], Encoding::Utf8).unwrap();
        assert_eq!(out, "a😀B漢c\nsecond\n");
        assert!(apply(text, &[edit((0, 2), (0, 2), "x")], Encoding::Utf8).is_err());
    }

    #[test]
    fn sequential_and_multiline() {
        let text = "one\ntwo\nthree";
        let out = apply(
            text,
            &[edit((0, 0), (1, 3), "ONE"), edit((0, 3), (0, 3), "!\nnew")],
            Encoding::Utf16,
        )
        .unwrap();
        assert_eq!(out, "ONE!\nnew\nthree");
        // The empty line after a final newline exists; the next does not.
        assert_eq!(
            apply("x\n", &[edit((1, 0), (1, 0), "y")], Encoding::Utf16).unwrap(),
            "x\ny"
        );
        assert!(apply("x\n", &[edit((2, 0), (2, 0), "y")], Encoding::Utf16).is_err());
        assert!(apply("x\n", &[edit((0, 2), (0, 2), "y")], Encoding::Utf16).is_err());
        assert!(apply("xy", &[edit((0, 2), (0, 1), "")], Encoding::Utf16).is_err());
        // CRLF: the \r is not part of the line.
        assert!(apply("ab\r\n", &[edit((0, 3), (0, 3), "y")], Encoding::Utf16).is_err());
    }
}
