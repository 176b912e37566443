//! `raft-lab console`: a line-editing REPL (history, help) against a running cluster.
//!
//! Line editing runs on a blocking thread (rustyline owns the terminal); each command is sent
//! to the async side and answered there, so the QUIC connections stay open between commands.

use crate::cli::kv::{self, HELP};
use crate::kv::KvCluster;
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;
use tokio::sync::{mpsc, oneshot};

/// Runs the REPL until `quit`, Ctrl-D or Ctrl-C.
pub async fn run(cluster: KvCluster) -> anyhow::Result<()> {
    let nodes = cluster.nodes().len();
    let (lines_tx, mut lines_rx) = mpsc::channel::<(String, oneshot::Sender<()>)>(1);
    let editor = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut editor = DefaultEditor::new()?;
        println!("raftlab console: a {nodes}-node cluster; type `help`");
        loop {
            match editor.readline("raftlab> ") {
                Ok(line) => {
                    let line = line.trim().to_string();
                    if line.is_empty() {
                        continue;
                    }
                    let _ = editor.add_history_entry(line.as_str());
                    if line == "quit" || line == "exit" {
                        return Ok(());
                    }
                    let (done_tx, done_rx) = oneshot::channel();
                    if lines_tx.blocking_send((line, done_tx)).is_err() {
                        return Ok(());
                    }
                    // Wait for the answer before prompting again.
                    let _ = done_rx.blocking_recv();
                }
                Err(ReadlineError::Interrupted | ReadlineError::Eof) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    });
    while let Some((line, done)) = lines_rx.recv().await {
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        if words.first().map(String::as_str) == Some("help") {
            println!("{HELP}\nquit                  leave");
        } else {
            match kv::parse(&words) {
                Ok(command) => println!("{}", kv::execute(&cluster, command).await.text),
                Err(e) => println!("{e}"),
            }
        }
        let _ = done.send(());
    }
    editor.await??;
    cluster.close().await;
    Ok(())
}
