//! The four actions' exact outputs, hash determinism and keying, overlap
//! resolution, and the per-label counts.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::*;

/// A one-profile policy for role `r` with the given rules (TOML).
fn policy(rules: &str) -> Policy {
    let text = format!("[[profile]]\nname = \"p\"\nroles = [\"r\"]\n{rules}");
    match Policy::from_toml(&text) {
        Ok(p) => p,
        Err(e) => panic!("policy refused: {e}\n{text}"),
    }
}

fn rule(detector: &str, action: &str) -> String {
    format!("[[profile.rule]]\ndetector = \"{detector}\"\naction = \"{action}\"\n")
}

fn mask(p: &Policy, key: &[u8; 32], column: &str, text: &str) -> Option<String> {
    let masker = Masker::new(p.profile_for("r", &serde_json::Map::new()), key);
    masker.mask_str(column, text).map(Cow::into_owned)
}

#[test]
fn redact_writes_the_label() {
    let p = policy(&rule("email", "redact"));
    assert_eq!(
        mask(&p, &KEY, "content", "to bob@example.com now").as_deref(),
        Some("to [REDACTED:email] now")
    );
}

#[test]
fn partial_keeps_last_four_alphanumerics() {
    let p = policy(&(rule("card", "partial") + &rule("iban", "partial") + &rule("ssn", "partial")));
    let cases = [
        ("4111-1111-1111-1111", "[REDACTED:card]…1111"),
        ("5555 5555 5555 4444", "[REDACTED:card]…4444"),
        ("GB82 WEST 1234 5698 7654 32", "[REDACTED:iban]…5432"),
        ("ssn 123-45-6789.", "ssn [REDACTED:ssn]…6789."),
    ];
    for (input, want) in cases {
        assert_eq!(
            mask(&p, &KEY, "content", input).as_deref(),
            Some(want),
            "{input}"
        );
    }
}

#[test]
fn partial_keeps_nothing_of_short_values() {
    let p = policy(
        "[[profile.rule]]\ndetector = \"custom\"\npattern = 'A-\\d+'\nlabel = \"acme\"\naction = \"partial\"\n",
    );
    assert_eq!(
        mask(&p, &KEY, "content", "id A-123456").as_deref(),
        Some("id [REDACTED:acme]"),
        "7 alphanumerics: nothing kept"
    );
    assert_eq!(
        mask(&p, &KEY, "content", "id A-1234567").as_deref(),
        Some("id [REDACTED:acme]…4567")
    );
}

fn expected_tag(key: &[u8; 32], label: &str, normalized: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(label.as_bytes());
    mac.update(&[0]);
    mac.update(normalized.as_bytes());
    let hex = hex::encode(mac.finalize().into_bytes());
    format!("[HASH:{label}:{}]", &hex[..16])
}

#[test]
fn hash_is_documented_keyed_hmac() {
    let p = policy(&rule("email", "hash"));
    let out = mask(&p, &KEY, "content", "alice@example.com").unwrap();
    assert_eq!(out, expected_tag(&KEY, "email", "alice@example.com"));
    assert_eq!(out.len(), "[HASH:email:]".len() + 16);
    assert!(!out.contains("alice"));
}

#[test]
fn hash_is_deterministic_and_key_dependent() {
    let p = policy(&rule("email", "hash"));
    let a1 = mask(&p, &KEY, "content", "alice@example.com").unwrap();
    let a2 = mask(&p, &KEY, "content", "write to alice@example.com").unwrap();
    assert_eq!(
        format!("write to {a1}"),
        a2,
        "same value, same key: same tag"
    );
    let other_key = [8u8; 32];
    let a3 = mask(&p, &other_key, "content", "alice@example.com").unwrap();
    assert_ne!(a1, a3, "different key: different tag");
    let b = mask(&p, &KEY, "content", "bob@example.com").unwrap();
    assert_ne!(a1, b, "different value: different tag");
}

#[test]
fn hash_normalises_so_equal_values_join() {
    let p = policy(&(rule("email", "hash") + &rule("card", "hash") + &rule("ipv6", "hash")));
    let h = |s: &str| mask(&p, &KEY, "content", s).unwrap();
    assert_eq!(h("Alice@Example.COM"), h("alice@example.com"));
    assert_eq!(h("4111-1111-1111-1111"), h("4111 1111 1111 1111"));
    assert_eq!(
        h("4111111111111111"),
        expected_tag(&KEY, "card", "4111111111111111")
    );
    assert_eq!(h("2001:DB8:0:0::1"), h("2001:db8::1"));
}

