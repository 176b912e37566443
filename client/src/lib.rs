//! raftlab `client`: the lab.
//!
//! Built by issue # client library, workload generator, nemesis, local cluster launcher, histories, results and reports:5; see `../shared/ARCHITECTURE.md` for where it is heading.
