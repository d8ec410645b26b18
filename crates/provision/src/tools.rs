//! External tools the test setup shells out to, with errors that say what
//! to install instead of a bare "No such file or directory".

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha512};

/// Finds `name` on `PATH`, or fails with a message that says why it is
/// needed and how to get it. `why` completes "`name` is required ...", e.g.
/// "to install the TypeScript client test dependencies".
pub fn require_tool(name: &str, why: &str) -> Result<PathBuf> {
    find_on_path(name, std::env::var_os("PATH").as_deref()).with_context(|| {
        format!(
            "`{name}` is required {why} but was not found on PATH; {}",
            install_hint(name)
        )
    })
}

fn install_hint(name: &str) -> &'static str {
    match name {
        "npm" | "npx" => "install Node.js 20+ with npm",
        "node" => "install Node.js 20+",
        _ => "install it or add its directory to PATH",
    }
}

fn find_on_path(name: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    std::env::split_paths(path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Installs `dir`'s npm dependencies with `npm ci --no-audit --no-fund`,
/// unless `node_modules/.package-lock.json` (which npm writes last) is at
/// least as new as `package-lock.json`. npm's output goes to stderr so it
/// shows up in CI logs; concurrent callers for the same `dir` are serialised
/// because two `npm ci` runs in one tree would wreck each other.
pub fn npm_ci(dir: &Path) -> Result<()> {
    let npm = require_tool(
        "npm",
        &format!("to install the npm dependencies in {}", dir.display()),
    )?;
    let lockfile = dir.join("package-lock.json");
    if !lockfile.is_file() {
        bail!(
            "{} is missing; `npm ci` needs a committed lock file",
            lockfile.display()
        );
    }
    if npm_up_to_date(dir)? {
        return Ok(());
    }

    let _guard = lock_for(dir)?;
    if npm_up_to_date(dir)? {
        return Ok(());
    }
    eprintln!(
        "provision: running `npm ci --no-audit --no-fund` in {}",
        dir.display()
    );
    let stderr = std::io::stderr();
    let stdout_to_stderr = std::os::fd::AsFd::as_fd(&stderr)
        .try_clone_to_owned()
        .context("duplicating stderr for npm's output")?;
    let status = Command::new(&npm)
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout_to_stderr))
        .status()
        .with_context(|| format!("running {} ci in {}", npm.display(), dir.display()))?;
    if !status.success() {
        bail!(
            "`npm ci --no-audit --no-fund` in {} failed with {status}",
            dir.display()
        );
    }
    Ok(())
}

/// True when npm's own marker is at least as new as the lock file.
fn npm_up_to_date(dir: &Path) -> Result<bool> {
    let mtime = |p: &Path| -> Result<Option<SystemTime>> {
        match fs::metadata(p) {
            Ok(m) => Ok(Some(m.modified()?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    };
    let lock = mtime(&dir.join("package-lock.json"))?;
    let marker = mtime(&dir.join("node_modules").join(".package-lock.json"))?;
    Ok(match (lock, marker) {
        (Some(lock), Some(marker)) => marker >= lock,
        _ => false,
    })
}

/// Cross-process lock for `npm ci` in `dir`, kept in the cache so the
/// project tree gets no stray files (node_modules itself is wiped by npm).
fn lock_for(dir: &Path) -> Result<fs::File> {
    let canonical = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let digest = Sha512::digest(canonical.as_os_str().as_encoded_bytes());
    let id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let locks = crate::cache_dir().join(".locks");
    fs::create_dir_all(&locks).with_context(|| format!("creating {}", locks.display()))?;
    let path = locks.join(format!("npm-ci-{id}.lock"));
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TempDir;
    use std::time::Duration;

    #[test]
    fn finds_tools_on_path_and_explains_missing_ones() {
        let sh = require_tool("sh", "for this test").unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());

        let err = require_tool("npm-definitely-not-installed", "to install the test deps")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "`npm-definitely-not-installed` is required to install the test deps but was not found on PATH; \
             install it or add its directory to PATH"
        );
        let none = find_on_path("npm", Some(std::ffi::OsStr::new("/nonexistent-dir")));
        assert_eq!(none, None);
        assert_eq!(install_hint("npm"), "install Node.js 20+ with npm");
    }

    #[test]
    fn skips_non_executable_files() {
        let dir = TempDir::new();
        let tool = dir.path().join("tool");
        fs::write(&tool, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find_on_path("tool", Some(dir.path().as_os_str())), None);
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            find_on_path("tool", Some(dir.path().as_os_str())),
            Some(tool)
        );
    }

    #[test]
    fn npm_marker_staleness() {
        let dir = TempDir::new();
        let lock = dir.path().join("package-lock.json");
        fs::write(&lock, "{}").unwrap();
        assert!(!npm_up_to_date(dir.path()).unwrap(), "no node_modules yet");

        fs::create_dir(dir.path().join("node_modules")).unwrap();
        let marker = dir.path().join("node_modules/.package-lock.json");
        fs::write(&marker, "{}").unwrap();
        let t0 = SystemTime::now() - Duration::from_secs(100);
        let set = |p: &Path, t| {
            fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(t)
                .unwrap()
        };
        set(&lock, t0);
        set(&marker, t0 + Duration::from_secs(10));
        assert!(
            npm_up_to_date(dir.path()).unwrap(),
            "marker newer than lock"
        );
        set(&lock, t0 + Duration::from_secs(20));
        assert!(
            !npm_up_to_date(dir.path()).unwrap(),
            "lock edited after install"
        );
    }
}