#[test]
fn hash_of_a_folded_value_is_the_hash_of_its_plain_form() {
    let p = policy(&(rule("email", "hash") + &rule("card", "hash") + &rule("iban", "hash")));
    let h = |s: &str| mask(&p, &KEY, "content", s).unwrap();
    // Found only by the folded pass, yet joined with the plain form...
    assert_eq!(
        h("４１１１ １１１１ １１１１ １１１１"),
        h("4111 1111 1111 1111")
    );
    assert_eq!(h("alice＠example.com"), h("alice@example.com"));
    assert_eq!(h("al\u{200B}ice@example.com"), h("alice@example.com"));
    // ...and different values written in fullwidth do not share a tag.
    assert_ne!(
        h("４１１１ １１１１ １１１１ １１１１"),
        h("５５５５ ５５５５ ５５５５ ４４４４")
    );
    assert_ne!(
        h("ＧＢ８２ ＷＥＳＴ １２３４ ５６９８ ７６５４ ３２"),
        h("ＤＥ８９ ３７０４ ００４４ ０５３２ ０１３０ ００")
    );
}

#[test]
fn hash_label_separates_domains() {
    let p = policy(
        "[[profile.rule]]\ndetector = \"custom\"\npattern = 'X-\\d{4}'\nlabel = \"one\"\naction = \"hash\"\ncolumns = [\"content\"]\n\
         [[profile.rule]]\ndetector = \"custom\"\npattern = 'X-\\d{4}'\nlabel = \"two\"\naction = \"hash\"\ncolumns = [\"name\"]\n",
    );
    let one = mask(&p, &KEY, "content", "X-1234").unwrap();
    let two = mask(&p, &KEY, "name", "X-1234").unwrap();
    assert!(one.starts_with("[HASH:one:"), "{one}");
    assert!(two.starts_with("[HASH:two:"), "{two}");
    assert_ne!(one[10..], two[10..]);
}

#[test]
fn drop_withholds_the_whole_value() {
    let p = policy(&(rule("private_key", "drop") + &rule("email", "redact")));
    assert_eq!(
        mask(
            &p,
            &KEY,
            "content",
            "a@b.io and -----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----"
        ),
        None
    );
    assert_eq!(
        mask(&p, &KEY, "content", "just a@b.io").as_deref(),
        Some("just [REDACTED:email]")
    );
}

#[test]
fn overlapping_detections_merge_under_the_strictest_action() {
    // The custom id overlaps the email's local part: the union is masked,
    // with the stricter redact of the email rule.
    let p = policy(
        "[[profile.rule]]\ndetector = \"custom\"\npattern = 'ACME-\\d{6}'\nlabel = \"acme_id\"\naction = \"partial\"\n\
         [[profile.rule]]\ndetector = \"email\"\naction = \"redact\"\n",
    );
    assert_eq!(
        mask(&p, &KEY, "content", "x ACME-123456@corp.example y").as_deref(),
        Some("x [REDACTED:email] y")
    );
    assert_eq!(
        mask(&p, &KEY, "content", "x ACME-123456 y").as_deref(),
        Some("x [REDACTED:acme_id]…3456 y")
    );
}

#[test]
fn first_rule_for_a_detector_decides() {
    let p = policy(&(rule("email", "hash") + &rule("email", "redact")));
    let out = mask(&p, &KEY, "content", "a@b.io").unwrap();
    assert!(out.starts_with("[HASH:email:"), "{out}");
}

#[test]
fn columns_limit_rules() {
    let p = policy(
        "[[profile.rule]]\ndetector = \"email\"\naction = \"redact\"\ncolumns = [\"actor\"]\n\
         [[profile.rule]]\ndetector = \"ipv4\"\naction = \"redact\"\ncolumns = [\"*\"]\n",
    );
    assert_eq!(
        mask(&p, &KEY, "actor", "a@b.io").as_deref(),
        Some("[REDACTED:email]")
    );
    assert_eq!(
        mask(&p, &KEY, "content", "a@b.io").as_deref(),
        Some("a@b.io")
    );
    assert_eq!(
        mask(&p, &KEY, "model", "10.0.0.1").as_deref(),
        Some("[REDACTED:ipv4]")
    );
}

#[test]
fn counts_are_per_label() {
    let p = policy(&(rule("email", "hash") + &rule("card", "partial") + &rule("ssn", "drop")));
    let masker = Masker::new(p.profile_for("r", &serde_json::Map::new()), &KEY);
    let _ = masker.mask_str("content", "a@b.io, c@d.io and 4111 1111 1111 1111");
    let _ = masker.mask_str("content", "e@f.io");
    let _ = masker.mask_str("content", "nothing here");
    assert_eq!(masker.mask_str("content", "ssn 123-45-6789"), None);
    let mut json = serde_json::json!({"u": {"mail": "g@h.io"}});
    assert!(masker.mask_json("attributes", &mut json));
    let counts = masker.counts();
    let want: Vec<(&str, u64)> = vec![("card", 1), ("email", 4), ("ssn", 1)];
    let got: Vec<(&str, u64)> = counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(got, want);
    assert_eq!(masker.profile().name, "p");
}
