//! `tracevault replay`: a full-screen terminal replayer of one agent
//! session (prompts, reasoning, tool calls and results, errors) at real
//! pace or faster, with the session's integrity verdict always on screen.
//!
//! The pieces:
//! - [`Source`]: where events come from (server, bundle, data directory;
//!   [`VecSource`] in memory), read lazily in pages; [`sources`] holds the
//!   server and bundle sources, [`conformance`] the contract they all keep;
//! - [`App`]: state and key handling, no terminal involved;
//! - [`render`]: draws an [`App`] into a ratatui frame;
//! - [`run`]: the terminal loop.
//!
//! Memory stays flat on large sessions: a 9-byte-per-event index
//! ([`TimelineIndex`]) drives seeking, playback and filters, and event pages
//! live in a bounded LRU cache (at most [`cache::MAX_PAGES`] pages of
//! [`cache::PAGE_SIZE`] events).

#![warn(missing_docs)]

mod app;
pub mod cache;
pub mod conformance;
mod event;
mod help;
mod index;
pub mod playback;
mod render;
mod source;
pub mod sources;
mod terminal;
pub mod timefmt;

pub use app::{App, ReplayOptions};
pub use event::{EventKind, ReplayEvent, masked_ranges};
pub use help::KEYS;
pub use index::{SeqGap, TimelineIndex};
pub use render::render;
pub use source::{Integrity, SessionInfo, Source, SourceError, VecSource, page_range};
pub use terminal::run;

/// Errors from [`run`].
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The terminal could not be set up or drawn.
    #[error("terminal: {0}")]
    Io(#[from] std::io::Error),
    /// The source failed while opening the session.
    #[error(transparent)]
    Source(#[from] SourceError),
}
