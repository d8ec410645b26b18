//! The one networked test: really provisions the pinned engine into the
//! shared cache (so later tests and runs reuse it) and checks it runs.

use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;

use provision::{Component, ProgressEvent, cache_dir, provision, stderr_progress};

#[tokio::test]
async fn provisions_the_real_engine_and_reuses_it() {
    let cache = cache_dir();
    let got = provision(&cache, &[Component::Engine], &stderr_progress)
        .await
        .expect("provisioning the engine");
    let engine = got.engine.expect("engine was selected");
    assert!(got.sidecar.is_none() && got.pi_package.is_none() && got.claude_code_package.is_none() && got.command_packages.is_empty());

    let mode = std::fs::metadata(&engine)
        .expect("engine exists")
        .permissions()
        .mode();
    assert!(engine.is_file(), "{} is not a file", engine.display());
    assert_eq!(
        mode & 0o111,
        0o111,
        "{} is not executable (mode {mode:o})",
        engine.display()
    );

    let out = tokio::process::Command::new(&engine)
        .arg("--version")
        .output()
        .await
        .expect("running the engine");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "`{} --version` failed: {text}",
        engine.display()
    );
    assert!(text.contains("2.3.19"), "unexpected version output: {text}");

    // Warm call: the stamp is found, so the only event is Cached.
    let events = Mutex::new(Vec::new());
    let again = provision(&cache, &[Component::Engine], &|e| {
        events.lock().unwrap().push(e)
    })
    .await
    .expect("second provision");
    assert_eq!(again.engine.as_deref(), Some(engine.as_path()));
    let events = events.into_inner().unwrap();
    assert!(
        matches!(events.as_slice(), [ProgressEvent::Cached { .. }]),
        "warm provision should only report Cached, got {events:?}"
    );
}
