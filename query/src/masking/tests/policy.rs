//! Policy parsing and validation (errors name the profile and rule), the
//! documented example, and profile selection with its fail-closed fallback.

use serde_json::{Map, Value, json};

use super::super::{PolicyError, STRICT_PROFILE};
use super::*;

fn err(text: &str) -> String {
    match Policy::from_toml(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn claims(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

const HEAD: &str = "[[profile]]\nname = \"reader\"\nroles = [\"reader\"]\n";

/// The complete example of docs/masking.md parses and behaves as described.
#[test]
fn documented_example_is_valid() {
    let doc = include_str!("../../../../docs/masking.md");
    let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
    let len = doc[start..].find("```").unwrap();
    let policy = Policy::from_toml(&doc[start..start + len]).unwrap();
    assert_eq!(policy.hash_key_file(), Some("keys/masking.key"));

    let none = Map::new();
    let admin = policy.profile_for("admin", &none);
    assert_eq!(admin.name, "admin");
    assert!(admin.is_unmasked());
    let raw = Masker::new(admin, &KEY);
    assert!(matches!(
        raw.mask_str("content", "a@b.io"),
        Some(Cow::Borrowed("a@b.io"))
    ));

    let soc = policy.profile_for("reader", &claims(json!({"groups": ["dev", "soc"]})));
    assert_eq!(soc.name, "soc");
    let m = Masker::new(soc, &KEY);
    let ip = m.mask_str("content", "from 10.0.0.1").unwrap();
    assert!(ip.starts_with("from [HASH:ipv4:"), "{ip}");
    assert_eq!(
        m.mask_str("name", "10.0.0.1 a@b.io").as_deref(),
        Some("[REDACTED:ipv4] [REDACTED:email]")
    );

    let reader = policy.profile_for("analyst", &none);
    assert_eq!(reader.name, "reader-default");
    let m = Masker::new(reader, &KEY);
    let mut attrs =
        json!({"user": {"email": "a@b.io"}, "cc": "c@d.io", "card": "4111 1111 1111 1111"});
    assert!(m.mask_json("attributes", &mut attrs));
    assert!(
        attrs["user"]["email"]
            .as_str()
            .unwrap()
            .starts_with("[HASH:email:")
    );
    assert_eq!(attrs["cc"], "[REDACTED:email]");
    assert_eq!(attrs["card"], "[REDACTED:card]…1111");
    let id = m.mask_str("name", "ticket ACME-123456").unwrap();
    assert!(id.starts_with("ticket [HASH:acme_id:"), "{id}");
    assert_eq!(
        m.mask_str(
            "content",
            "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----"
        ),
        None
    );
    assert_eq!(
        m.mask_str("actor", "a@b.io").as_deref(),
        Some("[REDACTED:email]")
    );

    // Unknown role: the default_profile, not raw values.
    assert_eq!(policy.profile_for("intruder", &none).name, "reader-default");
}

#[test]
fn unknown_detector_names_profile_and_rule() {
    let e = err(&format!(
        "{HEAD}[[profile.rule]]\ndetector = \"email\"\naction = \"redact\"\n\
         [[profile.rule]]\ndetector = \"passport\"\naction = \"redact\"\n"
    ));
    assert!(
        e.contains("\"reader\"") && e.contains("rule 2") && e.contains("passport"),
        "{e}"
    );
}

#[test]
fn unknown_action_is_refused() {
    let e = err(&format!(
        "{HEAD}[[profile.rule]]\ndetector = \"email\"\naction = \"scramble\"\n"
    ));
    assert!(
        e.contains("\"reader\"") && e.contains("rule 1") && e.contains("scramble"),
        "{e}"
    );
}

#[test]
fn bad_regex_is_refused() {
    let e = err(&format!(
        "{HEAD}[[profile.rule]]\ndetector = \"custom\"\npattern = 'ACME-(\\d+'\naction = \"redact\"\n"
    ));
    assert!(
        e.contains("\"reader\"") && e.contains("rule 1") && e.contains("ACME-("),
        "{e}"
    );
    assert!(matches!(
        Policy::from_toml(&format!(
            "{HEAD}[[profile.rule]]\ndetector = \"custom\"\npattern = 'ACME-(\\d+'\naction = \"redact\"\n"
        )),
        Err(PolicyError::BadPattern { .. })
    ));
}

#[test]
fn oversized_and_empty_matching_regexes_are_refused() {
    let big = err(&format!(
        "{HEAD}[[profile.rule]]\ndetector = \"custom\"\npattern = '(?:\\w{{100}}){{100}}'\naction = \"redact\"\n"
    ));
    assert!(big.contains("larger than"), "{big}");
    let long = "a".repeat(5000);
    let e = err(&format!(
        "{HEAD}[[profile.rule]]\ndetector = \"custom\"\npattern = '{long}'\naction = \"redact\"\n"
    ));
    assert!(e.contains("longer than 4096"), "{e}");
    let empty = err(&format!(
        "{HEAD}[[profile.rule]]\ndetector = \"custom\"\npattern = 'x*'\naction = \"redact\"\n"
    ));
    assert!(empty.contains("empty string"), "{empty}");
}

#[test]
fn empty_profile_name_is_refused() {
    let e = err("[[profile]]\nname = \"\"\nroles = [\"r\"]\nunmasked = true\n");
    assert!(e.contains("profile #1"), "{e}");
}

#[test]
fn structural_errors_are_refused() {
    let cases: [(&str, &str); 17] = [
        (
            "[[profile]]\nname = \"a\"\nroles = [\"r\"]\nunmasked = true\n[[profile]]\nname = \"a\"\nroles = [\"s\"]\nunmasked = true\n",
            "defined twice",
        ),
        (
            "[[profile]]\nname = \"builtin-strict\"\nroles = [\"r\"]\nunmasked = true\n",
            "reserved",
        ),
        ("[[profile]]\nname = \"a\"\nunmasked = true\n", "no roles"),
        ("[[profile]]\nname = \"a\"\nroles = [\"r\"]\n", "no rules"),
        (
            "[[profile]]\nname = \"a\"\nroles = [\"r\"]\nunmasked = true\n[[profile.rule]]\ndetector = \"email\"\naction = \"redact\"\n",
            "cannot have rules",
        ),
        ("default_profile = \"nope\"\n", "names no profile"),
        (
            "default_profile = \"a\"\n[[profile]]\nname = \"a\"\nunmasked = true\n",
            "fail closed",
        ),
        ("version = 2\n", "version 2"),
        (
            "[[profile]]\nname = \"a\"\nroles = [\"\"]\nunmasked = true\n",
            "empty entry",
        ),
        (
            "[[profile]]\nname = \"a\"\nmatch = { claim = \"\", value = \"x\" }\nunmasked = true\n",
            "claim is empty",
        ),
        (&email_rule_with("colums = [\"content\"]\n"), "colums"),
        (&email_rule_with("columns = []\n"), "columns is empty"),
        // Columns it could never mask: a typo, a structural column, the hash.
        (
            &email_rule_with("columns = [\"acter\"]\n"),
            "cannot be masked",
        ),
        (
            &email_rule_with("columns = [\"kind\"]\n"),
            "cannot be masked",
        ),
        (
            &email_rule_with("columns = [\"leaf_hash\"]\n"),
            "cannot be masked",
        ),
        (
            &email_rule_with("paths = [\"user.email\"]\n"),
            "must start with `$`",
        ),
        (
            &email_rule_with("pattern = 'x'\n"),
            "only for detector \"custom\"",
        ),
    ];
    for (text, want) in cases {
        let e = err(text);
        assert!(e.contains(want), "{want:?} not in {e:?}\nfor:\n{text}");
    }
}

/// A reader profile with one email rule plus `extra` keys.
fn email_rule_with(extra: &str) -> String {
    format!("{HEAD}[[profile.rule]]\ndetector = \"email\"\naction = \"redact\"\n{extra}")
}

#[test]
fn labels_and_custom_requirements() {
    let no_pattern = err(&format!(
        "{HEAD}[[profile.rule]]\ndetector = \"custom\"\naction = \"redact\"\n"
    ));
    assert!(no_pattern.contains("needs a pattern"), "{no_pattern}");
    let bad_label = err(&format!(
        "{HEAD}[[profile.rule]]\ndetector = \"custom\"\npattern = 'x'\nlabel = \"Bad Label\"\naction = \"redact\"\n"
    ));
    assert!(bad_label.contains("label"), "{bad_label}");
    let builtin_label = err(&format!(
        "{HEAD}[[profile.rule]]\ndetector = \"email\"\nlabel = \"mail\"\naction = \"redact\"\n"
    ));
    assert!(
        builtin_label.contains("only for detector"),
        "{builtin_label}"
    );
}

#[test]
fn too_many_rules_after_expansion() {
    let rules = "[[profile.rule]]\ndetector = \"all\"\naction = \"redact\"\n".repeat(13);
    let e = err(&format!("{HEAD}{rules}"));
    assert!(e.contains("130 rules") && e.contains("\"reader\""), "{e}");
    let ok = "[[profile.rule]]\ndetector = \"all\"\naction = \"redact\"\n".repeat(12);
    assert!(Policy::from_toml(&format!("{HEAD}{ok}")).is_ok());
}

#[test]
fn selection_by_role_claim_and_file_order() {
    let policy = Policy::from_toml(
        "[[profile]]\nname = \"soc-readers\"\nroles = [\"reader\"]\nmatch = { claim = \"groups\", value = \"soc\" }\nunmasked = true\n\
         [[profile]]\nname = \"by-claim\"\nmatch = { claim = \"tenant\", value = \"acme\" }\nunmasked = true\n\
         [[profile]]\nname = \"readers\"\nroles = [\"reader\", \"viewer\"]\n[[profile.rule]]\ndetector = \"all\"\naction = \"redact\"\n\
         [[profile]]\nname = \"readers-too\"\nroles = [\"reader\"]\nunmasked = true\n",
    )
    .unwrap();
    let none = Map::new();
    // Both role and claim needed for the first profile.
    assert_eq!(
        policy
            .profile_for("reader", &claims(json!({"groups": ["soc"]})))
            .name,
        "soc-readers"
    );
    assert_eq!(
        policy
            .profile_for("reader", &claims(json!({"groups": "soc"})))
            .name,
        "soc-readers"
    );
    assert_eq!(
        policy
            .profile_for("admin", &claims(json!({"groups": ["soc"]})))
            .name,
        STRICT_PROFILE
    );
    assert_eq!(
        policy
            .profile_for("reader", &claims(json!({"groups": ["dev"]})))
            .name,
        "readers"
    );
    assert_eq!(
        policy
            .profile_for("reader", &claims(json!({"groups": 1})))
            .name,
        "readers"
    );
    // Claim-only profile, any role.
    assert_eq!(
        policy
            .profile_for("anything", &claims(json!({"tenant": "acme"})))
            .name,
        "by-claim"
    );
    // First match in file order wins over a later profile for the same role.
    assert_eq!(policy.profile_for("reader", &none).name, "readers");
    assert_eq!(policy.profile_for("viewer", &none).name, "readers");
    // Role matching is exact.
    assert_eq!(policy.profile_for("Reader", &none).name, STRICT_PROFILE);
    assert_eq!(policy.profile_for("", &none).name, STRICT_PROFILE);
}

#[test]
fn unmatched_callers_fail_closed() {
    let policy =
        Policy::from_toml("[[profile]]\nname = \"admin\"\nroles = [\"admin\"]\nunmasked = true\n")
            .unwrap();
    let p = policy.profile_for("reader", &Map::new());
    assert_eq!(p.name, STRICT_PROFILE);
    assert!(!p.is_unmasked());
    let m = Masker::new(p, &KEY);
    assert_eq!(
        m.mask_str("content", "mail a@b.io key sk-abcdefghij0123456789xyz")
            .as_deref(),
        Some("mail [REDACTED:email] key [REDACTED:api_key]")
    );
    let mut attrs = json!({"ip": "10.0.0.1"});
    assert!(m.mask_json("attributes", &mut attrs));
    assert_eq!(attrs, json!({"ip": "[REDACTED:ipv4]"}));

    // An empty policy and the default policy behave the same way.
    for policy in [Policy::from_toml("").unwrap(), Policy::default_policy()] {
        let p = policy.profile_for("admin", &Map::new());
        assert_eq!(p.name, STRICT_PROFILE);
        assert_eq!(
            Masker::new(p, &KEY)
                .mask_str("content", "123-45-6789")
                .as_deref(),
            Some("[REDACTED:ssn]")
        );
        assert_eq!(policy.hash_key_file(), None);
    }
}

#[test]
fn builtin_detectors_compile() {
    // The strict profile must run real rules, never the redact-all fallback.
    let policy = Policy::default_policy();
    let m = Masker::new(policy.profile_for("x", &Map::new()), &KEY);
    assert_eq!(
        m.mask_str("content", "hi a@b.io").as_deref(),
        Some("hi [REDACTED:email]")
    );
    assert!(!m.counts().contains_key("all"));
}

#[test]
fn default_only_profile_serves_unknown_roles() {
    let policy = Policy::from_toml(
        "default_profile = \"fallback\"\n[[profile]]\nname = \"fallback\"\n\
         [[profile.rule]]\ndetector = \"email\"\naction = \"partial\"\ncolumns = [\"*\"]\n",
    )
    .unwrap();
    let p = policy.profile_for("someone", &Map::new());
    assert_eq!(p.name, "fallback");
    assert_eq!(
        Masker::new(p, &KEY)
            .mask_str("actor", "alice@example.com")
            .as_deref(),
        Some("[REDACTED:email]…ecom")
    );
    let e = err(
        "[[profile]]\nname = \"a\"\nroles = [\"r\"]\n[[profile.rule]]\ndetector = \"email\"\naction = \"redact\"\ncolumns = [\"a.b\"]\n",
    );
    assert!(e.contains("cannot be masked"), "{e}");
}

#[test]
fn policy_and_masker_are_shareable_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Policy>();
    shareable::<Masker>();
    let policy = default_policy();
    let masker = Masker::new(policy.profile_for("x", &Map::new()), &KEY);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..50 {
                    assert!(masker.mask_str("content", "a@b.io").is_some());
                }
            });
        }
    });
    assert_eq!(masker.counts().get("email"), Some(&100));
}
