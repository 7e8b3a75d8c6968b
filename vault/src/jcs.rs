//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! The committed record of every log entry (SPEC section 4) is the JCS text of
//! a JSON object, and its SHA-256 leaf hash is what the Merkle tree commits to.
//! Any two implementations must therefore produce byte-identical output for the
//! same JSON value; this module is the single place where that happens.
//!
//! Rules implemented (RFC 8785 section 3.2):
//! * no insignificant whitespace;
//! * object members sorted by their names compared as arrays of UTF-16 code
//!   units (section 3.2.3), recursively;
//! * strings escaped minimally: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, and
//!   `\u00xx` (lowercase hex) for the remaining control characters below
//!   U+0020; everything else, including U+007F and non-ASCII, is emitted as
//!   literal UTF-8 (section 3.2.2.2);
//! * floating-point numbers serialised like ECMAScript's
//!   `Number.prototype.toString` (section 3.2.2.3), via `ryu-js`.
//!
//! **Deliberate deviation:** numbers that `serde_json` holds as integers
//! (`i64` / `u64`) are written exactly as integers, even beyond 2^53 where
//! RFC 8785 (which models every number as an IEEE 754 double) would round
//! them. Rounding would silently change data (e.g. a 64-bit id) inside a
//! tamper-evident record; for all integers of magnitude <= 2^53 the output is
//! identical to RFC 8785.
//!
//! **Parsing caveat:** JCS can only be as exact as the `f64` it is handed.
//! Without its `float_roundtrip` feature, `serde_json` parses some decimal
//! literals one ULP away from the correctly rounded double (RFC 8785's own
//! example `333333333.33333329` is one), which would change the canonical text
//! of client-supplied JSON. Enable `serde_json/float_roundtrip` wherever JSON
//! text is parsed before being canonicalised.

use serde_json::{Map, Number, Value};
use std::fmt::Write as _;

/// Maximum nesting depth of arrays/objects accepted, so that a hostile or
/// accidental deeply nested value yields an error instead of a stack overflow.
/// `serde_json` itself refuses to parse documents nested deeper than 128.
pub const MAX_DEPTH: usize = 512;

/// Why a value could not be canonicalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JcsError {
    /// RFC 8785 section 3.2.2.3: NaN and the infinities have no JSON form and
    /// MUST cause an error. `serde_json` never stores them, but a `Number`
    /// built some other way (e.g. with `arbitrary_precision`) might.
    #[error("number is not finite and has no JSON representation")]
    NonFiniteNumber,
    /// A number that is neither an `i64`/`u64` nor representable as an `f64`.
    #[error("number {0} cannot be represented")]
    UnrepresentableNumber(String),
    /// The value is nested deeper than [`MAX_DEPTH`].
    #[error("value nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Canonicalises `v` into a `String` (UTF-8 JCS text).
///
/// This is what gets hashed into a leaf, so it must be deterministic and
/// identical across implementations.
pub fn to_canonical_string(v: &Value) -> Result<String, JcsError> {
    // Sized up front: grown from empty, a message's JCS text was reallocated
    // and copied again at every doubling (4% of the server under OTLP load).
    let mut out = String::with_capacity(length_hint(v, 0));
    write_value(&mut out, v, 0)?;
    Ok(out)
}

/// Canonicalises `v` into bytes: the UTF-8 encoding of
/// [`to_canonical_string`], convenient for hashing.
pub fn to_canonical_vec(v: &Value) -> Result<Vec<u8>, JcsError> {
    to_canonical_string(v).map(String::into_bytes)
}

/// About the length of `v`'s canonical text, to size it once: strings and
/// brackets are counted exactly, each member and item with one separator (one
/// too many per array or object), literals and numbers as up to 8 bytes. Only
/// escapes and longer numbers make the text outgrow it (and grow once or
/// twice). Stops at [`MAX_DEPTH`] as [`write_value`] does.
fn length_hint(v: &Value, depth: usize) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 8,
        Value::String(s) => s.len() + 2,
        _ if depth >= MAX_DEPTH => 0,
        Value::Array(items) => {
            2 + items
                .iter()
                .map(|i| length_hint(i, depth + 1) + 1)
                .sum::<usize>()
        }
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| k.len() + 4 + length_hint(v, depth + 1))
                .sum::<usize>()
        }
    }
}

