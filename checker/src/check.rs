//! Checks a whole history: split by key, check keys in parallel, combine verdicts.
// TODO(lead): in progress.
pub struct CheckOptions;
pub struct Report;
pub enum Verdict {}
pub fn check() {}
