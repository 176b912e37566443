//! `raft-node`: not built yet (issue # tokio, QUIC with mutual TLS, durable storage, config file:4). Exits 3 (usage error) so scripts never mistake it
//! for a working binary.
fn main() {
    eprintln!("raft-node: not built yet (see issue # tokio, QUIC with mutual TLS, durable storage, config file:4); nothing was run");
    std::process::exit(3);
}
