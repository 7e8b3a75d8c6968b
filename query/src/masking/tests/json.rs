//! JSON masking: recursion into objects and arrays, rules by path and
//! everywhere, keys, numbers, drop semantics, and depth limits.

use serde_json::{Value, json};

use super::*;

fn policy(rules: &str) -> Policy {
    let text = format!("[[profile]]\nname = \"p\"\nroles = [\"r\"]\n{rules}");
    match Policy::from_toml(&text) {
        Ok(p) => p,
        Err(e) => panic!("policy refused: {e}\n{text}"),
    }
}

fn mask(p: &Policy, column: &str, mut v: Value) -> (bool, Value) {
    let masker = Masker::new(p.profile_for("r", &serde_json::Map::new()), &KEY);
    let changed = masker.mask_json(column, &mut v);
    (changed, v)
}

fn strict_json(v: Value) -> (bool, Value) {
    let masker = Masker::new(
        default_policy().profile_for("x", &serde_json::Map::new()),
        &KEY,
    );
    let mut v = v;
    let changed = masker.mask_json("attributes", &mut v);
    (changed, v)
}

#[test]
fn everywhere_reaches_nested_objects_and_arrays() {
    let (changed, v) = strict_json(json!({
        "user": {"email": "a@b.io", "tags": ["x", "call +44 20 7946 0958", {"ip": "10.0.0.1"}]},
        "n": 3,
        "ok": true,
        "none": null,
    }));
    assert!(changed);
    assert_eq!(
        v,
        json!({
            "user": {"email": "[REDACTED:email]", "tags": ["x", "call [REDACTED:phone]", {"ip": "[REDACTED:ipv4]"}]},
            "n": 3,
            "ok": true,
            "none": null,
        })
    );
}

#[test]
fn clean_json_is_unchanged() {
    let original = json!({"a": [1, 2.5, "text", {"b": null}], "c": "999.1.1.1"});
    let (changed, v) = strict_json(original.clone());
    assert!(!changed);
    assert_eq!(v, original);
}

#[test]
fn exact_path_rule_beats_later_everywhere_rule() {
    let p = policy(
        "[[profile.rule]]\ndetector = \"email\"\naction = \"hash\"\npaths = [\"$.user.email\"]\n\
         [[profile.rule]]\ndetector = \"email\"\naction = \"redact\"\n",
    );
    let (changed, v) = mask(
        &p,
        "attributes",
        json!({"user": {"email": "a@b.io", "cc": "c@d.io"}, "email": "e@f.io"}),
    );
    assert!(changed);
    let hashed = v["user"]["email"].as_str().unwrap();
    assert!(hashed.starts_with("[HASH:email:"), "{hashed}");
    assert_eq!(v["user"]["cc"], "[REDACTED:email]");
    assert_eq!(v["email"], "[REDACTED:email]");
}

#[test]
fn path_only_rule_leaves_other_places_alone() {
    let p = policy(
        "[[profile.rule]]\ndetector = \"custom\"\npattern = '[a-z0-9]{12,}'\nlabel = \"tok\"\naction = \"redact\"\npaths = [\"$..token\", \"$.list[*].secret\"]\n",
    );
    let (changed, v) = mask(
        &p,
        "attributes",
        json!({
            "token": "abcdef0123456789",
            "deep": {"x": [{"token": {"inner": "zzzzzzzzzzzzzz"}}]},
            "list": [{"secret": "qqqqqqqqqqqqqqqq"}, {"other": "qqqqqqqqqqqqqqqq"}],
            "note": "abcdef0123456789",
        }),
    );
    assert!(changed);
    assert_eq!(v["token"], "[REDACTED:tok]");
    assert_eq!(v["deep"]["x"][0]["token"]["inner"], "[REDACTED:tok]");
    assert_eq!(v["list"][0]["secret"], "[REDACTED:tok]");
    assert_eq!(v["list"][1]["other"], "qqqqqqqqqqqqqqqq");
    assert_eq!(v["note"], "abcdef0123456789");
    // A plain string column is the value at `$`, outside the rule's paths.
    let masker = Masker::new(p.profile_for("r", &serde_json::Map::new()), &KEY);
    assert!(matches!(
        masker.mask_str("attributes", "abcdef0123456789"),
        Some(Cow::Borrowed(_))
    ));
}

#[test]
fn root_path_applies_to_plain_strings() {
    let p =
        policy("[[profile.rule]]\ndetector = \"email\"\naction = \"redact\"\npaths = [\"$\"]\n");
    let masker = Masker::new(p.profile_for("r", &serde_json::Map::new()), &KEY);
    assert_eq!(
        masker.mask_str("content", "a@b.io").as_deref(),
        Some("[REDACTED:email]")
    );
}

#[test]
fn drop_removes_members_nulls_elements_and_roots() {
    let p = policy(
        &(String::from("[[profile.rule]]\ndetector = \"ssn\"\naction = \"drop\"\n")
            + "[[profile.rule]]\ndetector = \"email\"\naction = \"redact\"\n"),
    );
    let (changed, v) = mask(
        &p,
        "attributes",
        json!({"keep": "a@b.io", "gone": "ssn 123-45-6789", "arr": ["x", "123-45-6789", "y"]}),
    );
    assert!(changed);
    assert_eq!(
        v,
        json!({"keep": "[REDACTED:email]", "arr": ["x", null, "y"]})
    );
    let (changed, v) = mask(&p, "content", json!("my ssn is 123-45-6789"));
    assert!(changed);
    assert_eq!(v, Value::Null);
}

#[test]
fn keys_are_masked_and_collisions_kept_apart() {
    let (changed, v) = strict_json(json!({
        "alice@example.com": 1,
        "bob@example.com": {"note": "x"},
        "plain": 2,
    }));
    assert!(changed);
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 3, "{v}");
    assert_eq!(obj["plain"], 2);
    assert!(obj.contains_key("[REDACTED:email]"), "{v}");
    assert!(obj.contains_key("[REDACTED:email]#2"), "{v}");
    assert!(!v.to_string().contains("example.com"));
}

#[test]
fn numbers_are_scanned_as_text() {
    let (changed, v) =
        strict_json(json!({"card": 4111111111111111u64, "count": 4111111111111112u64, "f": 1.5}));
    assert!(changed);
    assert_eq!(
        v,
        json!({"card": "[REDACTED:card]", "count": 4111111111111112u64, "f": 1.5})
    );
}

#[test]
fn column_outside_the_rules_is_untouched() {
    let original = json!({"e": "a@b.io"});
    let policy = Policy::default_policy();
    let masker = Masker::new(policy.profile_for("x", &serde_json::Map::new()), &KEY);
    let mut v = original.clone();
    assert!(!masker.mask_json("name", &mut v));
    assert_eq!(v, original);
}

#[test]
fn hostile_depth_is_replaced_not_recursed() {
    let mut v = json!("a@b.io");
    for _ in 0..1000 {
        v = Value::Array(vec![v]);
    }
    let (changed, v) = strict_json(v);
    assert!(changed);
    let mut cur = &v;
    let mut depth = 0;
    while let Value::Array(items) = cur {
        cur = &items[0];
        depth += 1;
    }
    assert_eq!(*cur, json!("[REDACTED:depth]"));
    assert!(depth > 200 && depth < 300, "{depth}");
}

#[test]
fn json_content_string_root() {
    let (changed, v) = strict_json(json!("reach me at a@b.io"));
    assert!(changed);
    assert_eq!(v, json!("reach me at [REDACTED:email]"));
}
