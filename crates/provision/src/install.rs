//! Turning a verified tarball into a cache entry, atomically and once.
//!
//! Layout under the cache root:
//! - `<key>/` — a finished install (`<key>` = `<sanitized-name>@<version>`),
//!   containing `.provisioned`, the stamp;
//! - `.locks/<key>.lock` — flock'd while one process installs `<key>`;
//! - `.tmp/<key>.tgz`, `.tmp/<key>.staging`, `.tmp/<key>.old` — work files,
//!   only ever touched by the lock holder, so leftovers from a crashed process
//!   are simply wiped by the next one.
//!
//! A finished install only ever appears by renaming a fully extracted,
//! stamped staging dir into place, so readers never see a partial one.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, ErrorKind};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flate2::read::GzDecoder;

use crate::artifacts::Expose;
use crate::fetch::Fetch;
use crate::integrity;
use crate::{Artifact, Progress, ProgressEvent};

/// Name of the stamp file inside a finished install.
pub(crate) const STAMP: &str = ".provisioned";

/// Returns the exposed file of `artifact`, installing it first if the cache
/// has no valid install. A valid install costs two small reads, no network.
pub(crate) async fn ensure(
    cache: &Path,
    artifact: &'static Artifact,
    fetcher: &impl Fetch,
    progress: &Progress<'_>,
) -> Result<PathBuf> {
    let key = artifact.cache_key();
    let dest = cache.join(&key);
    if let Some(path) = installed(&dest, artifact) {
        progress(ProgressEvent::Cached { artifact });
        return Ok(path);
    }

    let locks = cache.join(".locks");
    let tmp = cache.join(".tmp");
    for dir in [&locks, &tmp] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let _lock = lock(&locks.join(format!("{key}.lock"))).await?;
    // Another process may have finished the install while we waited.
    if let Some(path) = installed(&dest, artifact) {
        progress(ProgressEvent::Cached { artifact });
        return Ok(path);
    }

    let work = Work {
        tarball: tmp.join(format!("{key}.tgz")),
        staging: tmp.join(format!("{key}.staging")),
        old: tmp.join(format!("{key}.old")),
    };
    work.clean()?;
    let result = install(artifact, &dest, &work, fetcher, progress).await;
    // Always leave nothing behind but a finished install (or nothing).
    let cleaned = work.clean();
    let path = result?;
    cleaned?;
    progress(ProgressEvent::Extracted {
        artifact,
        path: path.clone(),
    });
    Ok(path)
}

struct Work {
    tarball: PathBuf,
    staging: PathBuf,
    old: PathBuf,
}

impl Work {
    fn clean(&self) -> Result<()> {
        remove_if_present(&self.tarball)?;
        remove_if_present(&self.staging)?;
        remove_if_present(&self.old)
    }
}

async fn install(
    artifact: &'static Artifact,
    dest: &Path,
    work: &Work,
    fetcher: &impl Fetch,
    progress: &Progress<'_>,
) -> Result<PathBuf> {
    let actual = fetcher.fetch(artifact, &work.tarball, progress).await?;
    // Verify before a single byte of the archive is interpreted.
    integrity::verify(artifact, artifact.integrity, &actual)?;
    progress(ProgressEvent::Verified { artifact });

    let (tarball, staging) = (work.tarball.clone(), work.staging.clone());
    let rel = tokio::task::spawn_blocking(move || extract(artifact, &tarball, &staging))
        .await
        .context("extraction task panicked")??;

    // A previous install with a stale or broken stamp is moved aside first:
    // rename cannot replace a non-empty directory.
    if fs::symlink_metadata(dest).is_ok() {
        fs::rename(dest, &work.old)
            .with_context(|| format!("moving aside stale {}", dest.display()))?;
    }
    fs::rename(&work.staging, dest)
        .with_context(|| format!("renaming {} to {}", work.staging.display(), dest.display()))?;
    Ok(dest.join(rel))
}

/// Unpacks into `staging`, finds and fixes up the exposed file, and writes
/// the stamp last. Returns the exposed file's path relative to the install.
fn extract(artifact: &Artifact, tarball: &Path, staging: &Path) -> Result<PathBuf> {
    fs::create_dir_all(staging).with_context(|| format!("creating {}", staging.display()))?;
    let file = File::open(tarball).with_context(|| format!("opening {}", tarball.display()))?;
    let mut archive = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    // Plain rwx bits only (no setuid), never chown: the tarball is data.
    archive.set_preserve_permissions(false);
    archive.set_preserve_ownerships(false);
    // `unpack` refuses entries escaping the destination (`..`, absolute paths).
    archive
        .unpack(staging)
        .with_context(|| format!("extracting {artifact} from {}", tarball.display()))?;

    let rel = match artifact.expose {
        Expose::File(p) | Expose::Executable(p) => {
            let rel = PathBuf::from(p);
            if !staging.join(&rel).is_file() {
                bail!("{artifact} does not contain {p}");
            }
            rel
        }
        Expose::FindExecutable(name) => find_named(staging, name)?
            .with_context(|| format!("{artifact} contains no file named {name}"))?,
    };
    if artifact.expose.is_executable() {
        let path = staging.join(&rel);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod 755 {}", path.display()))?;
    }
    write_stamp(staging, artifact.integrity, &rel)?;
    Ok(rel)
}

/// Finds the regular file called `name` under `root`, preferring the
/// shallowest match (then the first in sorted order) so the choice is stable.
fn find_named(root: &Path, name: &str) -> Result<Option<PathBuf>> {
    let mut level = vec![PathBuf::new()];
    while !level.is_empty() {
        let mut next = Vec::new();
        let mut hits = Vec::new();
        for rel in level {
            let dir = root.join(&rel);
            for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
                let entry = entry?;
                let ty = entry.file_type()?;
                let child = rel.join(entry.file_name());
                if ty.is_dir() {
                    next.push(child);
                } else if ty.is_file() && entry.file_name() == name {
                    hits.push(child);
                }
            }
        }
        if !hits.is_empty() {
            hits.sort();
            return Ok(hits.into_iter().next());
        }
        level = next;
    }
    Ok(None)
}

/// The stamp records the integrity the install was made from and where the
/// exposed file is; both must still hold for the install to count.
fn write_stamp(dir: &Path, integrity: &str, rel: &Path) -> Result<()> {
    let rel = rel.to_str().context("exposed path is not UTF-8")?;
    let path = dir.join(STAMP);
    fs::write(&path, format!("integrity {integrity}\npath {rel}\n"))
        .with_context(|| format!("writing {}", path.display()))
}

/// The exposed file of a finished install of exactly this artifact, if any.
pub(crate) fn installed(dir: &Path, artifact: &Artifact) -> Option<PathBuf> {
    let stamp = fs::read_to_string(dir.join(STAMP)).ok()?;
    let mut integrity = None;
    let mut rel = None;
    for line in stamp.lines() {
        match line.split_once(' ') {
            Some(("integrity", v)) => integrity = Some(v),
            Some(("path", v)) => rel = Some(v),
            _ => {}
        }
    }
    if integrity? != artifact.integrity {
        return None;
    }
    let path = dir.join(rel?);
    // Someone may have deleted files by hand; treat that as not installed.
    path.is_file().then_some(path)
}

/// Takes an exclusive flock on `path`, waiting (off the async workers) if
/// another process or task holds it. Released when the file is dropped.
async fn lock(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || {
                file.lock()
                    .with_context(|| format!("locking {}", path.display()))?;
                Ok(file)
            })
            .await
            .context("lock task panicked")?
        }
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

fn remove_if_present(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    result.with_context(|| format!("removing {}", path.display()))
}
