//! The command template through which the lab reaches a node's machine (`[remote] command` in
//! `cluster.toml`): `ssh {host}` for real machines, `ip netns exec {host} sh -c` for network
//! namespaces on this one (`raft-lab run --hosts netns`).
//!
//! A remote command runs as `sh -c "<expanded template> <quoted command>"` on this machine:
//! `{host}` becomes the node's [`NodeEntry::control_host`] and `{id}` its id, and the remote
//! command is appended as ONE shell-quoted word ([`shell_quote`]). So `kill -9 42` becomes
//! `ssh -- db1 'kill -9 42'` (the default `ssh {host}` runs with `--` before the host) or
//! `ip netns exec ns1 sh -c 'kill -9 42'`, and the remote shell sees the command exactly as
//! written, whatever quotes, `$` or newlines it holds.
//!
//! Every run has a timeout. The local `sh` runs in a process group of its own; on timeout the
//! whole group (the template's `ssh`/`ip` and anything they started here) is SIGKILLed, and
//! the error says so. Errors name the node, its host, the command and its stderr (one line).

use super::one_line;
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;
use node::config::NodeEntry;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tracing::{debug, warn};

/// How long the output may stay open after the local command exited (a background process
/// of the template, like an ssh control master, may hold it): then we return without it.
const OUTPUT_AFTER_EXIT: Duration = Duration::from_secs(1);
/// How long we collect what a timed-out (and killed) command wrote.
const OUTPUT_AFTER_KILL: Duration = Duration::from_secs(2);
/// Longest command text quoted in an error message.
const MAX_COMMAND_IN_ERROR: usize = 300;

/// A command that could not be run on a node's host; every message names the node id, the
/// host, the command and what went wrong (stderr as one line).
#[derive(Debug, Error)]
pub enum TemplateError {
    #[error("remote command template {template:?}: {reason}")]
    Invalid { template: String, reason: String },
    #[error("node {id} on {host}: cannot run `{command}` through `{expanded}`: {source}")]
    Spawn {
        id: u64,
        host: String,
        command: String,
        expanded: String,
        source: std::io::Error,
    },
    #[error("node {id} on {host}: `{command}` failed ({status}): {stderr}")]
    Failed {
        id: u64,
        host: String,
        command: String,
        status: String,
        stderr: String,
    },
    #[error(
        "node {id} on {host}: `{command}` did not finish within {timeout:?} and was killed: {stderr}"
    )]
    Timeout {
        id: u64,
        host: String,
        command: String,
        timeout: Duration,
        stderr: String,
    },
}

impl TemplateError {
    /// `command` ran on `node`'s host and exited with `output.status`, not 0.
    pub fn failed(node: &NodeEntry, command: &str, output: &Output) -> TemplateError {
        TemplateError::Failed {
            id: node.id,
            host: node.control_host().to_string(),
            command: command_for_error(command),
            status: output.status.to_string(),
            stderr: stderr_line(&output.stderr),
        }
    }
}

/// The `[remote] command` a cluster file gets when it names none.
const SSH_DEFAULT: &str = "ssh {host}";
/// What the lab runs for it: after `--` ssh takes the next word as the destination, so no
/// host can ever be read as an option (`-oProxyCommand=...` runs a command here). The
/// cluster file refuses such hosts too; this holds whatever reaches the template.
const SSH_DEFAULT_SAFE: &str = "ssh -- {host}";

/// `[remote] command`, parsed: the placeholders `{host}` and `{id}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandTemplate {
    template: String,
}

