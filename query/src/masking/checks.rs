//! Candidate validators: the checks that turn a regex hit into a detection.
//! Regexes alone would mask every 16-digit run or dotted quad; checksums
//! (Luhn, ISO 13616 mod-97), value ranges (IPv4 octets, SSN areas) and
//! boundary rules keep random numbers, versions and code readable.
//!
//! All functions are total: they take any text and never panic.

use std::net::Ipv6Addr;
use std::ops::Range;

/// The character just before byte `at`, if any.
pub(crate) fn char_before(text: &str, at: usize) -> Option<char> {
    text.get(..at).and_then(|s| s.chars().next_back())
}

/// The character at byte `at`, if any.
pub(crate) fn char_at(text: &str, at: usize) -> Option<char> {
    text.get(at..).and_then(|s| s.chars().next())
}

/// The character after the one at byte `at` (two ahead of `at - 1`).
fn char_after_next(text: &str, at: usize) -> Option<char> {
    let mut it = text.get(at..)?.chars();
    it.next();
    it.next()
}

fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

fn is_digit(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_digit())
}

/// True when the match `r` is followed by `.`/`-` and a digit: the hit is
/// a prefix of a longer dotted or dashed number (a version, an OID, a date).
fn continues_number(text: &str, r: &Range<usize>) -> bool {
    matches!(char_at(text, r.end), Some('.' | '-')) && is_digit(char_after_next(text, r.end))
}

/// Luhn (mod 10) over ASCII digits; non-digits are ignored.
pub(crate) fn luhn(digits: impl DoubleEndedIterator<Item = u8>) -> bool {
    let mut sum = 0u32;
    let mut count = 0usize;
    for (i, d) in digits.rev().enumerate() {
        let mut v = u32::from(d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
        count += 1;
    }
    count > 0 && sum.is_multiple_of(10)
}

/// The digits (0-9 values) of `s`, separators skipped.
fn digit_values(s: &str) -> impl DoubleEndedIterator<Item = u8> + '_ {
    s.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0')
}

/// Payment card number: 13-19 digits, an issuer prefix that exists (major
/// industry identifier 2-6, and 2221-2720 for Mastercard's 2-series) and a
/// valid Luhn check digit. Leading digit 1 is excluded so millisecond
/// timestamps (13 digits starting with 1) are never taken for cards.
pub(crate) fn is_card(s: &str) -> bool {
    let digits: Vec<u8> = digit_values(s).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let prefix_ok = match digits.first() {
        Some(2) => {
            let p = digits
                .iter()
                .take(4)
                .fold(0u32, |acc, d| acc * 10 + u32::from(*d));
            (2221..=2720).contains(&p)
        }
        Some(3..=6) => true,
        _ => false,
    };
    prefix_ok && luhn(digits.into_iter())
}

/// Finds a card inside a candidate run of digit groups. The regex takes the
/// longest run, which can include a neighbouring number ("4111 1111 1111
/// 1111 2024"); this tries every sub-run that starts and ends on a group
/// boundary, longest first, so such a card is still found.
pub(crate) fn card_in(text: &str, r: Range<usize>) -> Option<Range<usize>> {
    if is_word(char_before(text, r.start)) || is_word(char_at(text, r.end)) {
        return None;
    }
    let cand = text.get(r.clone())?;
    if is_card(cand) {
        return Some(r);
    }
    // Group boundaries: byte offsets (in cand) where a group starts / ends.
    let mut starts = vec![0usize];
    let mut ends = Vec::new();
    for (i, b) in cand.bytes().enumerate() {
        if b == b' ' || b == b'-' {
            ends.push(i);
            starts.push(i + 1);
        }
    }
    ends.push(cand.len());
    let mut best: Option<Range<usize>> = None;
    for &s in &starts {
        for &e in ends.iter().rev() {
            if e <= s || best.as_ref().is_some_and(|b| b.len() >= e - s) {
                continue;
            }
            if cand.get(s..e).is_some_and(is_card) {
                best = Some(r.start + s..r.start + e);
            }
        }
    }
    best
}

/// ISO 13616 check: moving the first four characters to the end and reading
/// letters as 10-35, the number is 1 mod 97. `compact` has no spaces.
pub(crate) fn iban_mod97(compact: &str) -> bool {
    let bytes = compact.as_bytes();
    if !(15..=34).contains(&bytes.len()) {
        return false;
    }
    let (head, tail) = bytes.split_at(4);
    let mut rem = 0u32;
    for &b in tail.iter().chain(head) {
        match b {
            b'0'..=b'9' => rem = (rem * 10 + u32::from(b - b'0')) % 97,
            b'A'..=b'Z' => rem = (rem * 100 + u32::from(b - b'A' + 10)) % 97,
            // ISO 13616's electronic form is upper case; written by hand
            // it is often lower case, and the check is the same.
            b'a'..=b'z' => rem = (rem * 100 + u32::from(b - b'a' + 10)) % 97,
            _ => return false,
        }
    }
    rem == 1
}