fn write_value(out: &mut String, v: &Value, depth: usize) -> Result<(), JcsError> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            if depth >= MAX_DEPTH {
                return Err(JcsError::TooDeep);
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item, depth + 1)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            if depth >= MAX_DEPTH {
                return Err(JcsError::TooDeep);
            }
            write_object(out, map, depth)?;
        }
    }
    Ok(())
}

fn write_object(out: &mut String, map: &Map<String, Value>, depth: usize) -> Result<(), JcsError> {
    out.push('{');
    if in_utf16_order(map) {
        // The common case (every attribute map): no sorting, no allocation.
        write_members(out, map.iter(), depth)?;
    } else {
        let mut members: Vec<(&String, &Value)> = map.iter().collect();
        members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
        write_members(out, members.into_iter(), depth)?;
    }
    out.push('}');
    Ok(())
}

fn write_members<'a>(
    out: &mut String,
    members: impl Iterator<Item = (&'a String, &'a Value)>,
    depth: usize,
) -> Result<(), JcsError> {
    for (i, (k, val)) in members.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, k);
        out.push(':');
        write_value(out, val, depth + 1)?;
    }
    Ok(())
}

/// Whether the map already iterates in RFC 8785 order.
///
/// `serde_json::Map` is ordered by UTF-8 bytes (BTreeMap) or by insertion
/// (`preserve_order`); neither is the UTF-16 order RFC 8785 requires in
/// general, e.g. U+FB33 sorts after U+1F600 in UTF-8 but before it in UTF-16.
/// UTF-8 byte order is code point order, and UTF-16 order differs from it only
/// between a character at or above U+E000 (UTF-8 lead byte 0xEE or more) and
/// one above U+FFFF (a surrogate pair). So keys in strictly increasing byte
/// order, none holding a byte of 0xEE or more, are already in UTF-16 order.
fn in_utf16_order(map: &Map<String, Value>) -> bool {
    let mut prev: Option<&str> = None;
    for k in map.keys() {
        if k.bytes().any(|b| b >= 0xEE) || prev.is_some_and(|p| p.as_bytes() >= k.as_bytes()) {
            return false;
        }
        prev = Some(k);
    }
    true
}

fn write_number(out: &mut String, n: &Number) -> Result<(), JcsError> {
    if let Some(u) = n.as_u64() {
        write_u64(out, u);
        return Ok(());
    }
    if let Some(i) = n.as_i64() {
        // Negative here: `as_u64` took every other integer.
        out.push('-');
        write_u64(out, i.unsigned_abs());
        return Ok(());
    }
    let f = n
        .as_f64()
        .ok_or_else(|| JcsError::UnrepresentableNumber(n.to_string()))?;
    write_f64(out, f)
}

/// Appends bytes written here as ASCII (digits and punctuation) in one copy
/// rather than char by char. Only ASCII reaches it (asserted in debug
/// builds); bytes that were not valid UTF-8 would still be written, each as
/// the char of its own code point, never dropped.
pub(crate) fn push_ascii(o: &mut String, b: &[u8]) {
    debug_assert!(b.is_ascii(), "push_ascii given {b:?}");
    match std::str::from_utf8(b) {
        Ok(s) => o.push_str(s),
        Err(_) => o.extend(b.iter().map(|&c| char::from(c))),
    }
}

/// Appends `v` in decimal, as `write!(o, "{v}")` does without the
/// formatting machinery: the index and session sequence of every committed
/// record, sealed and verified, and every integer of a canonicalised payload.
pub(crate) fn write_u64(o: &mut String, mut v: u64) {
    let mut b = [0u8; 20];
    let mut at = b.len();
    loop {
        at -= 1;
        b[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    push_ascii(o, &b[at..]);
}

/// ECMAScript `Number.prototype.toString` for a finite double.
fn write_f64(out: &mut String, f: f64) -> Result<(), JcsError> {
    if !f.is_finite() {
        return Err(JcsError::NonFiniteNumber);
    }
    if f == 0.0 {
        // Covers -0, which ECMAScript prints as "0".
        out.push('0');
        return Ok(());
    }
    let mut buf = ryu_js::Buffer::new();
    out.push_str(buf.format_finite(f));
    Ok(())
}

/// Writes `s` as an RFC 8785 JSON string, quotes included.
pub fn write_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    // Copy runs of characters that need no escaping in one go, skipping
    // 32 clean bytes at a time, then 8 (content is mostly long, plain text).
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(block) = bytes.get(i..i + 32)
            && block
                .chunks_exact(8)
                .fold(0, |acc, w| acc | escape_mask(word(w)))
                == 0
        {
            i += 32;
            continue;
        }
        if let Some(w) = bytes.get(i..i + 8)
            && escape_mask(word(w)) == 0
        {
            i += 8;
            continue;
        }
        let b = bytes[i];
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x00..=0x1f => None,
            _ => {
                i += 1;
                continue;
            }
        };
        // `i` is at an ASCII byte, hence a char boundary.
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        i += 1;
        start = i;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Eight bytes as a little-endian word (`w` is exactly eight bytes long).
fn word(w: &[u8]) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(w);
    u64::from_le_bytes(b)
}

