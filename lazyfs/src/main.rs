//! `raft-lazyfs`: mounts a backing directory through the lazy filesystem (see the `lazyfs`
//! library) and serves its control socket until the mount is unmounted (`fusermount3 -u`).
//! Exit codes as every raftlab binary: 0 success, 3 bad usage or an error (one line on
//! stderr). Log filter: `RAFTLAB_LOG`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Mounts BACKING at MOUNTPOINT and runs until unmounted (as root, the mount also goes
    /// away when this process is killed).
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

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(3);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RAFTLAB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raft-lazyfs: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Mount {
            backing,
            mountpoint,
            control,
            seed,
        } => {
            let mount = lazyfs::fs::spawn(&backing, &mountpoint, &control, seed, true)
                .with_context(|| format!("mounting {}", backing.display()))?;
            tracing::info!(
                backing = %backing.display(),
                mountpoint = %mountpoint.display(),
                control = %control.display(),
                "mounted"
            );
            mount.join().context("running the FUSE session")?;
        }
    }
    Ok(())
}
