//! Links `raft-check`'s unwinder into the binary on GNU/Linux.
//!
//! Rust's standard library takes its unwinder from the shared `libgcc_s`, and loading that
//! library runs its CPU-detection constructor (CPUID instructions), which a virtual
//! machine traps: about 0.1 ms of every start, a tenth of checking a 1,000-op history. The
//! same unwinder from the static `libgcc_eh` (what `gcc -static-libgcc` and Rust's own
//! static builds link) is taken whole, so its definitions win over the shared library's,
//! which `--as-needed` then leaves out. Panics unwind exactly as before.

fn main() {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let static_crt = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    if var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" && !static_crt
    {
        println!(
            "cargo:rustc-link-arg-bin=raft-check=-Wl,--push-state,--whole-archive,-Bstatic,-lgcc_eh,--pop-state"
        );
    }
    println!("cargo:rerun-if-changed=build.rs");
}