impl CommandTemplate {
    /// Parses `template`. Refuses an empty one and unknown `{name}` placeholders (a typo such
    /// as `{hots}` would otherwise reach the shell); shell syntax like `${VAR}` is left alone.
    /// The default `ssh {host}` becomes `ssh -- {host}`; other templates stay as written.
    pub fn parse(template: &str) -> Result<CommandTemplate, TemplateError> {
        if template.trim() == SSH_DEFAULT {
            return Ok(CommandTemplate {
                template: SSH_DEFAULT_SAFE.to_string(),
            });
        }
        let invalid = |reason: String| TemplateError::Invalid {
            template: template.to_string(),
            reason,
        };
        if template.trim().is_empty() {
            return Err(invalid("empty command".into()));
        }
        if let Some(name) = unknown_placeholder(template) {
            return Err(invalid(format!(
                "unknown placeholder {{{name}}}; known: {{host}}, {{id}}"
            )));
        }
        Ok(CommandTemplate {
            template: template.to_string(),
        })
    }

    /// The template for `node`: `{host}` replaced by its control host (quoted only if it holds
    /// characters a shell would interpret) and `{id}` by its id.
    pub fn expand(&self, node: &NodeEntry) -> String {
        self.template
            .replace("{host}", &quote_if_needed(node.control_host()))
            .replace("{id}", &node.id.to_string())
    }

    /// The local shell command that runs `command` on `node`'s host: the expanded template
    /// and `command` as one shell-quoted word.
    pub fn command_line(&self, node: &NodeEntry, command: &str) -> String {
        format!("{} {}", self.expand(node), shell_quote(command))
    }

    /// Runs `command` on `node`'s host (feeding it `stdin`), fails unless it exits with
    /// status 0. See [`Self::output`].
    pub fn run(
        &self,
        node: &NodeEntry,
        command: &str,
        stdin: Option<&str>,
        timeout: Duration,
    ) -> Result<Output, TemplateError> {
        let output = self.output(node, command, stdin, timeout)?;
        if output.status.success() {
            return Ok(output);
        }
        Err(TemplateError::failed(node, command, &output))
    }

    /// Runs `command` on `node`'s host and returns its output whatever its exit status; fails
    /// only when it cannot be started or does not finish within `timeout` (then the local
    /// process group is killed).
    pub fn output(
        &self,
        node: &NodeEntry,
        command: &str,
        stdin: Option<&str>,
        timeout: Duration,
    ) -> Result<Output, TemplateError> {
        let line = self.command_line(node, command);
        let host = node.control_host().to_string();
        let spawn_error = |source: std::io::Error| TemplateError::Spawn {
            id: node.id,
            host: host.clone(),
            command: command_for_error(command),
            expanded: self.expand(node),
            source,
        };
        debug!(id = node.id, %host, command = %command_for_error(command), "remote command");
        let started = Instant::now();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&line)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(spawn_error)?;
        let Ok(raw_pid) = i32::try_from(child.id()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(spawn_error(std::io::Error::other("pid out of range")));
        };
        let pid = Pid::from_raw(raw_pid);

        let (tx, rx) = mpsc::channel::<Event>();
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let text = text.to_string();
            std::thread::spawn(move || {
                // A command that does not read its input (or died) closes the pipe: its
                // own exit status tells what went wrong.
                let _ = pipe.write_all(text.as_bytes());
            });
        }
        if let Some(pipe) = child.stdout.take() {
            spawn_reader(pipe, tx.clone(), Event::Stdout);
        }
        if let Some(pipe) = child.stderr.take() {
            spawn_reader(pipe, tx.clone(), Event::Stderr);
        }
        std::thread::spawn(move || {
            // Wait for the exit without reaping: until we reap, the pid and its process group
            // cannot be reused, so a late kill of the group is always safe.
            while let Err(Errno::EINTR) =
                waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
            {}
            let _ = tx.send(Event::Exited);
        });

        let mut collected = Collected::default();
        let deadline = started + timeout;
        collected.until(&rx, deadline, |c| c.exited);
        let timed_out = !collected.exited;
        if timed_out {
            warn!(id = node.id, %host, ?timeout, command = %command_for_error(command), "remote command timed out; killing its process group");
            let _ = killpg(pid, Signal::SIGKILL);
            collected.until(&rx, Instant::now() + OUTPUT_AFTER_KILL, Collected::done);
        } else {
            if !collected.until(&rx, Instant::now() + OUTPUT_AFTER_EXIT, Collected::done) {
                debug!(id = node.id, %host, "the command exited but its output stays open; not waiting for it");
            }
        }
        let status = child.wait().map_err(spawn_error)?;
        let output = Output {
            status,
            stdout: collected.stdout.unwrap_or_default(),
            stderr: collected.stderr.unwrap_or_default(),
        };
        if timed_out {
            return Err(TemplateError::Timeout {
                id: node.id,
                host,
                command: command_for_error(command),
                timeout,
                stderr: stderr_line(&output.stderr),
            });
        }
        debug!(id = node.id, status = %output.status, took = ?started.elapsed(), "remote command done");
        Ok(output)
    }
}

