//! `cargo xtask tidy`: repository rules, checked by reading the tree and `cargo metadata`.
//!
//! Every rule also runs as a `#[test]`, so `cargo test` enforces it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{cargo, project_root};

/// The PURE crates: no async runtime, sockets, files, threads, channels, clocks or OS randomness.
pub(crate) const PURE: &[&str] = &[
    "synod-wire",
    "synod-paxos",
    "synod-replica",
    "synod-session",
    "synod-state-machine",
    "synod-kv",
    "synod-client-core",
    "synod-sim",
    "synod-check",
];

/// IO crates held to the same package rules as PURE ones: they touch files
/// only through a trait, on their caller's thread, and start no threads, so
/// the simulator can drive them deterministically (synod-wal over its `FaultyFs`).
pub(crate) const THREAD_FREE: &[&str] = &["synod-wal"];

/// Packages a PURE crate may not reach through its normal dependencies.
const FORBIDDEN_IN_PURE: &[&str] = &[
    "tokio",
    "quinn",
    "quinn-proto",
    "quinn-udp",
    "rustls",
    "socket2",
    "mio",
    "crossbeam-channel",
    "crossbeam",
    "parking_lot",
    "metrics",
    "getrandom",
    "rand",
    "anyhow",
];

/// The crates allowed to use `anyhow` (ARCHITECTURE.md: the binary, the runtime, xtask, the benchmark tools).
const ANYHOW_USERS: &[&str] = &["synod", "synod-runtime", "xtask", "synod-bench"];

/// Which workspace crates each workspace crate may depend on (normal and build dependencies).
///
/// This is the layering of `docs/decisions/0006-crate-layering.md`; a crate
/// missing from the table is an error, so a new crate has to take its place in it.
const ALLOWED: &[(&str, &[&str])] = &[
    ("synod-wire", &[]),
    ("synod-paxos", &["synod-wire"]),
    ("synod-replica", &["synod-paxos", "synod-state-machine", "synod-wire"]),
    ("synod-session", &["synod-wire"]),
    ("synod-state-machine", &["synod-session", "synod-wire"]),
    ("synod-kv", &["synod-state-machine"]),
    ("synod-wal", &["synod-wire"]),
    ("synod-log", &["synod-wal", "synod-wire"]),
    ("synod-transport", &["synod-wire"]),
    ("synod-metrics", &[]),
    (
        "synod-runtime",
        &[
            "synod-paxos",
            "synod-replica",
            "synod-state-machine",
            "synod-session",
            "synod-log",
            "synod-transport",
            "synod-metrics",
            "synod-wire",
        ],
    ),
    ("synod-client-core", &["synod-wire"]),
    ("synod-client", &["synod-client-core", "synod-transport", "synod-wire"]),
    ("synod-resp", &["synod-client", "synod-wire"]),
    (
        "synod",
        &[
            "synod-runtime",
            "synod-client",
            "synod-resp",
            "synod-kv",
            "synod-state-machine",
            "synod-log",
            "synod-transport",
            "synod-metrics",
            "synod-wire",
        ],
    ),
    (
        "synod-sim",
        &[
            "synod-paxos",
            "synod-replica",
            "synod-state-machine",
            "synod-session",
            "synod-kv",
            "synod-wal",
            "synod-client-core",
            "synod-wire",
        ],
    ),
    (
        "synod-bench",
        &[
            "synod-wire",
            "synod-paxos",
            "synod-session",
            "synod-state-machine",
            "synod-kv",
            "synod-log",
            "synod-transport",
            "synod-client",
            "synod-runtime",
            "synod-sim",
            "synod-check",
        ],
    ),
    (
        "synod-examples",
        &[
            "synod-runtime",
            "synod-state-machine",
            "synod-client",
            "synod-transport",
            "synod-wire",
            "synod-paxos",
        ],
    ),
    ("synod-check", &[]),
    ("synod-faultfs", &[]),
    ("xtask", &[]),
];

pub(crate) fn run() -> Result<()> {
    let mut problems = check_headers(&project_root())?;
    problems.extend(check_citations(&project_root())?);
    problems.extend(check_graph(&Graph::load()?));
    if problems.is_empty() {
        eprintln!("tidy: ok");
        return Ok(());
    }
    for p in &problems {
        eprintln!("tidy: {p}");
    }
    bail!("{} tidy problem(s)", problems.len())
}

