//! Progress reporting: plain events, plus a printer that is readable in CI
//! logs (one line per step, no terminal control codes).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::Artifact;

/// What provisioning is doing, so callers can show it or assert on it (a
/// test can prove a warm call did no download by seeing only `Cached`).
#[derive(Debug, Clone)]
pub enum ProgressEvent {
    /// A download attempt began; `total_bytes` is the Content-Length if sent.
    Started {
        artifact: &'static Artifact,
        total_bytes: Option<u64>,
    },
    /// More bytes arrived (emitted about every 1% of the total, not per chunk).
    Advanced {
        artifact: &'static Artifact,
        downloaded: u64,
        total: Option<u64>,
    },
    /// A download attempt failed transiently and will be retried.
    Retrying {
        artifact: &'static Artifact,
        attempt: u32,
        error: String,
    },
    /// The downloaded bytes matched the pinned sha512.
    Verified { artifact: &'static Artifact },
    /// The artifact was extracted and is now installed; `path` is the exposed file.
    Extracted {
        artifact: &'static Artifact,
        path: PathBuf,
    },
    /// Already installed (stamp matched); nothing was downloaded.
    Cached { artifact: &'static Artifact },
}

/// A progress sink that ignores everything, for callers that want silence.
pub fn no_progress(_: ProgressEvent) {}

/// Downloads at least this large get percentage lines; smaller ones finish
/// too fast for progress to mean anything.
const BIG: u64 = 8 << 20;
/// Without a Content-Length, report every this many bytes instead.
const UNKNOWN_STEP: u64 = 16 << 20;

/// Ready-made printer for [`crate::provision`]: writes one line to stderr
/// per download start, per ~10% of big downloads, per retry and per install.
/// Cache hits stay silent so warm runs do not spam test logs.
pub fn stderr_progress(event: ProgressEvent) {
    // Last reported bucket per artifact; provisioning of one artifact is
    // serialised by its lock, so keying by name is enough.
    static LAST: Mutex<Option<HashMap<&'static str, u64>>> = Mutex::new(None);
    let mut guard = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let last = guard.get_or_insert_with(HashMap::new);
    match event {
        ProgressEvent::Started {
            artifact,
            total_bytes,
        } => {
            last.insert(artifact.name(), 0);
            match total_bytes {
                Some(t) => eprintln!("provision: downloading {artifact} ({})", mb(t)),
                None => eprintln!("provision: downloading {artifact} (size unknown)"),
            }
        }
        ProgressEvent::Advanced {
            artifact,
            downloaded,
            total,
        } => {
            let bucket = match total {
                Some(t) if t >= BIG => downloaded * 10 / t,
                Some(_) => return,
                None => downloaded / UNKNOWN_STEP,
            };
            let prev = last.entry(artifact.name()).or_insert(0);
            if bucket > *prev {
                *prev = bucket;
                match total {
                    Some(t) => eprintln!(
                        "provision: {artifact}: {:>3}% ({} of {})",
                        downloaded * 100 / t,
                        mb(downloaded),
                        mb(t)
                    ),
                    None => eprintln!("provision: {artifact}: {}", mb(downloaded)),
                }
            }
        }
        ProgressEvent::Retrying {
            artifact,
            attempt,
            error,
        } => {
            eprintln!("provision: {artifact}: attempt {attempt} failed, retrying: {error}");
        }
        ProgressEvent::Verified { artifact } => {
            last.remove(artifact.name());
            eprintln!("provision: {artifact}: sha512 verified");
        }
        ProgressEvent::Extracted { artifact, path } => {
            eprintln!("provision: {artifact}: installed {}", path.display());
        }
        ProgressEvent::Cached { .. } => {}
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}
