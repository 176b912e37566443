//! The matrix's recipes: which workload and which faults `raft-lab matrix` uses to expose
//! each catalogue bug, and how it runs the correct build. Read from a TOML file
//! (`workloads/matrix.toml` by default):
//!
//! ```toml
//! db = "raftlab"                 # optional: the system under test ("raftlab" or "etcd");
//!                                # `--db` wins
//!
//! [correct]                      # optional; the correct build, once per nemesis kind
//! workload = "ci.toml"           # default ci.toml (paths are relative to this file)
//! nemesis = ["kill", "pause"]    # default: every kind the lab knows, each run alone
//! combined = false               # optional: also one row with all those kinds together
//! time_limit = 16                # optional, like nodes, concurrency and rate
//!
//! [etcd]                         # optional; keys as [correct]: the correct column of etcd
//! workload = "ci.toml"           # (default: [correct]'s plan)
//! combined = true
//!
//! [known.serializable-reads]     # a known behaviour of a system: expected invalid
//! db = "etcd"                    # required: the system it is a behaviour of
//! workload = "etcd-serializable.toml"   # the other keys as in [bug.NAME]
//! nemesis = ["isolate-leader"]
//! why = "..."
//!
//! [bug.stale-read]               # one table per catalogue bug
//! workload = "ci.toml"           # required
//! nemesis = ["isolate-leader", "partition-halves"]   # required: run together
//! why = "..."                    # required: one line, why these faults expose this bug
//! note = "..."                   # optional: a remark for the report
//! time_limit = 16                # optional seconds; `--time-limit` wins
//! nodes = 3                      # optional overrides of the workload file
//! concurrency = "2n"
//! rate = 150
//! ```
//!
//! Unknown keys, unknown bugs, unknown nemesis kinds, a missing workload file and bad values
//! are errors naming the file, the line and the key. A catalogue bug without a table gets
//! [`Recipes::default_recipe`]: the `ci.toml` beside the file with every nemesis kind.
//! Catalogue bugs are switches in raftlab's nodes: `db` belongs to `[known.NAME]` tables only.

use crate::control::one_line;
use crate::lab::workload::{line_of, line_text, Concurrency, DbKind};
use crate::nemesis::{self, NemesisKind};
use model::bugs::Bug;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;
use toml::Spanned;

/// The recipes file `raft-lab matrix` reads unless `--recipes` says otherwise.
pub const DEFAULT_RECIPES: &str = "workloads/matrix.toml";
/// The workload of the default recipe and of the correct runs, beside the recipes file.
pub const DEFAULT_WORKLOAD: &str = "ci.toml";

/// A problem with the recipes file.
#[derive(Debug, Error)]
pub enum RecipeError {
    #[error("{}: cannot read: {error}", path.display())]
    Read {
        path: PathBuf,
        /// Not a `source`: the message already says it.
        error: std::io::Error,
    },
    /// Something wrong at a place in the file; `key` is the dotted key at fault, if known.
    #[error("{}{}: {}{message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        key: Option<String>,
        message: String,
    },
}

/// Where a bug's recipe came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A `[bug.NAME]` table of the file.
    File,
    /// No table for the bug: [`Recipes::default_recipe`].
    Default,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Default => "default",
        }
    }
}

/// Overrides of the workload file a recipe may set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tuning {
    pub time_limit: Option<f64>,
    pub nodes: Option<usize>,
    pub concurrency: Option<Concurrency>,
    pub rate: Option<f64>,
}

/// How to expose one bug.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    /// The workload file (resolved against the recipes file's folder).
    pub workload: PathBuf,
    /// The faults, run together.
    pub nemesis: Vec<NemesisKind>,
    pub tuning: Tuning,
    /// One line: why these faults expose this bug.
    pub why: String,
    pub note: Option<String>,
    pub source: Source,
}

/// How to run the correct build: the workload once per nemesis kind, each kind alone, and
/// with `combined` once more with every one of them together.
#[derive(Clone, Debug, PartialEq)]
pub struct CorrectPlan {
    pub workload: PathBuf,
    pub nemesis: Vec<NemesisKind>,
    pub combined: bool,
    pub tuning: Tuning,
}

