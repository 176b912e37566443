//! One test run: the workload file, the generator of client operations, the cluster the run
//! drives, the run itself (cluster, clients, nemesis, history, checker, report), the
//! records handed to the checker ([`check`]), the check of the history while the run goes
//! ([`online`]), and the run's `results.json` ([`summary`]).

pub mod check;
pub mod cluster;
pub mod generator;
pub mod online;
pub mod run;
pub mod summary;
pub mod workload;
