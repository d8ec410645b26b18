//! Runs the official TypeScript client's tests (tests/ts) against the shared
//! engine + host, so they are part of the one test run.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn typescript_client_drives_the_agentos_actor() {
    let endpoint = testkit::endpoint();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/ts");
    assert!(
        dir.join("node_modules/rivetkit").exists(),
        "tests/ts/node_modules is missing: ./scripts/test installs it with npm ci"
    );
    let output = testkit::run_with_limit(
        Command::new("node")
            .arg("--test")
            .arg("--test-reporter=spec")
            .arg("agentos-client.test.mjs")
            .current_dir(&dir)
            .env("AGENTOS_TEST_ENDPOINT", &endpoint),
        Duration::from_secs(420),
    )
    .expect("run node --test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "TypeScript client tests failed:\n{stdout}\n{stderr}");
    // A run that executed nothing must not pass.
    assert!(stdout.contains("pass 4") && stdout.contains("fail 0"), "unexpected test count:\n{stdout}");
}