/// What the helper threads of [`CommandTemplate::output`] report.
enum Event {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exited,
}

#[derive(Default)]
struct Collected {
    stdout: Option<Vec<u8>>,
    stderr: Option<Vec<u8>>,
    exited: bool,
}

impl Collected {
    fn done(&self) -> bool {
        self.exited && self.stdout.is_some() && self.stderr.is_some()
    }

    /// Takes events until `enough` holds (true) or `deadline` passes (false).
    fn until(
        &mut self,
        rx: &mpsc::Receiver<Event>,
        deadline: Instant,
        enough: impl Fn(&Collected) -> bool,
    ) -> bool {
        while !enough(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Event::Stdout(bytes)) => self.stdout = Some(bytes),
                Ok(Event::Stderr(bytes)) => self.stderr = Some(bytes),
                Ok(Event::Exited) => self.exited = true,
                // Every sender is gone: nothing more will come.
                Err(mpsc::RecvTimeoutError::Disconnected) => return enough(self),
                Err(mpsc::RecvTimeoutError::Timeout) => return false,
            }
        }
        true
    }
}

fn spawn_reader(
    mut pipe: impl Read + Send + 'static,
    tx: mpsc::Sender<Event>,
    event: fn(Vec<u8>) -> Event,
) {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error ends the stream: what was read so far is what the command wrote.
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(event(bytes));
    });
}

/// `s` as one shell word: in single quotes, each `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `s` as is when a shell reads it as one literal word, else [`shell_quote`]d.
pub fn quote_if_needed(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.,:/@%+=".contains(c));
    if plain {
        s.to_string()
    } else {
        shell_quote(s)
    }
}

/// The first `{name}` (lowercase letters, digits, `_`) that is not `{host}`/`{id}` and not
/// part of `${name}`.
fn unknown_placeholder(template: &str) -> Option<String> {
    let mut rest = template;
    let mut previous: Option<char> = None;
    while let Some(open) = rest.find('{') {
        let before = rest[..open].chars().last().or(previous);
        let after = &rest[open + 1..];
        if let Some(close) = after.find('}') {
            let name = &after[..close];
            let word = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if word && before != Some('$') && name != "host" && name != "id" {
                return Some(name.to_string());
            }
        }
        previous = Some('{');
        rest = after;
    }
    None
}

/// Command output as one line: lines trimmed, empty ones dropped, joined with spaces.
pub fn output_line(bytes: &[u8]) -> String {
    one_line(&String::from_utf8_lossy(bytes))
}

/// Stderr as one trimmed line (`"no error output"` when empty).
pub fn stderr_line(stderr: &[u8]) -> String {
    let line = output_line(stderr);
    if line.is_empty() {
        "no error output".into()
    } else {
        line
    }
}

