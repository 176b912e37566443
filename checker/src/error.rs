//! Errors for bad input: each names the file position at fault.

use thiserror::Error;

/// A history that cannot be read or makes no sense.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HistoryError {
    /// A syntax or shape problem at a given line.
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    /// A problem with the whole file (empty input, unreadable file).
    #[error("{0}")]
    File(String),
}

impl HistoryError {
    pub fn at(line: usize, message: impl Into<String>) -> Self {
        HistoryError::Line {
            line,
            message: message.into(),
        }
    }
}
