//! `raft-model`: not built yet (issue #3 and #6). Exits 3 (usage error) so scripts never mistake it
//! for a working binary.
fn main() {
    eprintln!("raft-model: not built yet (see issue #3 and #6); nothing was run");
    std::process::exit(3);
}
