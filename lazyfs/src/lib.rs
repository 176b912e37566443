//! raftlab's lazy filesystem: a FUSE passthrough that holds unsynced writes and directory
//! changes in memory, so that a simulated power cut really loses what a process never
//! synced (a SIGKILL keeps the kernel's page cache, which hides a forgotten fdatasync).
//!
//! - [`layer`]: what is held and when it reaches the backing directory (no FUSE).
//! - [`fs`]: the FUSE filesystem over a [`layer::Lazy`].
//! - [`control`]: the control socket's protocol (`lose-unsynced`, `tear`, `checkpoint`,
//!   `fill`, `free`, `status`).
//!
//! It can also play a full disk: after `fill`, what needs new space (a write past a file's
//! allocated bytes, fallocate, creating a file or directory) fails with ENOSPC, while
//! overwrites, reads, fsync, unlink, rename and truncation still work, until `free`.

pub mod control;
pub mod fs;
pub mod layer;
