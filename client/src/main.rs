//! `raft-lab`: not built yet (issue # client library, workload generator, nemesis, local cluster launcher, histories, results and reports:5). Exits 3 (usage error) so scripts never mistake it
//! for a working binary.
fn main() {
    eprintln!("raft-lab: not built yet (see issue # client library, workload generator, nemesis, local cluster launcher, histories, results and reports:5); nothing was run");
    std::process::exit(3);
}