/// Finds an IBAN in a candidate: the whole of it, or (when the regex took a
/// following 4-character word as one more group) the longest prefix that
/// ends at a space and passes mod-97.
pub(crate) fn iban_in(text: &str, r: Range<usize>) -> Option<Range<usize>> {
    if is_word(char_before(text, r.start)) {
        return None;
    }
    let cand = text.get(r.clone())?;
    let mut ends: Vec<usize> = cand
        .bytes()
        .enumerate()
        .filter(|(_, b)| *b == b' ')
        .map(|(i, _)| i)
        .collect();
    ends.push(cand.len());
    for &e in ends.iter().rev() {
        let part = cand.get(..e)?;
        let compact: String = part.chars().filter(|c| *c != ' ').collect();
        if iban_mod97(&compact) {
            return Some(r.start..r.start + e);
        }
    }
    None
}

/// Dotted-quad IPv4: four decimal octets 0-255 without leading zeros, not
/// part of a longer dotted number (so `1.2.3.4.5` and `999.1.1.1` pass).
pub(crate) fn ipv4_in(text: &str, r: Range<usize>) -> Option<Range<usize>> {
    let before = char_before(text, r.start);
    if is_word(before) || before == Some('.') || continues_number(text, &r) {
        return None;
    }
    let cand = text.get(r.clone())?;
    let mut count = 0;
    for octet in cand.split('.') {
        count += 1;
        let ok = !octet.is_empty()
            && octet.len() <= 3
            && octet.bytes().all(|b| b.is_ascii_digit())
            && !(octet.len() > 1 && octet.starts_with('0'))
            && octet.parse::<u16>().is_ok_and(|v| v <= 255);
        if !ok {
            return None;
        }
    }
    (count == 4).then_some(r)
}

/// IPv6 in any textual form the standard library parses (full, `::`
/// compressed, IPv4-embedded). Requires at least four hex digits, which
/// keeps `::1`, `Vec::new` or `d::f` in code out, and a non-word boundary.
/// A single trailing `:` (end of a sentence) is not part of the address.
pub(crate) fn ipv6_in(text: &str, r: Range<usize>) -> Option<Range<usize>> {
    let mut r = r;
    // The regex includes the character before the address, if any.
    match char_at(text, r.start) {
        Some(c) if c.is_ascii_hexdigit() || c == ':' => {}
        Some(c) => r.start += c.len_utf8(),
        None => return None,
    }
    if is_word(char_before(text, r.start)) || is_word(char_at(text, r.end)) {
        return None;
    }
    let cand = text.get(r.clone())?;
    let cand = match cand.strip_suffix(':') {
        Some(short) if !short.ends_with(':') => {
            r.end -= 1;
            short
        }
        _ => cand,
    };
    if cand.matches(':').count() < 2 {
        return None;
    }
    let hex_digits = cand.bytes().filter(u8::is_ascii_hexdigit).count();
    (hex_digits >= 4 && cand.parse::<Ipv6Addr>().is_ok()).then_some(r)
}

/// US Social Security number `AAA-GG-SSSS` (or space separated), issued
/// ranges only: area not 000, 666 or 900-999, group not 00, serial not 0000.
pub(crate) fn ssn_in(text: &str, r: Range<usize>) -> Option<Range<usize>> {
    if is_word(char_before(text, r.start))
        || matches!(char_before(text, r.start), Some('-' | '.'))
        || continues_number(text, &r)
    {
        return None;
    }
    let cand = text.get(r.clone())?;
    let d: Vec<u32> = cand
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
        .collect();
    let d: [u32; 9] = d.try_into().ok()?;
    let area = d[0] * 100 + d[1] * 10 + d[2];
    let group = d[3] * 10 + d[4];
    let serial = d[5] * 1000 + d[6] * 100 + d[7] * 10 + d[8];
    let ok = area != 0 && area != 666 && area < 900 && group != 0 && serial != 0;
    ok.then_some(r)
}

