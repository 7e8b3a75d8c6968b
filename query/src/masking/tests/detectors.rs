//! Each built-in detector under the strict profile: real-world positives are
//! masked, near-misses (failing checksums, impossible ranges, code, prose)
//! are left alone.

use super::*;

fn masked_whole(inputs: &[&str], label: &str) {
    let want = format!("[REDACTED:{label}]");
    for input in inputs {
        assert_eq!(strict(input), want, "input {input:?}");
    }
}

fn untouched(inputs: &[&str]) {
    for input in inputs {
        assert_eq!(strict(input), *input, "input {input:?} was masked");
    }
}

#[test]
fn email_positives() {
    masked_whole(
        &[
            "alice@example.com",
            "bob.smith+tag@mail.co.uk",
            "first_last@sub.example-corp.io",
            "Jane.Doe@Example.ORG",
            "x%y@a1.museum",
        ],
        "email",
    );
    assert_eq!(
        strict("contact <alice@example.com>, or mailto:b@c.de."),
        "contact <[REDACTED:email]>, or mailto:[REDACTED:email]."
    );
}

#[test]
fn forms_written_to_evade_are_masked_as_written() {
    masked_whole(
        &[
            "alice＠example.com",
            "ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ",
            "alice%40example.com",
            "al\u{200B}ice@exam\u{00AD}ple.com",
            "alice@example.com\u{FEFF}",
        ],
        "email",
    );
    masked_whole(
        &[
            "４１１１ １１１１ １１１１ １１１１",
            "4111\u{200B}1111\u{200B}1111\u{200B}1111",
        ],
        "card",
    );
    // The text around keeps its own characters.
    assert_eq!(
        strict("to: bob＠corp.io — “thanks”"),
        "to: [REDACTED:email] — “thanks”"
    );
}

#[test]
fn email_near_misses() {
    untouched(&[
        "user@localhost",
        "@handle",
        "a@b",
        "alice at example dot com",
        "foo@bar.c",
        "x@-bad.com",
        "name@domain.com42",
    ]);
}

#[test]
fn phone_positives() {
    masked_whole(
        &[
            "+1 (555) 123-4567",
            "+44 20 7946 0958",
            "+33 1 23 45 67 89",
            "+8613812345678",
            "(555) 123-4567",
            "555-123-4567",
            "555.123.4567",
            "1-800-555-0199",
            // Non-breaking spaces, as word processors and some loggers write them.
            "+33\u{a0}1\u{a0}23\u{a0}45\u{a0}67\u{a0}89",
            "+44\u{202f}20\u{202f}7946\u{202f}0958",
        ],
        "phone",
    );
    assert_eq!(
        strict("call me on +49 30 1234567 tomorrow"),
        "call me on [REDACTED:phone] tomorrow"
    );
}

#[test]
fn phone_near_misses() {
    untouched(&[
        "2024-01-15",
        "version 1.2.3",
        "+1 2",
        "order 555-1234",
        "12345678901234",
        "555-123-45678",
        "055-123-4567",
        "score: 10.5 +2",
    ]);
}

#[test]
fn card_positives() {
    masked_whole(
        &[
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
            "2223003122003222",
            "3530111333300000",
            "4111\u{a0}1111\u{a0}1111\u{a0}1111",
            "4111\u{202f}1111\u{202f}1111\u{202f}1111",
        ],
        "card",
    );
    // A neighbouring number is not swallowed, and a leading one does not
    // hide the card.
    assert_eq!(
        strict("paid with 4111 1111 1111 1111 2024"),
        "paid with [REDACTED:card] 2024"
    );
    assert_eq!(strict("12 4111 1111 1111 1111"), "12 [REDACTED:card]");
}

#[test]
fn card_near_misses() {
    untouched(&[
        "4111111111111112",        // fails Luhn
        "4111 1111 1111 1112",     // fails Luhn, grouped
        "1718000000000",           // millisecond timestamp
        "1234567812345670",        // leading 1: no issuer
        "9999999999999995",        // leading 9: no issuer
        "411111111111",            // too short
        "41111111111111111111111", // digit run too long
        "ab4111111111111111",      // glued to a word
    ]);
}