/// A known behaviour of a system: a recipe whose runs are expected to be judged invalid.
#[derive(Clone, Debug, PartialEq)]
pub struct Known {
    pub name: String,
    pub db: DbKind,
    pub recipe: Recipe,
}

/// The whole recipes file.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipes {
    pub path: PathBuf,
    /// The system the file names (`db`), if it does.
    pub db: Option<DbKind>,
    pub bugs: BTreeMap<Bug, Recipe>,
    pub correct: CorrectPlan,
    /// `[etcd]`: the correct column of etcd, if the file has one.
    pub etcd: Option<CorrectPlan>,
    /// `[known.NAME]`, in name order.
    pub known: Vec<Known>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    db: Option<DbKind>,
    correct: Option<CorrectDoc>,
    etcd: Option<CorrectDoc>,
    #[serde(default)]
    bug: BTreeMap<Spanned<String>, Spanned<RecipeDoc>>,
    #[serde(default)]
    known: BTreeMap<Spanned<String>, Spanned<RecipeDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeDoc {
    /// `[known.NAME]` only.
    db: Option<Spanned<DbKind>>,
    workload: Spanned<String>,
    nemesis: Spanned<Vec<Spanned<String>>>,
    why: Spanned<String>,
    note: Option<String>,
    time_limit: Option<Spanned<f64>>,
    nodes: Option<Spanned<i64>>,
    concurrency: Option<Spanned<Concurrency>>,
    rate: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CorrectDoc {
    workload: Option<Spanned<String>>,
    nemesis: Option<Spanned<Vec<Spanned<String>>>>,
    combined: Option<bool>,
    time_limit: Option<Spanned<f64>>,
    nodes: Option<Spanned<i64>>,
    concurrency: Option<Spanned<Concurrency>>,
    rate: Option<Spanned<f64>>,
}

/// The overrides as written in one table (serde's `flatten` would lose the spans).
struct TuningDoc<'a> {
    time_limit: &'a Option<Spanned<f64>>,
    nodes: &'a Option<Spanned<i64>>,
    concurrency: &'a Option<Spanned<Concurrency>>,
    rate: &'a Option<Spanned<f64>>,
}

impl Recipes {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Recipes, RecipeError> {
        let text = std::fs::read_to_string(path).map_err(|error| RecipeError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Recipes::parse(path, &text)
    }

    /// Parses `text` as if read from `path` (workload paths resolve against its folder and
    /// must exist).
    pub fn parse(path: &Path, text: &str) -> Result<Recipes, RecipeError> {
        let ctx = Ctx { path, text };
        let doc: FileDoc = toml::from_str(text).map_err(|e| {
            let mut message = one_line(e.message());
            // The line itself names the key when the message does not.
            if let Some(snippet) = e.span().and_then(|s| line_text(text, s.start)) {
                message.push_str(&format!(" (in `{snippet}`)"));
            }
            RecipeError::Invalid {
                path: path.to_path_buf(),
                line: e.span().map(|s| line_of(text, s.start)),
                key: None,
                message,
            }
        })?;

        let mut bugs = BTreeMap::new();
        for (name, recipe) in &doc.bug {
            let key = format!("bug.{}", name.get_ref());
            let bug: Bug = name
                .get_ref()
                .parse()
                .map_err(|e: model::bugs::UnknownBug| ctx.at(name.span(), &key, e.to_string()))?;
            if let Some(db) = &recipe.get_ref().db {
                return Err(ctx.at(
                    db.span(),
                    &format!("{key}.db"),
                    "catalogue bugs are switches in raftlab's nodes: a bug recipe has no db \
                     (a system's known behaviour goes in a [known.NAME] table)"
                        .into(),
                ));
            }
            bugs.insert(bug, ctx.recipe(recipe.get_ref(), &key)?);
        }
        let mut known = Vec::new();
        for (name, recipe) in &doc.known {
            let key = format!("known.{}", name.get_ref());
            let db = recipe.get_ref().db.as_ref().ok_or_else(|| {
                ctx.at(
                    recipe.span(),
                    &key,
                    "name the system this is a behaviour of: db = \"etcd\" or \"raftlab\"".into(),
                )
            })?;
            known.push(Known {
                name: name.get_ref().clone(),
                db: *db.get_ref(),
                recipe: ctx.recipe(recipe.get_ref(), &key)?,
            });
        }

        Ok(Recipes {
            path: path.to_path_buf(),
            db: doc.db,
            bugs,
            correct: ctx.correct(doc.correct.as_ref(), "correct")?,
            etcd: doc
                .etcd
                .as_ref()
                .map(|c| ctx.correct(Some(c), "etcd"))
                .transpose()?,
            known,
        })
    }