/// Every `.rs` file in the workspace starts with a `//!` line saying what it is for.
fn check_headers(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for dir in ["crates", "xtask", "benches", "fuzz", "examples"] {
        let mut files = Vec::new();
        collect_rs(&root.join(dir), &mut files)?;
        for file in files {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            if !text.starts_with("//!") {
                let shown = file.strip_prefix(root).unwrap_or(&file).display().to_string();
                problems.push(format!("{shown}: must start with a `//!` line saying what the file is for"));
            }
        }
    }
    Ok(problems)
}

/// What the repository's files may not cite: documents that live outside the
/// repository. Built from pieces so that this file does not cite them itself.
fn outside_documents() -> [String; 2] {
    [["DESIGN", ".md"].concat(), ["..", "/shared"].concat()]
}

/// No tracked text file cites a document outside the repository: the docs
/// stand alone (ARCHITECTURE.md and `docs/` say what the design is).
fn check_citations(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for file in tracked_files(root)? {
        // A file deleted in the work tree, or not text, cites nothing.
        let Ok(text) = std::fs::read_to_string(root.join(&file)) else { continue };
        problems.extend(citations(&file, &text));
    }
    Ok(problems)
}

/// The citations of outside documents in `text`, one problem per line that has one.
fn citations(file: &str, text: &str) -> Vec<String> {
    let needles = outside_documents();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for needle in needles.iter().filter(|needle| line.contains(needle.as_str())) {
            problems.push(format!(
                "{file}:{}: cites `{needle}`, which is not in this repository; cite ARCHITECTURE.md or docs/ instead",
                n + 1
            ));
        }
    }
    problems
}

/// The files git tracks (paths relative to `root`); without git, every file
/// under `root` but `target` and dot-directories.
fn tracked_files(root: &Path) -> Result<Vec<String>> {
    let out = Command::new("git").args(["ls-files", "-z"]).current_dir(root).output();
    if let Ok(out) = out {
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout)
                .split('\0')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect());
        }
    }
    let mut files = Vec::new();
    collect_all(root, root, &mut files)?;
    Ok(files)
}

