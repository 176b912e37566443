//! Test support shared by the checker's integration tests.
#![allow(dead_code)] // each test binary uses a different part

pub mod append_gen;
pub mod gen;
pub mod oracle;
pub mod register_gen;