/// Zero only if none of the eight bytes of `w` is a control character, `"`
/// or a backslash (the bytes JCS escapes); may be non-zero for a clean word,
/// never zero for one that needs escaping (bit tricks from "Bit Twiddling
/// Hacks": a byte below 0x20, and a zero byte after XOR with the quote and
/// backslash). Branch-free, so that four words are tested with one branch.
fn escape_mask(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w;
    (below_space
        | zero_byte(w ^ (ONES * u64::from(b'"')))
        | zero_byte(w ^ (ONES * u64::from(b'\\'))))
        & HIGH
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_are_written_as_the_formatter_writes_them() {
        let mut cases = vec![0u64, 1, 9, 10, 99, 100, 12_345, u64::MAX - 1, u64::MAX];
        cases.extend(
            (0..19)
                .map(|p| 10u64.pow(p))
                .flat_map(|x| [x - 1, x, x + 1]),
        );
        for v in cases {
            let mut o = String::from("x");
            write_u64(&mut o, v);
            assert_eq!(o, format!("x{v}"));
        }
        for i in [-1i64, -9, -10, -12_345, i64::MIN + 1, i64::MIN] {
            assert_eq!(to_canonical_string(&json!(i)).unwrap(), i.to_string());
        }
    }

    /// The size hint covers the canonical text of an OTLP-like attribute map
    /// without escapes (so the text is allocated once), overshooting by just
    /// the separators and literal slack its doc comment names.
    #[test]
    fn length_hint_covers_unescaped_text_with_little_slack() {
        let v = json!({
            "gen_ai.conversation.id": "bench-0",
            "otlp.scope": {"attributes": {}, "name": "", "version": ""},
            "otlp.span": {"events": [], "flags": 0, "kind": 3, "name": "chat m",
                          "status": {"code": 0, "message": ""}},
            "parts": [{"content": "x".repeat(1000), "type": "text"}, null, true],
        });
        let text = to_canonical_string(&v).unwrap();
        let hint = length_hint(&v, 0);
        assert!(hint >= text.len(), "hint {hint} < {}", text.len());
        // Exactly: one separator too many in each of the 6 non-empty arrays
        // and objects, 7 bytes over each of the 3 one-digit numbers, one over
        // `null` and one over `true`.
        assert_eq!(
            hint - text.len(),
            6 + 3 * 7 + 2,
            "hint {hint} for {}",
            text.len()
        );
        // Escapes are what the hint does not count.
        let escaped = json!({"a": "\n\"".repeat(100)});
        assert!(length_hint(&escaped, 0) < to_canonical_string(&escaped).unwrap().len());
    }

    /// JCS escapes strings as JSON.stringify does, which is what serde_json
    /// writes too: every byte value, at every offset of the 32- and
    /// eight-byte skipping, around plain and multi-byte text.
    #[test]
    fn string_escaping_matches_json_at_every_offset() {
        let mut specials: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        specials.extend(["é", "€", "😀", "\u{7f}", "\u{2028}"].map(String::from));
        for sp in &specials {
            for pad in 0..70 {
                for tail in [0, 1, 9, 40] {
                    let s = format!("{}{sp}{}", "a".repeat(pad), "z".repeat(tail));
                    let mut out = String::new();
                    write_string(&mut out, &s);
                    assert_eq!(out, serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    fn canon(text: &str) -> String {
        let v: Value = serde_json::from_str(text).unwrap();
        to_canonical_string(&v).unwrap()
    }

    fn num(f: f64) -> String {
        to_canonical_string(&json!(f)).unwrap()
    }

    #[test]
    fn rfc8785_section_3_2_4_example() {
        // RFC 8785 section 3.2.2 input / section 3.2.4 output. The numbers are
        // parsed with Rust's correctly rounded `str::parse`, because
        // serde_json's default float parser is not correctly rounded
        // (333333333.33333329 comes out one ULP low without serde_json's
        // `float_roundtrip` feature) -- see `serde_json_float_parsing_caveat`.
        let numbers: Vec<Value> = [
            "333333333.33333329",
            "1E30",
            "4.50",
            "2e-3",
            "0.000000000000000000000000001",
        ]
        .iter()
        .map(|t| json!(t.parse::<f64>().unwrap()))
        .collect();
        let mut v: Value = serde_json::from_str(
            r#"{
                "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
                "literals": [null, true, false]
            }"#,
        )
        .unwrap();
        v["numbers"] = Value::Array(numbers);
        let want = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
        assert_eq!(to_canonical_string(&v).unwrap(), want);
        assert_eq!(to_canonical_vec(&v).unwrap(), want.as_bytes());
    }

    #[test]
    fn serde_json_float_parsing_caveat() {
        // Documents why callers hashing parsed JSON should enable serde_json's
        // `float_roundtrip` feature: JCS can only be as exact as the f64 it is
        // given. Either way the output must be one of the two neighbours.
        let v: Value = serde_json::from_str("333333333.33333329").unwrap();
        let got = to_canonical_string(&v).unwrap();
        assert!(
            got == "333333333.3333333" || got == "333333333.33333325",
            "{got}"
        );
    }

    #[test]
    fn maps_in_byte_order_are_written_in_utf16_order() {
        // The unsorted fast path must agree with sorting by UTF-16 code units
        // for every mix of the characters where the two orders part: around
        // U+E000 (lead byte 0xEE), U+FFFF and the surrogate pairs.
        let chars = [
            'a',
            'z',
            '\u{7f}',
            '\u{80}',
            '\u{7ff}',
            '\u{800}',
            '\u{d7ff}',
            '\u{e000}',
            '\u{edff}',
            '\u{ee00}',
            '\u{fb33}',
            '\u{ffff}',
            '\u{10000}',
            '\u{1f600}',
            '\u{10ffff}',
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..2000 {
            let mut m = Map::new();
            for _ in 0..1 + next(6) {
                let key: String = (0..1 + next(3)).map(|_| chars[next(chars.len())]).collect();
                m.insert(key, Value::from(1));
            }
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            let mut want = String::from("{");
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    want.push(',');
                }
                write_string(&mut want, k);
                want.push_str(":1");
            }
            want.push('}');
            assert_eq!(to_canonical_string(&Value::Object(m)).unwrap(), want);
        }
    }

    #[test]
    fn rfc8785_section_3_2_3_sorting() {
        // RFC 8785 section 3.2.3: sorting by UTF-16 code units.
        let input = r#"{
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\ud83d\ude00": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let got = canon(input);
        let want = concat!(
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",",
            "\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",",
            "\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
        assert_eq!(got, want);
    }

    #[test]
    fn utf16_order_differs_from_utf8_order() {
        // U+10000 (UTF-16 D800 DC00) sorts before U+FFFF in UTF-16, after it
        // in UTF-8 (F0 90 80 80 > EF BF BF), which is BTreeMap's order.
        let v = json!({"\u{10000}": 1, "\u{ffff}": 2, "a": 3, "": 4});
        assert_eq!(
            to_canonical_string(&v).unwrap(),
            "{\"\":4,\"a\":3,\"\u{10000}\":1,\"\u{ffff}\":2}"
        );
    }

    #[test]
    fn nested_objects_sorted_and_compact() {
        let v = json!({"b": [1, {"z": null, "y": [true, false]}], "a": {}, "c": []});
        assert_eq!(
            to_canonical_string(&v).unwrap(),
            r#"{"a":{},"b":[1,{"y":[true,false],"z":null}],"c":[]}"#
        );
        assert_eq!(canon("  [ ]  "), "[]");
        assert_eq!(canon("\"\""), "\"\"");
    }

    #[test]
    fn rfc8785_appendix_b_number_samples() {
        // RFC 8785 Appendix B, IEEE 754 bit patterns and expected strings.
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for &(bits, want) in cases {
            assert_eq!(num(f64::from_bits(bits)), want, "bits {bits:016x}");
        }
    }

    #[test]
    fn number_formatting() {
        assert_eq!(num(1e21), "1e+21");
        assert_eq!(num(1e20), "100000000000000000000");
        assert_eq!(num(1e-7), "1e-7");
        assert_eq!(num(0.000001), "0.000001");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(1.0), "1");
        assert_eq!(num(-1.5), "-1.5");
        assert_eq!(num(0.1), "0.1");
        assert_eq!(num(333333333.3333333), "333333333.3333333");
        assert_eq!(
            canon("[1.0, -0.0, 1E2, 1e-7, 10.50]"),
            "[1,0,100,1e-7,10.5]"
        );
    }

    #[test]
    fn integers_are_exact_even_beyond_2_pow_53() {
        assert_eq!(canon("9007199254740993"), "9007199254740993");
        assert_eq!(canon("18446744073709551615"), "18446744073709551615");
        assert_eq!(canon("-9223372036854775808"), "-9223372036854775808");
        assert_eq!(canon("0"), "0");
        assert_eq!(canon("-1"), "-1");
        assert_eq!(
            to_canonical_string(&json!(u64::MAX)).unwrap(),
            "18446744073709551615"
        );
        assert_eq!(
            to_canonical_string(&json!(i64::MIN)).unwrap(),
            "-9223372036854775808"
        );
    }

    #[test]
    fn non_finite_is_an_error() {
        let mut s = String::new();
        assert_eq!(write_f64(&mut s, f64::NAN), Err(JcsError::NonFiniteNumber));
        assert_eq!(
            write_f64(&mut s, f64::INFINITY),
            Err(JcsError::NonFiniteNumber)
        );
        assert_eq!(
            write_f64(&mut s, f64::NEG_INFINITY),
            Err(JcsError::NonFiniteNumber)
        );
        // serde_json refuses to build them, which is the normal path.
        assert!(Number::from_f64(f64::NAN).is_none());
    }

    #[test]
    fn string_escaping() {
        let all_controls: String = (0u8..0x20).map(char::from).collect();
        let got = to_canonical_string(&Value::String(all_controls)).unwrap();
        let want = concat!(
            "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007",
            "\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f",
            "\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017",
            "\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\""
        );
        assert_eq!(got, want);
        // Quote and backslash escaped; slash, DEL, U+2028 and non-ASCII literal.
        let v = json!("a\"b\\c/d\u{7f}e\u{2028}f\u{e9}\u{1f600}");
        assert_eq!(
            to_canonical_string(&v).unwrap(),
            "\"a\\\"b\\\\c/d\u{7f}e\u{2028}f\u{e9}\u{1f600}\""
        );
        // Keys are escaped the same way.
        assert_eq!(canon(r#"{"\n\"":"\u001F"}"#), "{\"\\n\\\"\":\"\\u001f\"}");
    }

    #[test]
    fn too_deep_is_an_error_not_a_crash() {
        let mut v = json!(null);
        for _ in 0..(MAX_DEPTH + 1) {
            v = Value::Array(vec![v]);
        }
        assert_eq!(to_canonical_string(&v), Err(JcsError::TooDeep));
        let mut ok = json!(null);
        for _ in 0..MAX_DEPTH {
            ok = json!({ "k": ok });
        }
        assert!(to_canonical_string(&ok).is_ok());
    }

    #[test]
    fn spec_vectors_records() {
        let vectors: Value =
            serde_json::from_str(include_str!("../tests/fixtures/spec-v1.json")).unwrap();
        let records = vectors["records"].as_array().unwrap();
        assert!(!records.is_empty());
        for r in records {
            let want = r["jcs"].as_str().unwrap();
            assert_eq!(to_canonical_string(&r["record"]).unwrap(), want);
            assert_eq!(to_canonical_vec(&r["record"]).unwrap(), want.as_bytes());
            // Canonicalisation is idempotent.
            assert_eq!(canon(want), want);
        }
    }

    #[test]
    fn spec_vectors_field_values_are_canonical() {
        // Non-text field values are stored as JCS text (SPEC section 4).
        let vectors: Value =
            serde_json::from_str(include_str!("../tests/fixtures/spec-v1.json")).unwrap();
        for d in vectors["field_digests"].as_array().unwrap() {
            let value = d["value"].as_str().unwrap();
            if let Ok(parsed) = serde_json::from_str::<Value>(value)
                && parsed.is_object()
            {
                assert_eq!(to_canonical_string(&parsed).unwrap(), value);
            }
        }
    }
}
