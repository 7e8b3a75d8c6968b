//! Query side of the vault: SQL for one caller with enforcement below SQL
//! ([`sql`]), result encoding ([`rows`]), and the query-time masking engine
//! ([`masking`]). Rows are stored verbatim (the hash chain must keep proving
//! them), so PII and secrets are masked as they leave the server, according
//! to a per-role profile from the masking policy.

#![warn(missing_docs)]

mod checked_parquet;
pub mod distributed;
pub mod export;
mod footers;
pub mod guard;
pub mod masking;
pub mod priority;
pub mod rows;
mod scan;
pub use scan::{FixedReadPlans, ReadPlanSource};
pub mod sql;
pub mod worker;