#[test]
fn iban_positives() {
    masked_whole(
        &[
            "GB82 WEST 1234 5698 7654 32",
            "GB82WEST12345698765432",
            "DE89370400440532013000",
            "DE89 3704 0044 0532 0130 00",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NL91ABNA0417164300",
            // Written by hand, in lower case: the same account.
            "gb82west12345698765432",
            "de89 3704 0044 0532 0130 00",
        ],
        "iban",
    );
    assert_eq!(
        strict("IBAN DE89 3704 0044 0532 0130 00 THEN"),
        "IBAN [REDACTED:iban] THEN"
    );
}

#[test]
fn iban_near_misses() {
    untouched(&[
        "GB82 WEST 1234 5698 7654 31",
        "DE89370400440532013001",
        "GB00WEST12345698765432",
        "ABCD1234",
        "gb82west12345698765431",
    ]);
}

#[test]
fn ipv4_positives() {
    masked_whole(
        &["10.0.0.1", "8.8.8.8", "255.255.255.255", "0.0.0.0"],
        "ipv4",
    );
    assert_eq!(
        strict("GET from 192.168.1.254:8080 failed"),
        "GET from [REDACTED:ipv4]:8080 failed"
    );
}

#[test]
fn ipv4_near_misses() {
    untouched(&[
        "999.1.1.1",
        "256.1.1.1",
        "1.2.3.4.5",
        "01.02.03.04",
        "version 1.2.3",
        "v1.2.3.4",
        "1.2.3",
    ]);
}

#[test]
fn ipv6_positives() {
    masked_whole(
        &[
            "2001:db8::8a2e:370:7334",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            "fe80::1ff:fe23:4567:890a",
            "FE80::0202:B3FF:FE1E:8329",
            "::ffff:192.0.2.128",
        ],
        "ipv6",
    );
    assert_eq!(
        strict("peer [2001:db8::1]:443 closed"),
        "peer [[REDACTED:ipv6]]:443 closed"
    );
    assert_eq!(
        strict("from 2001:db8::1: timeout"),
        "from [REDACTED:ipv6]: timeout"
    );
}

#[test]
fn ipv6_near_misses() {
    untouched(&[
        "std::fmt::Display",
        "Vec::new() and a::b",
        "12:30:45",
        "00:1a:2b:3c:4d:5e",
        "::1",
        "ratio 1:2:3",
    ]);
}

#[test]
fn ssn_positives() {
    masked_whole(&["123-45-6789", "078-05-1120", "123 45 6789"], "ssn");
    assert_eq!(strict("SSN: 219-09-9999."), "SSN: [REDACTED:ssn].");
}

#[test]
fn ssn_near_misses() {
    untouched(&[
        "000-12-3456",
        "666-12-3456",
        "912-34-5678",
        "123-00-4567",
        "123-45-0000",
        "123-45-67890",
        "1123-45-6789",
        "123456789",
    ]);
}

#[test]
fn api_key_positives() {
    let gh = format!("ghp_{}", "aB3".repeat(12));
    let pat = format!("github_pat_{}", "x1_".repeat(10));
    let google = format!("AIza{}", "Sy0_a".repeat(7));
    masked_whole(
        &[
            "sk-proj-abcDEF1234567890ghijklmnOPQ",
            "sk-ant-api03-AbCdEf0123456789_xyz-ABCDEFGH",
            "sk_live_51HabcdEFGHijklMNop",
            "AKIAIOSFODNN7EXAMPLE",
            &gh,
            &pat,
            "xoxb-123456789012-abcdefghij",
            "xoxp-1234-5678-abcdef",
            &google,
            "glpat-abcdefghij0123456789",
        ],
        "api_key",
    );
    assert_eq!(
        strict("Authorization: Bearer abc123def456ghi789jkl"),
        "Authorization: Bearer [REDACTED:api_key]"
    );
    assert_eq!(
        strict("key=sk-abcdefghij0123456789xyz;"),
        "key=[REDACTED:api_key];"
    );
}

#[test]
fn api_key_near_misses() {
    untouched(&[
        "sk-learn",
        "pip install sk-this-is-a-long-feature-name",
        "risk-0123456789abcdefghijklmnop",
        "Bearer authentication",
        "the bearer of bad news",
        "AKIA",
        "ghp_short",
        "xoxb-abcdefghijklmnop",
    ]);
}

