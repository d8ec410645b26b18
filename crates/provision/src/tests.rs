//! Install-logic tests against tarballs built in memory; no network.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;

use super::*;
use crate::artifacts::Expose;
use crate::fetch::Fetch;
use crate::integrity::Integrity;

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("provision-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Serves fixed bytes instead of the registry and counts how often it is asked.
struct LocalFetch {
    bytes: Vec<u8>,
    calls: AtomicUsize,
    delay: Duration,
}

impl LocalFetch {
    fn new(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            calls: AtomicUsize::new(0),
            delay: Duration::ZERO,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Fetch for LocalFetch {
    async fn fetch(
        &self,
        artifact: &'static Artifact,
        dest: &Path,
        progress: &Progress<'_>,
    ) -> Result<Integrity> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let total = self.bytes.len() as u64;
        progress(ProgressEvent::Started {
            artifact,
            total_bytes: Some(total),
        });
        tokio::time::sleep(self.delay).await;
        fs::write(dest, &self.bytes)?;
        progress(ProgressEvent::Advanced {
            artifact,
            downloaded: total,
            total: Some(total),
        });
        let mut h = crate::integrity::Hasher::default();
        h.update(&self.bytes);
        Ok(h.finish())
    }
}

/// A gzipped npm-style tarball: `(path, mode, contents)` entries.
fn tarball(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (path, mode, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        header.set_cksum();
        builder.append_data(&mut header, path, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn artifact(name: &'static str, integrity: &[u8], expose: Expose) -> &'static Artifact {
    let integrity: &'static str = Box::leak(Integrity::of(integrity).to_string().into_boxed_str());
    Box::leak(Box::new(Artifact {
        component: Component::Engine,
        name,
        version: "1.0.0",
        url: "http://unused.invalid/",
        integrity,
        expose,
    }))
}

/// Records event kinds (with artifact names) for assertions.
#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl Events {
    fn sink(&self) -> impl Fn(ProgressEvent) + Send + Sync + '_ {
        move |e| {
            let s = match e {
                ProgressEvent::Started { .. } => "started",
                ProgressEvent::Advanced { .. } => "advanced",
                ProgressEvent::Retrying { .. } => "retrying",
                ProgressEvent::Verified { .. } => "verified",
                ProgressEvent::Extracted { .. } => "extracted",
                ProgressEvent::Cached { .. } => "cached",
            };
            self.0.lock().unwrap().push(s.to_owned());
        }
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn tmp_is_empty(cache: &Path) -> bool {
    fs::read_dir(cache.join(".tmp"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

#[tokio::test]
async fn installs_verified_tarball_then_serves_it_from_the_stamp() {
    let cache = TempDir::new();
    let tgz = tarball(&[
        ("package/README.md", 0o644, b"hi"),
        ("package/bin/tool", 0o644, b"#!/bin/sh\necho ok\n"),
    ]);
    let art = artifact("@test/tool", &tgz, Expose::Executable("package/bin/tool"));
    let fetch = LocalFetch::new(tgz);
    let events = Events::default();

    let path = install::ensure(cache.path(), art, &fetch, &events.sink())
        .await
        .unwrap();
    assert_eq!(path, cache.path().join("test_tool@1.0.0/package/bin/tool"));
    assert_eq!(fs::read(&path).unwrap(), b"#!/bin/sh\necho ok\n");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let stamp =
        fs::read_to_string(cache.path().join("test_tool@1.0.0").join(install::STAMP)).unwrap();
    assert!(stamp.contains(art.integrity), "{stamp}");
    assert_eq!(
        events.take(),
        ["started", "advanced", "verified", "extracted"]
    );
    assert!(tmp_is_empty(cache.path()), "work files left behind");

    // Second call: no fetch, only a Cached event, same path.
    let again = install::ensure(cache.path(), art, &fetch, &events.sink())
        .await
        .unwrap();
    assert_eq!(again, path);
    assert_eq!(fetch.calls(), 1);
    assert_eq!(events.take(), ["cached"]);
}

#[tokio::test]
async fn integrity_mismatch_is_reported_and_installs_nothing() {
    let cache = TempDir::new();
    let tgz = tarball(&[("package/bin/tool", 0o755, b"real")]);
    // Pinned to different bytes than the "registry" serves.
    let art = artifact(
        "@test/tampered",
        b"what was pinned",
        Expose::Executable("package/bin/tool"),
    );
    let fetch = LocalFetch::new(tgz.clone());

    let err = install::ensure(cache.path(), art, &fetch, &no_progress)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("@test/tampered@1.0.0"), "{err}");
    assert!(err.contains(art.integrity), "{err}");
    assert!(err.contains(&Integrity::of(&tgz).to_string()), "{err}");
    assert!(
        !cache.path().join("test_tampered@1.0.0").exists(),
        "partial install left"
    );
    assert!(tmp_is_empty(cache.path()), "work files left behind");
}

#[tokio::test]
async fn stale_or_broken_installs_are_replaced() {
    let cache = TempDir::new();
    let tgz = tarball(&[("package/dist/package.aospkg", 0o644, b"pkg")]);
    let art = artifact(
        "@test/pkg",
        &tgz,
        Expose::File("package/dist/package.aospkg"),
    );
    let fetch = LocalFetch::new(tgz);
    let dir = cache.path().join("test_pkg@1.0.0");

    // A stamp from another integrity (e.g. a re-pinned version) does not count.
    fs::create_dir_all(dir.join("package/dist")).unwrap();
    fs::write(dir.join("package/dist/package.aospkg"), b"old").unwrap();
    fs::write(
        dir.join(install::STAMP),
        "integrity sha512-old\npath package/dist/package.aospkg\n",
    )
    .unwrap();
    assert_eq!(install::installed(&dir, art), None);
    let path = install::ensure(cache.path(), art, &fetch, &no_progress)
        .await
        .unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"pkg");
    assert_eq!(install::installed(&dir, art), Some(path.clone()));

    // The exposed file deleted by hand: reinstalled, not trusted.
    fs::remove_file(&path).unwrap();
    assert_eq!(install::installed(&dir, art), None);
    install::ensure(cache.path(), art, &fetch, &no_progress)
        .await
        .unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"pkg");
    assert_eq!(fetch.calls(), 2);
    assert!(tmp_is_empty(cache.path()));
}

#[tokio::test]
async fn locates_a_named_binary_in_a_subdirectory() {
    let cache = TempDir::new();
    let tgz = tarball(&[
        ("package/package.json", 0o644, b"{}"),
        ("package/bin/linux/agentos-sidecar", 0o644, b"ELF"),
        (
            "package/docs/deep/er/agentos-sidecar",
            0o644,
            b"decoy, deeper",
        ),
    ]);
    let art = artifact(
        "@test/sidecar",
        &tgz,
        Expose::FindExecutable("agentos-sidecar"),
    );
    let fetch = LocalFetch::new(tgz);

    let path = install::ensure(cache.path(), art, &fetch, &no_progress)
        .await
        .unwrap();
    assert_eq!(
        path,
        cache
            .path()
            .join("test_sidecar@1.0.0/package/bin/linux/agentos-sidecar")
    );
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o755
    );
    // The located path is recorded, so the warm path does no searching.
    let again = install::ensure(cache.path(), art, &fetch, &no_progress)
        .await
        .unwrap();
    assert_eq!(again, path);
    assert_eq!(fetch.calls(), 1);
}

#[tokio::test]
async fn missing_exposed_file_is_an_error_naming_the_artifact() {
    let cache = TempDir::new();
    let tgz = tarball(&[("package/other", 0o644, b"x")]);
    let art = artifact(
        "@test/empty",
        &tgz,
        Expose::Executable("package/rivet-engine"),
    );
    let err = install::ensure(cache.path(), art, &LocalFetch::new(tgz), &no_progress)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("@test/empty@1.0.0") && err.contains("package/rivet-engine"),
        "{err}"
    );
    assert!(!cache.path().join("test_empty@1.0.0").exists());
    assert!(tmp_is_empty(cache.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_installs_download_once() {
    let cache = TempDir::new();
    let tgz = tarball(&[("package/bin/tool", 0o755, b"tool")]);
    let art = artifact("@test/race", &tgz, Expose::Executable("package/bin/tool"));
    let fetch = std::sync::Arc::new(LocalFetch {
        delay: Duration::from_millis(200),
        ..LocalFetch::new(tgz)
    });
    let cache_path = cache.path().to_owned();

    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (fetch, cache_path) = (fetch.clone(), cache_path.clone());
            tokio::spawn(async move {
                install::ensure(&cache_path, art, &*fetch, &no_progress)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut paths = Vec::new();
    for t in tasks {
        paths.push(t.await.unwrap());
    }
    assert!(paths.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(
        fetch.calls(),
        1,
        "each flock is per open file, so tasks exclude each other too"
    );
}

#[test]
fn cache_dir_precedence() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    };
    assert_eq!(
        cache_dir_from(env(&[
            ("AGENTOS_CACHE_DIR", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h")
        ])),
        PathBuf::from("/c")
    );
    assert_eq!(
        cache_dir_from(env(&[
            ("AGENTOS_CACHE_DIR", ""),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h")
        ])),
        PathBuf::from("/x/agentos-actor")
    );
    assert_eq!(
        cache_dir_from(env(&[("XDG_CACHE_HOME", "relative"), ("HOME", "/h")])),
        PathBuf::from("/h/.cache/agentos-actor")
    );
}

#[tokio::test]
async fn provision_maps_components_to_fields() {
    // Only the table lookup and field mapping: nothing is selected, so
    // nothing is fetched.
    let cache = TempDir::new();
    let fetch = LocalFetch::new(Vec::new());
    let got = provision_with(cache.path(), &[], &fetch, &no_progress)
        .await
        .unwrap();
    assert_eq!(got, Provisioned::default());
    assert_eq!(fetch.calls(), 0);
    assert_eq!(artifacts().len(), 13);
}

/// Compile-time check: callers can `tokio::spawn` provisioning.
#[allow(dead_code)]
fn provision_future_is_send() {
    fn is_send<T: Send>(_: T) {}
    is_send(provision(Path::new(""), &[], &no_progress));
}
