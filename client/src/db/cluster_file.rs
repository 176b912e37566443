//! Edits of `cluster.toml` made by the membership commands: a node added, a node removed.
//!
//! The file bootstraps the cluster; the log is the truth after that. So an edit keeps what a
//! node needs to replay its log from the start: `bootstrap` is pinned to the voters the
//! cluster started with before the first edit, and a removed id goes to `removed`, never to
//! be reused (a removed node's votes and log are gone, so its id coming back could vote
//! twice in a term). Comments and layout are kept; the edited text is validated like any
//! `cluster.toml` and replaces the file atomically.

use crate::control::files::write_atomically;
use model::core::NodeId;
use node::config::{check_addr, ClusterConfig, ConfigError};
use std::path::{Path, PathBuf};
use thiserror::Error;
use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table};

/// Why an edit was refused or could not be made; the file is then unchanged.
#[derive(Debug, Error)]
pub enum FileEditError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path}: {message}")]
    Refused { path: PathBuf, message: String },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Adds node `id` at `addr` (and `host`, where the lab reaches its machine, if given).
pub fn add_node(
    path: &Path,
    id: NodeId,
    addr: &str,
    host: Option<&str>,
) -> Result<ClusterConfig, FileEditError> {
    let refused = |message: String| FileEditError::Refused {
        path: path.to_path_buf(),
        message,
    };
    let (config, mut doc) = open(path)?;
    if id == 0 {
        return Err(refused("node id 0 is reserved; ids start at 1".into()));
    }
    if config.node(id).is_some() {
        return Err(refused(format!("node {id} is already in the cluster")));
    }
    if config.removed.contains(&id) {
        return Err(refused(format!(
            "node {id} was removed from this cluster and its id is never reused: pick a new id"
        )));
    }
    check_addr(addr).map_err(|why| refused(format!("addr {addr:?}: {why}")))?;
    if let Some(other) = config.nodes.iter().find(|n| n.addr == addr) {
        return Err(refused(format!(
            "addr {addr} is already used by node {}",
            other.id
        )));
    }
    pin_bootstrap(&config, &mut doc);
    let mut entry = Table::new();
    entry.insert("id", value(id as i64));
    entry.insert("addr", value(addr));
    if let Some(host) = host {
        entry.insert("host", value(host));
    }
    nodes(&mut doc, path)?.push(entry);
    save(path, doc)
}

/// Removes node `id` from the `[[node]]` entries and lists it in `removed`.
pub fn remove_node(path: &Path, id: NodeId) -> Result<ClusterConfig, FileEditError> {
    let (config, mut doc) = open(path)?;
    if config.node(id).is_none() {
        return Err(FileEditError::Refused {
            path: path.to_path_buf(),
            message: format!("node {id} is not in the cluster"),
        });
    }
    pin_bootstrap(&config, &mut doc);
    let entries = nodes(&mut doc, path)?;
    let position = entries
        .iter()
        .position(|t| t.get("id").and_then(Item::as_integer) == Some(id as i64));
    if let Some(i) = position {
        // The comments above the first entry usually head the file: they stay.
        let prefix = entries
            .get(i)
            .and_then(|t| t.decor().prefix())
            .and_then(|p| p.as_str())
            .map(str::to_string);
        entries.remove(i);
        if let (0, Some(prefix), Some(next)) = (i, prefix, entries.get_mut(0)) {
            next.decor_mut().set_prefix(prefix);
        }
    }
    let removed = doc
        .entry("removed")
        .or_insert_with(|| value(Array::new()))
        .as_array_mut()
        .ok_or_else(|| FileEditError::Refused {
            path: path.to_path_buf(),
            message: "`removed` is not an array".into(),
        })?;
    removed.push(id as i64);
    save(path, doc)
}

/// The file, read once: validated, and as an editable document.
fn open(path: &Path) -> Result<(ClusterConfig, DocumentMut), FileEditError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let config = ClusterConfig::parse(path, &text)?;
    let doc = text
        .parse::<DocumentMut>()
        .map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok((config, doc))
}

/// Writes down the voters the cluster started with, unless the file already says.
fn pin_bootstrap(config: &ClusterConfig, doc: &mut DocumentMut) {
    if doc.contains_key("bootstrap") {
        return;
    }
    let voters: Array = config.bootstrap.iter().map(|&id| id as i64).collect();
    // Top-level keys go before the first table, where a reader looks for them.
    doc.insert("bootstrap", value(voters));
}

fn nodes<'a>(
    doc: &'a mut DocumentMut,
    path: &Path,
) -> Result<&'a mut ArrayOfTables, FileEditError> {
    doc.get_mut("node")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| FileEditError::Refused {
            path: path.to_path_buf(),
            message: "no [[node]] entries".into(),
        })
}

/// Validates the edited text as a `cluster.toml`, then replaces the file.
fn save(path: &Path, doc: DocumentMut) -> Result<ClusterConfig, FileEditError> {
    let text = doc.to_string();
    let config = ClusterConfig::parse(path, &text)?;
    write_atomically(path, &text).map_err(|source| FileEditError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# three nodes\n[[node]]\nid = 1\naddr = \"127.0.0.1:15001\"\n\n[[node]]\nid = 2\naddr = \"127.0.0.1:15002\"\n\n[[node]]\nid = 3\naddr = \"127.0.0.1:15003\"\n\n[timing]\ntick_ms = 20\n";

    fn file(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("raftlab-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("cluster.toml");
        std::fs::write(&path, FILE).expect("write");
        path
    }

    #[test]
    fn add_then_remove_pins_bootstrap_keeps_comments_and_retires_the_id() {
        let path = file("file-edit");
        let config = add_node(&path, 4, "127.0.0.1:15004", None).expect("add");
        assert_eq!(config.ids().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(config.bootstrap, vec![1, 2, 3]);
        let config = remove_node(&path, 1).expect("remove");
        assert_eq!(config.ids().collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(config.bootstrap, vec![1, 2, 3]);
        assert!(config.removed.contains(&1));
        assert_eq!(config.timing.tick_ms, 20);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("# three nodes\n[[node]]\nid = 2"), "{text}");
        let err = add_node(&path, 1, "127.0.0.1:15009", None).expect_err("reused id");
        assert!(err.to_string().contains("never reused"), "{err}");
    }

    #[test]
    fn bad_edits_are_refused_and_leave_the_file_alone() {
        let path = file("file-refused");
        for (id, addr, why) in [
            (2, "127.0.0.1:15009", "already in the cluster"),
            (4, "127.0.0.1:15002", "already used by node 2"),
            (4, "127.0.0.1", "expected host:port"),
            (4, "-oProxyCommand=x:1", "option"),
            (0, "127.0.0.1:15009", "reserved"),
        ] {
            let err = add_node(&path, id, addr, None).expect_err(addr);
            assert!(err.to_string().contains(why), "{addr}: {err}");
        }
        let err = remove_node(&path, 9).expect_err("unknown id");
        assert!(err.to_string().contains("not in the cluster"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), FILE);
    }
}
