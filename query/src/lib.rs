//! Query side of the vault. For now it holds only the query-time masking
//! engine ([`masking`]): rows are stored verbatim (the hash chain must keep
//! proving them), so PII and secrets are masked as they leave the server,
//! according to a per-role profile from the masking policy.

#![warn(missing_docs)]

pub mod masking;
