//! The text detectors look at a second time, folded: forms written to slip
//! past patterns over ASCII become the ASCII they stand for.
//!
//! An address written `alice＠example.com` (fullwidth `＠`), `alice%40example.com`
//! or with a zero-width space inside reads the same to a person and passed every
//! detector. Folding maps fullwidth ASCII (U+FF01-U+FF5E) and the ideographic
//! space to ASCII, `%40` to `@`, and drops invisible characters (zero-width
//! spaces and joiners, word joiner, byte-order mark, soft hyphen); detections in
//! the folded text are mapped back to the characters they came from, so the mask
//! covers the value as written (and any invisible character inside it).

/// The folded text, and for each of its bytes (and its end) the byte offset
/// in the original text where the character it came from starts.
pub(crate) struct Folded {
    pub(crate) text: String,
    starts: Vec<usize>,
}

impl Folded {
    /// The range of the original text that `r` (a range of the folded text)
    /// came from.
    pub(crate) fn original(&self, r: std::ops::Range<usize>) -> std::ops::Range<usize> {
        self.starts[r.start]..self.starts[r.end]
    }
}

/// Invisible characters dropped by folding.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}'
    )
}

/// What `c` folds to, when it folds to one ASCII character.
fn ascii_for(c: char) -> Option<char> {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0),
        '\u{3000}' => Some(' '),
        _ => None,
    }
}

/// `text` folded, or `None` when folding would not change it (the common
/// case, decided by a byte scan before any character is decoded).
pub(crate) fn fold(text: &str) -> Option<Folded> {
    // Every character that folds starts with one of these bytes in UTF-8.
    let candidate = |b: &u8| matches!(b, 0xC2 | 0xE2 | 0xE3 | 0xEF | b'%');
    if !text.as_bytes().iter().any(candidate) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut starts = Vec::with_capacity(text.len() + 1);
    let mut changed = false;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if invisible(c) {
            changed = true;
            continue;
        }
        if c == '%' && text[at..].starts_with("%40") {
            // The `4` and `0` are part of the `@`.
            chars.next();
            chars.next();
            out.push('@');
            starts.push(at);
            changed = true;
            continue;
        }
        let folded = ascii_for(c);
        changed |= folded.is_some();
        let f = folded.unwrap_or(c);
        out.push(f);
        starts.extend(std::iter::repeat_n(at, f.len_utf8()));
    }
    starts.push(text.len());
    changed.then_some(Folded { text: out, starts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_not_folded() {
        assert!(fold("alice@example.com — 100 %").is_none());
        assert!(fold("日本語のテキスト").is_none());
    }

    #[test]
    fn evasive_forms_fold_and_map_back() {
        let text = "mail: alice＠example．com or bo\u{200B}b%40example.com!";
        let f = fold(text).unwrap();
        assert_eq!(f.text, "mail: alice@example.com or bob@example.com!");
        let at = f.text.find("alice").unwrap();
        let r = f.original(at..at + "alice@example.com".len());
        assert_eq!(&text[r], "alice＠example．com");
        let at = f.text.find("bob").unwrap();
        let r = f.original(at..at + "bob@example.com".len());
        assert_eq!(&text[r], "bo\u{200B}b%40example.com");
        // Fullwidth digits and a soft hyphen inside a card number.
        let f = fold("４１１１ 1111\u{00AD}1111 1111").unwrap();
        assert_eq!(f.text, "4111 11111111 1111");
    }
}