    /// The correct column's plan for system `db`: `[etcd]` for etcd when the file has it,
    /// else `[correct]`.
    pub fn correct_for(&self, db: DbKind) -> &CorrectPlan {
        match (db, &self.etcd) {
            (DbKind::Etcd, Some(plan)) => plan,
            _ => &self.correct,
        }
    }

    /// The recipe for `bug`: its table, or [`default_recipe`](Self::default_recipe).
    pub fn recipe(&self, bug: Bug) -> Recipe {
        self.bugs
            .get(&bug)
            .cloned()
            .unwrap_or_else(|| self.default_recipe())
    }

    /// For a bug without a table: `ci.toml` beside the recipes file, every nemesis kind.
    pub fn default_recipe(&self) -> Recipe {
        Recipe {
            workload: folder_of(&self.path).join(DEFAULT_WORKLOAD),
            nemesis: NemesisKind::ALL.to_vec(),
            tuning: Tuning::default(),
            why: format!(
                "no recipe in {}: the default, {DEFAULT_WORKLOAD} under every fault",
                self.path.display()
            ),
            note: None,
            source: Source::Default,
        }
    }
}

/// The folder a relative path in `path` resolves against.
fn folder_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn at(&self, span: std::ops::Range<usize>, key: &str, message: String) -> RecipeError {
        RecipeError::Invalid {
            path: self.path.to_path_buf(),
            line: Some(line_of(self.text, span.start)),
            key: Some(key.to_string()),
            message,
        }
    }

    fn default_workload(&self) -> PathBuf {
        folder_of(self.path).join(DEFAULT_WORKLOAD)
    }

    /// A `[bug.NAME]` or `[known.NAME]` table (`key`) as a recipe.
    fn recipe(&self, recipe: &RecipeDoc, key: &str) -> Result<Recipe, RecipeError> {
        let workload = self.workload(&recipe.workload, &format!("{key}.workload"))?;
        let nemesis = self.kinds(&recipe.nemesis, &format!("{key}.nemesis"))?;
        if nemesis.is_empty() {
            return Err(self.at(
                recipe.nemesis.span(),
                &format!("{key}.nemesis"),
                "name at least one nemesis kind: a recipe is a fault that exposes the behaviour"
                    .into(),
            ));
        }
        let why = recipe.why.get_ref().trim();
        if why.is_empty() || why.contains('\n') {
            return Err(self.at(
                recipe.why.span(),
                &format!("{key}.why"),
                "must be one non-empty line".into(),
            ));
        }
        Ok(Recipe {
            workload,
            nemesis,
            tuning: self.tuning(
                TuningDoc {
                    time_limit: &recipe.time_limit,
                    nodes: &recipe.nodes,
                    concurrency: &recipe.concurrency,
                    rate: &recipe.rate,
                },
                key,
            )?,
            why: why.to_string(),
            note: recipe.note.clone(),
            source: Source::File,
        })
    }

    /// A `[correct]` or `[etcd]` table (`key`), or the default plan when it is absent.
    fn correct(&self, doc: Option<&CorrectDoc>, key: &str) -> Result<CorrectPlan, RecipeError> {
        let Some(c) = doc else {
            return Ok(CorrectPlan {
                workload: self.default_workload(),
                nemesis: NemesisKind::ALL.to_vec(),
                combined: false,
                tuning: Tuning::default(),
            });
        };
        Ok(CorrectPlan {
            workload: match &c.workload {
                Some(w) => self.workload(w, &format!("{key}.workload"))?,
                None => self.default_workload(),
            },
            nemesis: match &c.nemesis {
                Some(list) => {
                    let kinds = self.kinds(list, &format!("{key}.nemesis"))?;
                    if kinds.is_empty() {
                        return Err(self.at(
                            list.span(),
                            &format!("{key}.nemesis"),
                            "name at least one nemesis kind (or leave it out: every kind)".into(),
                        ));
                    }
                    kinds
                }
                None => NemesisKind::ALL.to_vec(),
            },
            combined: c.combined.unwrap_or(false),
            tuning: self.tuning(
                TuningDoc {
                    time_limit: &c.time_limit,
                    nodes: &c.nodes,
                    concurrency: &c.concurrency,
                    rate: &c.rate,
                },
                key,
            )?,
        })
    }