/// Phone numbers: international `+CC ...` with 8-15 digits (E.164), or
/// North American `(AAA) NNN-NNNN` / `AAA-NNN-NNNN` forms. Bare digit runs
/// are not phones (too many ids and amounts look like them).
pub(crate) fn phone_in(text: &str, r: Range<usize>) -> Option<Range<usize>> {
    let before = char_before(text, r.start);
    if is_word(before) || matches!(before, Some('+' | '-' | '.' | '/')) {
        return None;
    }
    if is_word(char_at(text, r.end)) || continues_number(text, &r) {
        return None;
    }
    let cand = text.get(r.clone())?;
    let digits = cand.bytes().filter(u8::is_ascii_digit).count();
    let ok = if cand.starts_with('+') {
        (8..=15).contains(&digits)
    } else {
        digits == 10 || (digits == 11 && cand.starts_with('1'))
    };
    ok.then_some(r)
}

/// Email address: a boundary before the local part, no leading or trailing
/// dot in the local part, no hyphen at a domain label's edge, and not
/// followed by more word characters.
pub(crate) fn email_in(text: &str, r: Range<usize>) -> Option<Range<usize>> {
    let cand = text.get(r.clone())?;
    let lead = cand.bytes().take_while(|b| *b == b'.').count();
    let r = r.start + lead..r.end;
    let cand = text.get(r.clone())?;
    if is_word(char_at(text, r.end)) || char_at(text, r.end) == Some('-') {
        return None;
    }
    let (local, domain) = cand.split_once('@')?;
    if local.is_empty() || local.ends_with('.') {
        return None;
    }
    let labels_ok = domain
        .split('.')
        .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
    labels_ok.then_some(r)
}

/// API keys and bearer tokens. For `Bearer <token>` only the token is
/// masked (the scheme word stays readable) and the token must look like a
/// credential, not prose: it has a digit, or mixes cases over 20+
/// characters, or is 40+ characters long.
pub(crate) fn api_key_in(text: &str, r: Range<usize>) -> Option<Range<usize>> {
    if is_word(char_before(text, r.start)) || char_before(text, r.start) == Some('-') {
        return None;
    }
    let cand = text.get(r.clone())?;
    let is_bearer = cand
        .get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case("bearer"));
    if !is_bearer {
        // Slugs such as `sk-this-is-a-long-feature-name` are not keys: real
        // OpenAI/Anthropic and Slack tokens always carry digits.
        let needs_digit = cand.starts_with("sk-") || cand.starts_with("xox");
        let ok = !needs_digit || cand.bytes().any(|b| b.is_ascii_digit());
        return ok.then_some(r);
    }
    let token_start = cand
        .char_indices()
        .skip(6)
        .find(|(_, c)| *c != ' ' && *c != '\t')
        .map(|(i, _)| i)?;
    let token = cand.get(token_start..)?;
    let has_digit = token.bytes().any(|b| b.is_ascii_digit());
    let mixed = token.bytes().any(|b| b.is_ascii_uppercase())
        && token.bytes().any(|b| b.is_ascii_lowercase());
    let looks_secret = has_digit || (mixed && token.len() >= 20) || token.len() >= 40;
    looks_secret.then_some(r.start + token_start..r.end)
}

/// JWT: header and payload are non-trivial base64url segments (the header
/// starts `eyJ`, i.e. `{"`), not glued to a longer word.
pub(crate) fn jwt_in(text: &str, r: Range<usize>) -> Option<Range<usize>> {
    if is_word(char_before(text, r.start)) || char_before(text, r.start) == Some('-') {
        return None;
    }
    let cand = text.get(r.clone())?;
    let mut parts = cand.split('.');
    let header = parts.next()?;
    let payload = parts.next()?;
    (header.len() >= 10 && payload.len() >= 2).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known_values() {
        assert!(luhn(digit_values("4111111111111111")));
        assert!(luhn(digit_values("79927398713")));
        assert!(!luhn(digit_values("79927398710")));
        assert!(!luhn(digit_values("")));
    }

    #[test]
    fn mod97_known_values() {
        assert!(iban_mod97("GB82WEST12345698765432"));
        assert!(!iban_mod97("GB82WEST12345698765431"));
        assert!(!iban_mod97("GB82"));
        assert!(iban_mod97("gb82west12345698765432"));
        assert!(!iban_mod97("gb82west12345698765431"));
    }

    #[test]
    fn boundaries_are_char_safe() {
        let s = "é1.2.3.4";
        assert_eq!(char_before(s, 2), Some('é'));
        assert_eq!(char_before(s, 1), None); // inside a char: no panic
        assert_eq!(char_at(s, 1), None);
        assert_eq!(ipv4_in(s, 2..9), None); // glued to a letter
    }
}
