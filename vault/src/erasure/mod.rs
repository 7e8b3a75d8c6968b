//! Erasure: removing the payload of chosen entries (their `content`,
//! `attributes` and salt) while every record, leaf, chain link, tile,
//! checkpoint and proof stays valid (SPEC sections 4 and 10,
//! `docs/erasure.md`).
//!
//! A record holds only salted digests of the two payload fields, so once a
//! value and its salt are gone the digest reveals nothing about it, and the
//! record still hashes to the same leaf. Erasing is therefore a rewrite of
//! the segments holding the entries ([`erase_in_store`]: create-only, as the
//! next generation of the same range, signed for the same tree state, the
//! older generation deleted only after the new one is in place), plus a
//! purge of the write-ahead log files that still hold them
//! ([`crate::Appender::erase`]). Which entries may lack their payload is
//! decided by the orders recorded in `_audit` ([`orders`]); `verify` reports
//! any other missing payload as a removal.

pub mod orders;
mod ranges;
pub mod receipt;
mod rewrite;

pub use orders::{ERASURES_SESSION, ErasurePolicy, Order, Orders, Selection, State, Step};
pub use ranges::IndexRanges;
pub use rewrite::{Erased, erase_in_store};