/// `command` as one line, shortened for an error message.
fn command_for_error(command: &str) -> String {
    let line = one_line(command);
    if line.chars().count() <= MAX_COMMAND_IN_ERROR {
        return line;
    }
    let short: String = line.chars().take(MAX_COMMAND_IN_ERROR).collect();
    format!("{short}...")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(id: u64, addr: &str, host: Option<&str>) -> NodeEntry {
        NodeEntry {
            id,
            addr: addr.into(),
            host: host.map(String::from),
        }
    }

    fn local() -> CommandTemplate {
        CommandTemplate::parse("env RAFTLAB_HOST={host} RAFTLAB_ID={id} sh -c").unwrap()
    }

    #[test]
    fn expansion_substitutes_host_and_id() {
        let t = CommandTemplate::parse("ssh -o BatchMode=yes {host}").unwrap();
        assert_eq!(
            t.expand(&node(2, "10.0.0.2:15002", None)),
            "ssh -o BatchMode=yes 10.0.0.2"
        );
        assert_eq!(
            t.expand(&node(2, "[::1]:15002", Some("admin@db2"))),
            "ssh -o BatchMode=yes admin@db2"
        );
        assert_eq!(
            t.expand(&node(3, "[fe80::1]:15003", None)),
            "ssh -o BatchMode=yes fe80::1"
        );
        let t = CommandTemplate::parse("ip netns exec {host} sh -c").unwrap();
        assert_eq!(
            t.expand(&node(1, "10.1.1.1:1", Some("rl1x0n1"))),
            "ip netns exec rl1x0n1 sh -c"
        );
        let t = CommandTemplate::parse("docker exec node{id} sh -c").unwrap();
        assert_eq!(t.expand(&node(7, "x:1", None)), "docker exec node7 sh -c");
        // A host with shell syntax in it stays one word.
        let t = CommandTemplate::parse("ssh {host}").unwrap();
        assert_eq!(t.expand(&node(1, "x:1", Some("a b;c"))), "ssh -- 'a b;c'");
        assert_eq!(
            t.command_line(&node(1, "db1:1", None), "kill -9 42"),
            "ssh -- db1 'kill -9 42'"
        );
        assert_eq!(
            t.command_line(&node(1, "db1:1", None), "echo 'hi'"),
            r"ssh -- db1 'echo '\''hi'\'''"
        );
    }

    /// A cluster file without `command` gets `ssh {host}`, which runs as `ssh -- HOST`: after
    /// `--` ssh reads the host as the destination whatever it looks like.
    #[test]
    fn the_default_ssh_template_ends_options_before_the_host() {
        let text = "[[node]]\nid = 1\naddr = \"10.0.0.1:15001\"\nhost = \"admin@db1\"\n[remote]\n";
        let config =
            node::config::ClusterConfig::parse(std::path::Path::new("c.toml"), text).unwrap();
        let command = &config.remote.as_ref().unwrap().command;
        let t = CommandTemplate::parse(command).unwrap();
        assert_eq!(t.expand(&config.nodes[0]), "ssh -- admin@db1");
        assert_eq!(
            t.command_line(&config.nodes[0], "true"),
            "ssh -- admin@db1 'true'"
        );
        // Written out by hand, the same; other templates are left as written.
        assert_eq!(
            CommandTemplate::parse(" ssh {host} ")
                .unwrap()
                .expand(&config.nodes[0]),
            "ssh -- admin@db1"
        );
        assert_eq!(
            CommandTemplate::parse("ssh -p 2222 {host}")
                .unwrap()
                .expand(&config.nodes[0]),
            "ssh -p 2222 admin@db1"
        );
        // The cluster file never lets such a host through in the first place.
        let bad = text.replace("admin@db1", "-oProxyCommand=sh");
        let err = node::config::ClusterConfig::parse(std::path::Path::new("c.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("-oProxyCommand=sh"), "{err}");
    }

    #[test]
    fn bad_templates_are_refused() {
        let err = CommandTemplate::parse("  ").unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = CommandTemplate::parse("ssh {hots}")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("{hots}") && err.contains("ssh {hots}"),
            "{err}"
        );
        // Shell parameter expansion is not a placeholder.
        assert!(CommandTemplate::parse("ssh ${SSH_USER}@{host}").is_ok());
        assert!(CommandTemplate::parse("sh -c 'x={a,b}' {host}").is_ok());
    }

    #[test]
    fn runs_through_the_template_with_stdin_and_exact_quoting() {
        let t = local();
        let n = node(4, "127.0.0.1:1", Some("here"));
        let out = t
            .run(
                &n,
                "printf '%s|%s|' \"$RAFTLAB_HOST\" \"$RAFTLAB_ID\"; cat; printf '%s' 'it'\"'\"'s $HOME \\'",
                Some("from stdin\n"),
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "here|4|from stdin\nit's $HOME \\"
        );
    }

    #[test]
    fn failures_name_node_host_command_and_stderr() {
        let t = local();
        let n = node(3, "127.0.0.3:1", None);
        let err = t
            .run(
                &n,
                "echo 'first line' >&2; echo '  second  ' >&2; exit 3",
                None,
                Duration::from_secs(10),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("node 3 on 127.0.0.3"), "{err}");
        assert!(err.contains("exit 3"), "{err}");
        assert!(err.contains("first line second"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        // `output` hands back the status instead.
        let out = t
            .output(&n, "exit 3", None, Duration::from_secs(10))
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        // A template whose program does not exist fails like a command (sh says so).
        let missing = CommandTemplate::parse("/nonexistent/ssh {host}").unwrap();
        let err = missing
            .run(&n, "true", None, Duration::from_secs(10))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/ssh"), "{err}");
    }

    #[test]
    fn a_timeout_kills_the_whole_process_group() {
        let t = local();
        let n = node(1, "127.0.0.1:1", None);
        let pid_file =
            std::env::temp_dir().join(format!("raftlab-template-group-{}.pid", std::process::id()));
        // A background sleep in the same group: the group kill must take it too.
        let err = t
            .run(
                &n,
                &format!(
                    "echo started >&2; sleep 30 & echo $! > {}; sleep 31",
                    pid_file.display()
                ),
                None,
                Duration::from_millis(300),
            )
            .unwrap_err();
        assert!(
            matches!(&err, TemplateError::Timeout { stderr, .. } if stderr == "started"),
            "{err}"
        );
        assert!(
            err.to_string().contains("did not finish within 300ms"),
            "{err}"
        );
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let _ = std::fs::remove_file(&pid_file);
        // Killed: soon gone, or a zombie nobody reaps (it may still be exiting right after
        // its pipes closed). A sleep the kill missed would stay asleep for 30 s.
        let state = || {
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
                .ok()
                .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(state(), None | Some('Z' | 'X')) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            matches!(state(), None | Some('Z' | 'X')),
            "background sleep: {:?}",
            state()
        );
    }

    #[test]
    fn long_commands_are_shortened_in_errors() {
        let long = "x".repeat(1000);
        let shown = command_for_error(&long);
        assert!(shown.len() < 400 && shown.ends_with("..."));
        assert_eq!(command_for_error("a\n  b"), "a b");
        assert_eq!(stderr_line(b"\n"), "no error output");
    }

    #[test]
    fn quote_if_needed_leaves_plain_words_alone() {
        assert_eq!(quote_if_needed("db-1.example.net"), "db-1.example.net");
        assert_eq!(quote_if_needed(""), "''");
        assert_eq!(quote_if_needed("a'b"), r"'a'\''b'");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn shell_quote_round_trips_through_sh(s in r"[^\x00]{0,40}") {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(&s)))
                .output()
                .unwrap();
            prop_assert!(out.status.success());
            prop_assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }

        #[test]
        fn shell_quote_round_trips_awkward_ascii(s in "['\"\\\\$`!*?;&|<>(){} \t\n a-z-]{0,30}") {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(&s)))
                .output()
                .unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }
}