    /// A workload path, resolved against the recipes file's folder; it must be a file.
    fn workload(&self, value: &Spanned<String>, key: &str) -> Result<PathBuf, RecipeError> {
        let given = Path::new(value.get_ref());
        let resolved = if given.is_absolute() {
            given.to_path_buf()
        } else {
            folder_of(self.path).join(given)
        };
        if !resolved.is_file() {
            return Err(self.at(
                value.span(),
                key,
                format!("no such workload file: {}", resolved.display()),
            ));
        }
        Ok(resolved)
    }

    /// Nemesis kinds (or the groups `all`, `partitions`), deduplicated, in order.
    fn kinds(
        &self,
        list: &Spanned<Vec<Spanned<String>>>,
        key: &str,
    ) -> Result<Vec<NemesisKind>, RecipeError> {
        let mut kinds = Vec::new();
        for word in list.get_ref() {
            let more = nemesis::parse_kinds(word.get_ref())
                .map_err(|e| self.at(word.span(), key, e.to_string()))?;
            for kind in more {
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
        }
        Ok(kinds)
    }

    fn tuning(&self, doc: TuningDoc<'_>, table: &str) -> Result<Tuning, RecipeError> {
        let positive = |field: &Option<Spanned<f64>>, name: &str, zero_ok: bool| {
            field
                .as_ref()
                .map(|v| {
                    let x = *v.get_ref();
                    let ok = x.is_finite() && if zero_ok { x >= 0.0 } else { x > 0.0 };
                    if ok {
                        Ok(x)
                    } else {
                        Err(self.at(
                            v.span(),
                            &format!("{table}.{name}"),
                            format!(
                                "must be a number {} 0, got {x}",
                                if zero_ok { ">=" } else { ">" }
                            ),
                        ))
                    }
                })
                .transpose()
        };
        let nodes = doc
            .nodes
            .as_ref()
            .map(|n| {
                let v = *n.get_ref();
                if (1..=crate::lab::workload::MAX_NODES as i64).contains(&v) {
                    Ok(v as usize)
                } else {
                    Err(self.at(
                        n.span(),
                        &format!("{table}.nodes"),
                        format!(
                            "must be in 1..={}, got {v}",
                            crate::lab::workload::MAX_NODES
                        ),
                    ))
                }
            })
            .transpose()?;
        Ok(Tuning {
            time_limit: positive(doc.time_limit, "time_limit", false)?,
            nodes,
            concurrency: doc.concurrency.as_ref().map(|c| *c.get_ref()),
            rate: positive(doc.rate, "rate", true)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder with `ci.toml` and `append.toml` (contents irrelevant to the parser).
    fn folder(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("raftlab-recipes-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ci.toml"), "").unwrap();
        std::fs::write(dir.join("append.toml"), "").unwrap();
        dir
    }

    fn parse(name: &str, text: &str) -> Result<Recipes, RecipeError> {
        let dir = folder(name);
        let result = Recipes::parse(&dir.join("matrix.toml"), text);
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    #[test]
    fn a_good_file() {
        let text = r#"
[correct]
nemesis = ["kill", "partitions"]
time_limit = 12

[bug.stale-read]
workload = "ci.toml"
nemesis = ["isolate-leader", "partition-halves", "isolate-leader"]
why = "a deposed leader answers from its own state"

[bug.no-dedup]
workload = "append.toml"
nemesis = ["kill", "partition-one"]
why = "lost replies make clients retry"
note = "appends show duplicates"
time_limit = 20
nodes = 3
concurrency = "2n"
rate = 0
"#;
        let dir = folder("good");
        let r = Recipes::parse(&dir.join("matrix.toml"), text).unwrap();
        let stale = r.recipe(Bug::StaleRead);
        assert_eq!(stale.source, Source::File);
        assert_eq!(stale.workload, dir.join("ci.toml"));
        assert_eq!(
            stale.nemesis,
            vec![NemesisKind::IsolateLeader, NemesisKind::PartitionHalves]
        );
        assert_eq!(stale.tuning, Tuning::default());
        let dedup = r.recipe(Bug::NoDedup);
        assert_eq!(dedup.workload, dir.join("append.toml"));
        assert_eq!(dedup.note.as_deref(), Some("appends show duplicates"));
        assert_eq!(
            dedup.tuning,
            Tuning {
                time_limit: Some(20.0),
                nodes: Some(3),
                concurrency: Some(Concurrency::PerNode(2)),
                rate: Some(0.0),
            }
        );
        // No table: the default recipe, reported as such.
        let vote = r.recipe(Bug::VoteTwice);
        assert_eq!(vote.source, Source::Default);
        assert_eq!(vote.workload, dir.join("ci.toml"));
        assert_eq!(vote.nemesis, NemesisKind::ALL.to_vec());
        assert_eq!(r.correct.nemesis[0], NemesisKind::Kill);
        assert_eq!(r.correct.nemesis.len(), 1 + NemesisKind::PARTITIONS.len());
        assert_eq!(r.correct.tuning.time_limit, Some(12.0));
        // Without [correct]: every kind, ci.toml.
        let r = Recipes::parse(&dir.join("matrix.toml"), "").unwrap();
        assert_eq!(r.correct.nemesis, NemesisKind::ALL.to_vec());
        assert_eq!(r.correct.workload, dir.join("ci.toml"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_system_its_correct_column_and_its_known_behaviours() {
        let text = r#"
db = "etcd"

[etcd]
nemesis = ["kill", "membership"]
combined = true

[known.serializable-reads]
db = "etcd"
workload = "ci.toml"
nemesis = ["partition-one"]
why = "member-local reads"
"#;
        let dir = folder("etcd");
        let r = Recipes::parse(&dir.join("matrix.toml"), text).unwrap();
        assert_eq!(r.db, Some(DbKind::Etcd));
        let etcd = r.correct_for(DbKind::Etcd);
        assert_eq!(
            etcd.nemesis,
            vec![NemesisKind::Kill, NemesisKind::Membership]
        );
        assert!(etcd.combined);
        // raftlab keeps [correct] (here the default: every kind, not combined).
        assert_eq!(
            r.correct_for(DbKind::Raftlab).nemesis,
            NemesisKind::ALL.to_vec()
        );
        assert!(!r.correct_for(DbKind::Raftlab).combined);
        assert_eq!(r.known.len(), 1);
        assert_eq!(r.known[0].name, "serializable-reads");
        assert_eq!(r.known[0].db, DbKind::Etcd);
        assert_eq!(r.known[0].recipe.nemesis, vec![NemesisKind::PartitionOne]);
        // Without [etcd], etcd runs [correct]'s plan.
        let r = Recipes::parse(
            &dir.join("matrix.toml"),
            "[correct]\nnemesis = [\"pause\"]\n",
        )
        .unwrap();
        assert_eq!(
            r.correct_for(DbKind::Etcd).nemesis,
            vec![NemesisKind::Pause]
        );
        std::fs::remove_dir_all(&dir).unwrap();

        // A known behaviour names its system; a bug recipe cannot.
        let text = "[known.x]\nworkload = \"ci.toml\"\nnemesis = [\"kill\"]\nwhy = \"y\"\n";
        let e = parse("known-without-db", text).unwrap_err().to_string();
        assert!(e.contains("known.x") && e.contains("db = "), "{e}");
        let text = "[bug.stale-read]\ndb = \"etcd\"\nworkload = \"ci.toml\"\nnemesis = [\"kill\"]\nwhy = \"y\"\n";
        let e = parse("bug-with-db", text).unwrap_err().to_string();
        assert!(e.contains("matrix.toml:2: bug.stale-read.db"), "{e}");
    }

    #[test]
    fn the_shipped_recipes_parse() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads/matrix.toml");
        let r = Recipes::load(&path).unwrap_or_else(|e| panic!("{e}"));
        for bug in [
            Bug::StaleRead,
            Bug::AckBeforeCommit,
            Bug::NoDedup,
            Bug::SendBeforePersist,
            Bug::ConcurrentMembership,
        ] {
            assert_eq!(r.recipe(bug).source, Source::File, "{bug}");
        }
        // A bug the lab cannot reach yet says so in its row.
        let membership = r.recipe(Bug::ConcurrentMembership);
        assert!(
            membership
                .note
                .as_deref()
                .is_some_and(|n| n.contains("one change at a time")),
            "{membership:?}"
        );
        // etcd: its own correct column, every kind together too, and serializable reads as a
        // known behaviour.
        assert!(r.correct_for(DbKind::Etcd).combined);
        assert!(r
            .known
            .iter()
            .any(|k| k.name == "serializable-reads" && k.db == DbKind::Etcd));
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let text = "[bug.stale-read]\nworkload = \"ci.toml\"\nnemesis = [\"kill\"]\nwhy = \"x\"\ntimelimit = 3\n";
        let e = parse("unknown-key", text).unwrap_err().to_string();
        assert!(e.contains("matrix.toml:5"), "{e}");
        assert!(e.contains("timelimit"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = parse("unknown-table", "[bugs.stale-read]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("matrix.toml:1") && e.contains("bugs"), "{e}");
    }

    #[test]
    fn an_unknown_bug_is_named_with_its_line() {
        let text = "# recipes\n\n[bug.stale-reads]\nworkload = \"ci.toml\"\nnemesis = [\"kill\"]\nwhy = \"x\"\n";
        let e = parse("unknown-bug", text).unwrap_err().to_string();
        assert!(e.contains("matrix.toml:3"), "{e}");
        assert!(e.contains("bug.stale-reads"), "{e}");
        assert!(
            e.contains("stale-read,"),
            "the message lists the known bugs: {e}"
        );
    }

    #[test]
    fn a_missing_workload_is_named() {
        let text =
            "[bug.stale-read]\nnemesis = [\"kill\"]\nwhy = \"x\"\nworkload = \"nope.toml\"\n";
        let e = parse("missing-workload", text).unwrap_err().to_string();
        assert!(e.contains("matrix.toml:4"), "{e}");
        assert!(e.contains("bug.stale-read.workload"), "{e}");
        assert!(e.contains("nope.toml"), "{e}");
        // Leaving `workload` out is an error too.
        let text = "[bug.stale-read]\nnemesis = [\"kill\"]\nwhy = \"x\"\n";
        let e = parse("no-workload", text).unwrap_err().to_string();
        assert!(e.contains("workload"), "{e}");
        let text = "[correct]\nworkload = \"gone.toml\"\n";
        let e = parse("missing-correct", text).unwrap_err().to_string();
        assert!(
            e.contains("correct.workload") && e.contains("gone.toml"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            ("nemesis = [\"flood\"]", "bug.stale-read.nemesis", "flood"),
            ("nemesis = []", "bug.stale-read.nemesis", "at least one"),
            ("nemesis = [\"kill\"]\ntime_limit = 0", "time_limit", "> 0"),
            ("nemesis = [\"kill\"]\nnodes = 0", "nodes", "1..="),
            (
                "nemesis = [\"kill\"]\nconcurrency = \"x\"",
                "",
                "concurrency",
            ),
        ];
        for (extra, key, needle) in cases {
            let text = format!("[bug.stale-read]\nworkload = \"ci.toml\"\nwhy = \"x\"\n{extra}\n");
            let e = parse("bad-values", &text).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(needle), "{extra}: {e}");
        }
        let text = "[bug.stale-read]\nworkload = \"ci.toml\"\nnemesis = [\"kill\"]\nwhy = \"\"\n";
        let e = parse("empty-why", text).unwrap_err().to_string();
        assert!(e.contains("bug.stale-read.why"), "{e}");
    }
}