#[test]
fn jwt_positives() {
    let signed = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    let unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
    masked_whole(&[signed, unsigned], "jwt");
    // A bearer JWT is one span; the JWT rule comes first so names it.
    assert_eq!(
        strict(&format!("Authorization: Bearer {signed}")),
        "Authorization: Bearer [REDACTED:jwt]"
    );
    assert_eq!(
        strict(&format!("token={signed}&x=1")),
        "token=[REDACTED:jwt]&x=1"
    );
}

#[test]
fn jwt_near_misses() {
    untouched(&[
        "eyJhbGciOiJIUzI1NiJ9",
        "xeyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        "eyJ.eyJ.x",
        "keyJoin.value.other",
    ]);
}

#[test]
fn private_key_positives() {
    masked_whole(
        &[
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0\nabc=\n-----END RSA PRIVATE KEY-----",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----",
            "-----BEGIN PRIVATE KEY-----\\nMC4CAQAwBQYDK2VwBCIEI\\n-----END PRIVATE KEY-----",
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----",
        ],
        "private_key",
    );
    assert_eq!(
        strict(
            "before\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\nafter"
        ),
        "before\n[REDACTED:private_key]\nafter"
    );
    // Truncated block: everything from BEGIN on is masked.
    assert_eq!(
        strict("key: -----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHzBJBgkqhkiG9w0BBQ0wPDAbBg"),
        "key: [REDACTED:private_key]"
    );
}

#[test]
fn private_key_near_misses() {
    untouched(&[
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----",
        "the private key is stored in the HSM",
    ]);
}

#[test]
fn plain_text_is_borrowed() {
    let policy = Policy::default_policy();
    let masker = Masker::new(policy.profile_for("reader", &serde_json::Map::new()), &KEY);
    for clean in [
        "",
        "The quick brown fox jumps over the lazy dog.",
        "fn main() { let v = Vec::new(); println!(\"{}\", 1.2); }",
        "tokens: 1234, latency 0.25s, 999.1.1.1, 4111111111111112",
        "日本語のテキスト — ünïcödé",
    ] {
        assert!(
            matches!(masker.mask_str("content", clean), Some(Cow::Borrowed(s)) if s == clean),
            "{clean:?} was not borrowed"
        );
    }
    assert!(masker.counts().is_empty());
    // Columns the strict profile does not cover are borrowed even with PII.
    assert!(matches!(
        masker.mask_str("session_id", "alice@example.com"),
        Some(Cow::Borrowed(_))
    ));
}

#[test]
fn several_detectors_in_one_value() {
    assert_eq!(
        strict("user alice@example.com from 10.1.2.3 paid 4111-1111-1111-1111 (ssn 123-45-6789)"),
        "user [REDACTED:email] from [REDACTED:ipv4] paid [REDACTED:card] (ssn [REDACTED:ssn])"
    );
}

#[test]
fn non_ascii_neighbours_do_not_break_boundaries() {
    assert_eq!(strict("é alice@example.com ü"), "é [REDACTED:email] ü");
    assert_eq!(strict("→10.0.0.1←"), "→[REDACTED:ipv4]←");
    assert_eq!(strict("ﬁ4111111111111111"), "ﬁ4111111111111111");
}

/// Arbitrary mixtures of tricky fragments: nothing panics, clean output is
/// the input, and masking strict output again changes nothing.
#[test]
fn no_panic_on_adversarial_mixtures() {
    let fragments = [
        "a",
        "@",
        ".",
        "-",
        " ",
        ":",
        "::",
        "+",
        "(",
        ")",
        "1",
        "4111",
        "eyJ",
        "é",
        "日",
        "\u{0}",
        "-----BEGIN ",
        "PRIVATE KEY-----",
        "-----END ",
        "Bearer ",
        "sk-",
        "GB82",
        "[",
        "]",
        "\n",
        "999",
        "255.",
        "0x",
        "ff",
        "_",
    ];
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..3000 {
        let mut s = String::new();
        for _ in 0..(seed % 24) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            s.push_str(fragments[(seed % fragments.len() as u64) as usize]);
        }
        let once = strict(&s);
        assert_eq!(strict(&once), once, "not idempotent on {s:?}");
    }
}
