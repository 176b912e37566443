//! One test run: the workload file, the generator of client operations, the cluster the run
//! drives, and the run itself (cluster, clients, nemesis, history, checker, report).

pub mod cluster;
pub mod generator;
pub mod run;
pub mod summary;
pub mod workload;
