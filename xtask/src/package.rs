//! `cargo xtask package`: every crate meant for users packs and builds on its own, as crates.io would see it.
//!
//! `cargo package --workspace` packs each publishable crate into a `.crate` file and builds
//! it from that file alone, its synod dependencies resolved from the other packed crates (a
//! local registry overlay), not from the workspace. A crate whose package misses a file it
//! needs, or that depends on a workspace crate without a version, fails here. The crates
//! marked `publish = false` (each says why in its Cargo.toml) are left out.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{cargo, project_root, run_cmd, target_dir};

/// The largest `.crate` file allowed: a bigger one carries fixtures or data it should not.
const MAX_CRATE_BYTES: u64 = 2 * 1024 * 1024;

/// Files cargo writes into every package itself; they have no source in the crate directory.
const GENERATED: &[&str] = &[".cargo_vcs_info.json", "Cargo.toml", "Cargo.toml.orig", "Cargo.lock"];

/// Packs every published crate with `cargo package --workspace --locked`, building each from
/// its package alone, then lists each `.crate` with its size, and fails if one is larger than
/// 2 MiB or packs a file from outside its own directory.
#[derive(Debug, clap::Parser)]
#[command(name = "cargo xtask package", bin_name = "cargo xtask package")]
pub(crate) struct Args {}

/// One workspace crate, as `cargo metadata` describes it.
#[derive(Debug)]
struct Crate {
    name: String,
    version: String,
    dir: PathBuf,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let Args {} = crate::parse_args("package", args)?;
    let began = Instant::now();
    let (published, internal) = workspace_crates()?;
    // A target directory of its own: the packed crates' builds (dependencies at the default
    // opt-level, without the workspace's profiles) share nothing with the workspace's.
    let dir = target_dir().join("package-check");
    forget_earlier_packages(&dir, &published)?;
    let mut cmd = cargo();
    // --allow-dirty: what is checked is the packages' content, also before a commit.
    cmd.args(["package", "--workspace", "--locked", "--allow-dirty"]).env("CARGO_TARGET_DIR", &dir);
    for name in &internal {
        cmd.args(["--exclude", name]);
    }
    run_cmd(&mut cmd)?;
    let mut problems = Vec::new();
    eprintln!("{:<24} {:>10}  files", "package", "bytes");
    for krate in &published {
        let file = dir.join("package").join(format!("{}-{}.crate", krate.name, krate.version));
        let bytes = std::fs::metadata(&file).with_context(|| format!("no {}", file.display()))?.len();
        let files = packed_files(krate)?;
        eprintln!("{:<24} {bytes:>10}  {}", krate.name, files.len());
        if bytes > MAX_CRATE_BYTES {
            problems.push(format!("{}: {bytes} bytes, more than {MAX_CRATE_BYTES}", krate.name));
        }
        problems.extend(outside_files(krate, &files));
    }
    eprintln!(
        "package: {} crates packed and built alone, {} internal left out ({}), in {:.0?}",
        published.len(),
        internal.len(),
        internal.iter().cloned().collect::<Vec<_>>().join(", "),
        began.elapsed()
    );
    if problems.is_empty() {
        return Ok(());
    }
    for p in &problems {
        eprintln!("package: {p}");
    }
    bail!("{} packaging problem(s)", problems.len())
}

/// The workspace's publishable crates, and the names of those marked `publish = false`.
fn workspace_crates() -> Result<(Vec<Crate>, BTreeSet<String>)> {
    split_by_publish(&crate::tidy::cargo_metadata(&["--no-deps", "--locked"])?)
}

fn split_by_publish(meta: &Value) -> Result<(Vec<Crate>, BTreeSet<String>)> {
    let mut published = Vec::new();
    let mut internal = BTreeSet::new();
    for pkg in meta["packages"].as_array().context("metadata without packages")? {
        let name = pkg["name"].as_str().context("package without name")?.to_owned();
        // `publish = false` reads as an empty list of registries.
        if pkg["publish"].as_array().is_some_and(Vec::is_empty) {
            internal.insert(name);
            continue;
        }
        let manifest = PathBuf::from(pkg["manifest_path"].as_str().context("package without manifest")?);
        published.push(Crate {
            name,
            version: pkg["version"].as_str().context("package without version")?.to_owned(),
            dir: manifest.parent().context("manifest without directory")?.to_path_buf(),
        });
    }
    published.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((published, internal))
}

