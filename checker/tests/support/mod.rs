//! Test support shared by the checker's integration tests.
#![allow(dead_code)] // each test binary uses a different part

pub mod oracle;
