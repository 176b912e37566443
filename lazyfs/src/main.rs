//! `raft-lazyfs`: mounts a backing directory through the lazy filesystem (see the `lazyfs`
//! library) and serves its control socket until the mount is unmounted (`fusermount3 -u`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "raft-lazyfs",
    about = "A FUSE filesystem that loses unsynced writes on demand"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mounts BACKING at MOUNTPOINT and runs until unmounted.
    Mount {
        /// The directory holding what is durable.
        #[arg(long)]
        backing: PathBuf,
        /// Where the lazy view is mounted.
        #[arg(long)]
        mountpoint: PathBuf,
        /// The control socket (a unix stream socket) to create.
        #[arg(long)]
        control: PathBuf,
        /// Seed of `tear`'s choice of pages.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Mount {
            backing,
            mountpoint,
            control,
            seed,
        } => {
            let mount = lazyfs::fs::spawn(&backing, &mountpoint, &control, seed)
                .with_context(|| format!("mounting {}", backing.display()))?;
            tracing::info!(backing = %backing.display(), mountpoint = %mountpoint.display(), control = %control.display(), "mounted");
            mount.join().context("running the FUSE session")?;
        }
    }
    Ok(())
}
