//! raftlab's lazy filesystem: a FUSE passthrough that holds unsynced writes and directory
//! changes in memory, so that a simulated power cut really loses what a process never
//! synced (a SIGKILL keeps the kernel's page cache, which hides a forgotten fdatasync).
//!
//! - [`layer`]: what is held and when it reaches the backing directory (no FUSE).
//! - [`fs`]: the FUSE filesystem over a [`layer::Lazy`].
//! - [`control`]: the control socket's protocol (`lose-unsynced`, `tear`, `checkpoint`,
//!   `status`).

pub mod control;
pub mod fs;
pub mod layer;
