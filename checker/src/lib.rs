//! raftlab's linearizability checker.
//!
//! Reads histories ([`history`]: JSON Lines and Jepsen EDN), pairs them into operations, splits
//! them by key (P-compositionality), and decides per key whether some total order of the
//! operations, consistent with real time, is a legal sequential execution of a [`model`].
//! Registers whose written values are unique take a polynomial fast path ([`register`]);
//! strings built by puts and appends of unique, prefix-free values are reduced to it
//! ([`append`]); everything else goes through the general memoised search ([`search`]). Verdicts are
//! `valid`, `invalid` with an explained anomaly ([`explain`]), or `unknown` when the
//! [`budget`] ran out, never a guess.

pub mod append;
pub mod budget;
pub mod check;
pub mod decide;
pub mod error;
pub mod explain;
pub mod history;
pub mod html;
pub mod register;
pub mod search;
pub mod spec;
pub mod synth;

pub use budget::{Budget, GiveUp, KeyOutcome, Want};
pub use check::{check, CheckOptions, Report, Verdict};
pub use error::HistoryError;
pub use spec::{Model, ModelKind};
