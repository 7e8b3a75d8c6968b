//! Query-time masking of PII and secrets.
//!
//! The vault stores rows verbatim (the hash chain and Merkle proofs cover
//! the exact bytes), so masking cannot happen at ingest: it happens on every
//! row leaving the server, per caller, according to a policy file (format:
//! `docs/masking.md` at the repository root).
//!
//! - [`Policy::from_toml`] parses and validates the policy;
//!   [`Policy::default_policy`] is the built-in strict one.
//! - [`Policy::profile_for`] picks the caller's [`Profile`] by role or token
//!   claim, failing closed to the strict profile.
//! - A [`Masker`] applies a profile with the server's hash key:
//!   [`Masker::mask_str`] for string columns, [`Masker::mask_json`] for
//!   JSON values, [`Masker::counts`] for the access log.
//!
//! Detectors: email, phone, payment card (Luhn), IBAN (mod-97), IPv4,
//! IPv6, US SSN, API keys and bearer tokens, JWTs, private key blocks, and
//! custom regexes. Actions: `redact`, `partial`, `hash` (keyed
//! HMAC-SHA256), `drop`.

mod actions;
mod checks;
mod detectors;
mod engine;
mod error;
mod fold;
mod jsonpath;
mod masker;
mod policy;

pub use error::PolicyError;
pub use masker::Masker;
pub use policy::{Policy, Profile, STRICT_PROFILE, VERBATIM, maskable};

#[cfg(test)]
mod tests;
