//! Text that came from a server, a store or a bundle, made safe to print on
//! a terminal. Such text is the adversary's: raw escape sequences in an
//! export id, a finding or an error message could move the cursor, erase
//! the lines above ("FAIL ...") and print a clean report in their place.
//! Control characters (and the bidirectional overrides, which reorder what
//! is shown) are printed as escapes (`\u{1b}`) instead.

use std::borrow::Cow;

/// `s` for a single line: every control character escaped, newlines too (a
/// newline in a finding could fake a line of the report).
pub fn line(s: &str) -> Cow<'_, str> {
    escape(s, |c| c.is_control())
}

/// `s` for a block of lines: as [`line`], but newlines and tabs kept.
pub fn block(s: &str) -> Cow<'_, str> {
    escape(s, |c| c.is_control() && c != '\n' && c != '\t')
}

fn escape(s: &str, control: impl Fn(char) -> bool) -> Cow<'_, str> {
    let unsafe_char =
        |c: char| control(c) || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_shown_not_obeyed() {
        let evil = "id\r\u{1b}[2K\u{1b}[1A0 findings\u{202e}\n";
        assert_eq!(
            line(evil),
            "id\\u{d}\\u{1b}[2K\\u{1b}[1A0 findings\\u{202e}\\u{a}"
        );
        assert_eq!(block("a\tb\nc\u{7}"), "a\tb\nc\\u{7}");
        assert!(matches!(line("plain text, é"), Cow::Borrowed(_)));
    }
}
