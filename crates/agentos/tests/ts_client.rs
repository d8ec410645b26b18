//! Runs the official TypeScript client's base suite (tests/ts) against the
//! shared engine + host, so it is part of the one test run. Each area's own
//! suite runs from that area's test file.

#[test]
fn typescript_client_drives_the_agentos_actor() {
    testkit::run_ts_suite("agentos-client.test.mjs", 4);
}