/// Forgets what an earlier run packed and built. Cargo takes a registry crate (the packed
/// synod crates are served from a local registry) to be immutable: it would reuse the
/// sources it unpacked and the libraries it built from an earlier, different package of the
/// same name and version, and so verify stale code.
fn forget_earlier_packages(dir: &Path, published: &[Crate]) -> Result<()> {
    let remove = |path: &Path| -> Result<()> {
        let result = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
        result.with_context(|| format!("removing {}", path.display()))
    };
    let package = dir.join("package");
    if package.exists() {
        remove(&package)?;
    }
    // Fingerprints of the packed crates' builds (no workspace build uses this directory).
    for profile in ["debug"] {
        let fingerprints = dir.join(profile).join(".fingerprint");
        for entry in std::fs::read_dir(&fingerprints).into_iter().flatten() {
            let path = entry?.path();
            if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("synod")) {
                remove(&path)?;
            }
        }
    }
    // Where cargo unpacked them: local registries' directories are named `-<hash>`,
    // crates.io's `index.crates.io-<hash>`.
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    let Some(cargo_home) = cargo_home else { return Ok(()) };
    for entry in std::fs::read_dir(cargo_home.join("registry").join("src")).into_iter().flatten() {
        let registry = entry?.path();
        if !registry.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('-')) {
            continue;
        }
        for krate in published {
            let unpacked = registry.join(format!("{}-{}", krate.name, krate.version));
            if unpacked.exists() {
                remove(&unpacked)?;
            }
        }
    }
    Ok(())
}

/// The files `krate`'s package holds, as `cargo package --list` names them.
fn packed_files(krate: &Crate) -> Result<Vec<String>> {
    let out = cargo()
        .args(["package", "--list", "--locked", "--allow-dirty", "-p", &krate.name])
        .current_dir(project_root())
        .output()
        .context("running cargo package --list")?;
    if !out.status.success() {
        bail!("cargo package --list -p {} failed: {}", krate.name, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect())
}

/// The packed files of `krate` that are not files of its own directory (a readme or a
/// license taken from `..` is copied into the package under a name of its own directory,
/// which this catches too, as no such file is there).
fn outside_files(krate: &Crate, files: &[String]) -> Vec<String> {
    files
        .iter()
        .filter(|f| !GENERATED.contains(&f.as_str()))
        .filter(|f| f.contains("..") || Path::new(f).is_absolute() || !krate.dir.join(f).is_file())
        .map(|f| format!("{}: packs {f}, which is not a file in {}", krate.name, krate.dir.display()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_false_crates_are_left_out() {
        let meta = serde_json::json!({ "packages": [
            { "name": "b", "version": "0.1.0", "publish": null, "manifest_path": "/w/b/Cargo.toml" },
            { "name": "x", "version": "0.1.0", "publish": [], "manifest_path": "/w/x/Cargo.toml" },
            { "name": "a", "version": "0.2.0", "publish": null, "manifest_path": "/w/a/Cargo.toml" },
        ]});
        let (published, internal) = split_by_publish(&meta).unwrap();
        let names: Vec<_> = published.iter().map(|c| (c.name.as_str(), c.version.as_str())).collect();
        assert_eq!(names, [("a", "0.2.0"), ("b", "0.1.0")]);
        assert_eq!(published[0].dir, Path::new("/w/a"));
        assert_eq!(internal.into_iter().collect::<Vec<_>>(), ["x"]);
    }

    #[test]
    fn a_file_from_outside_the_crate_is_caught() {
        let root = project_root();
        let krate = Crate { name: "xtask".into(), version: "0.1.0".into(), dir: root.join("xtask") };
        let files: Vec<String> =
            ["Cargo.toml", "Cargo.toml.orig", "src/main.rs", "README.md"].map(String::from).into();
        assert!(outside_files(&krate, &files).is_empty());
        let bad: Vec<String> = ["ARCHITECTURE.md", "../Cargo.lock", "/etc/passwd"].map(String::from).into();
        let problems = outside_files(&krate, &bad);
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