fn collect_all(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "target" || name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_all(root, &path, out)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push(relative.display().to_string());
        }
    }
    Ok(())
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                collect_rs(&path, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The workspace's crates and the normal dependencies between all packages.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    /// Workspace crate names.
    members: BTreeSet<String>,
    /// Package name -> names of its normal (and build) dependencies.
    deps: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    pub(crate) fn load() -> Result<Graph> {
        Graph::from_metadata(&cargo_metadata(&[])?)
    }

    fn from_metadata(meta: &Value) -> Result<Graph> {
        let mut names = BTreeMap::new();
        for pkg in meta["packages"].as_array().context("metadata without packages")? {
            let id = pkg["id"].as_str().context("package without id")?;
            let name = pkg["name"].as_str().context("package without name")?;
            names.insert(id.to_owned(), name.to_owned());
        }
        let mut graph = Graph::default();
        for id in meta["workspace_members"].as_array().context("metadata without members")? {
            let id = id.as_str().context("member id")?;
            graph.members.insert(names[id].clone());
        }
        for node in meta["resolve"]["nodes"].as_array().context("metadata without resolve")? {
            let from = &names[node["id"].as_str().context("node id")?];
            let entry = graph.deps.entry(from.clone()).or_default();
            for dep in node["deps"].as_array().into_iter().flatten() {
                let normal = dep["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|k| k["kind"].is_null() || k["kind"].as_str() == Some("build"));
                if normal {
                    entry.insert(names[dep["pkg"].as_str().context("dep pkg")?].clone());
                }
            }
        }
        Ok(graph)
    }

    #[cfg(test)]
    fn edge(&mut self, from: &str, to: &str) {
        self.deps.entry(from.to_owned()).or_default().insert(to.to_owned());
    }

    /// Every package `from` reaches through normal dependencies.
    fn reachable(&self, from: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(p) = stack.pop() {
            for d in self.deps.get(&p).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        seen
    }
}

/// The layering rules: allowed edges between workspace crates, pure crates stay pure, `anyhow` stays out of libraries.
pub(crate) fn check_graph(graph: &Graph) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    for member in &graph.members {
        let Some(ok) = allowed.get(member.as_str()) else {
            problems.push(format!(
                "{member}: not in tidy's layering table; add it with its allowed dependencies"
            ));
            continue;
        };
        for dep in graph.deps.get(member).into_iter().flatten() {
            if graph.members.contains(dep) && !ok.contains(&dep.as_str()) {
                problems
                    .push(format!("{member} -> {dep}: this dependency breaks the layering (decision 0006)"));
            }
            if dep == "anyhow" && !ANYHOW_USERS.contains(&member.as_str()) {
                problems.push(format!("{member} -> anyhow: libraries use typed errors (thiserror)"));
            }
        }
        if PURE.contains(&member.as_str()) {
            let reach = graph.reachable(member);
            for bad in FORBIDDEN_IN_PURE {
                if reach.contains(*bad) {
                    problems.push(format!(
                        "{member} reaches {bad}: PURE crates use no IO, threads, clocks or OS randomness"
                    ));
                }
            }
        } else if THREAD_FREE.contains(&member.as_str()) {
            let reach = graph.reachable(member);
            for bad in FORBIDDEN_IN_PURE {
                if reach.contains(*bad) {
                    problems.push(format!(
                        "{member} reaches {bad}: thread-free crates use no threads, channels, clocks or OS randomness"
                    ));
                }
            }
        }
    }
    problems
}

/// `cargo metadata --format-version 1` of the workspace, with `extra` flags, parsed.
pub(crate) fn cargo_metadata(extra: &[&str]) -> Result<Value> {
    let out = cargo()
        .args(["metadata", "--format-version", "1"])
        .args(extra)
        .current_dir(project_root())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).context("parsing cargo metadata")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rust_file_starts_with_a_doc_line() {
        let problems = check_headers(&project_root()).unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn no_file_cites_a_document_outside_the_repository() {
        let problems = check_citations(&project_root()).unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn a_citation_of_an_outside_document_is_caught() {
        let [design, shared] = outside_documents();
        let text = format!("# Title\nAs {design} says.\nSee {shared}/notes and {design}.\nFine.\n");
        let problems = citations("docs/X.md", &text);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].starts_with(&format!("docs/X.md:2: cites `{design}`")), "{problems:#?}");
        assert!(problems.iter().any(|p| p.starts_with(&format!("docs/X.md:3: cites `{shared}`"))));
        assert!(citations("docs/X.md", "See ARCHITECTURE.md and docs/decisions/.\n").is_empty());
    }

    #[test]
    fn the_workspace_respects_its_layering() {
        let graph = Graph::load().unwrap();
        assert!(graph.members.contains("synod-wire"));
        let problems = check_graph(&graph);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    fn clean() -> Graph {
        let mut g = Graph::default();
        for m in ["synod-wire", "synod-paxos", "synod-log"] {
            g.members.insert(m.to_owned());
        }
        g.edge("synod-paxos", "synod-wire");
        g.edge("synod-log", "synod-wire");
        g.edge("synod-wire", "rkyv");
        g
    }

    #[test]
    fn a_clean_graph_passes() {
        assert_eq!(check_graph(&clean()), Vec::<String>::new());
    }

    #[test]
    fn an_upward_edge_is_caught() {
        let mut g = clean();
        g.edge("synod-paxos", "synod-log");
        assert_eq!(
            check_graph(&g),
            vec!["synod-paxos -> synod-log: this dependency breaks the layering (decision 0006)"]
        );
    }

    #[test]
    fn a_pure_crate_reaching_tokio_indirectly_is_caught() {
        let mut g = clean();
        g.edge("rkyv", "some-helper");
        g.edge("some-helper", "tokio");
        let problems = check_graph(&g);
        assert!(problems.iter().any(|p| p.starts_with("synod-wire reaches tokio")), "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("synod-paxos reaches tokio")), "{problems:?}");
        assert!(!problems.iter().any(|p| p.starts_with("synod-log")), "synod-log is not pure: {problems:?}");
    }

    #[test]
    fn a_thread_free_crate_reaching_parking_lot_is_caught() {
        let mut g = clean();
        g.members.insert("synod-wal".to_owned());
        g.edge("synod-log", "synod-wal");
        g.edge("synod-wal", "parking_lot");
        let problems = check_graph(&g);
        assert!(problems.iter().any(|p| p.starts_with("synod-wal reaches parking_lot")), "{problems:?}");
        assert!(!problems.iter().any(|p| p.starts_with("synod-log reaches")), "synod-log may: {problems:?}");
    }

    #[test]
    fn an_unknown_crate_must_join_the_table() {
        let mut g = clean();
        g.members.insert("synod-new".to_owned());
        assert!(check_graph(&g)[0].contains("not in tidy's layering table"));
    }

    #[test]
    fn anyhow_in_a_library_is_caught() {
        let mut g = clean();
        g.edge("synod-log", "anyhow");
        assert!(check_graph(&g).iter().any(|p| p.contains("synod-log -> anyhow")));
    }
}
