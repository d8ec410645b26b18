//! Reliability of the durable root (actor SQLite) under bad input, through
//! the filesystem actions and through guest processes: every bad path gets a
//! clear error (an `invalid_argument` naming the argument, or an exact errno
//! with the path), huge writes fail whole, concurrent writers never tear a
//! file, and `checkRootFilesystem` stays clean with earlier files intact.
//!
//! Tests hold to the observable contract, not to which layer serves an
//! action (the VM or the actor's SQLite directly): a path with `.`, `..` or
//! `//` may be refused as not normalized or resolved as POSIX does, but
//! never touch anything else.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rivetkit_client::GetOrCreateOptions;
use serde_json::{Value, json};
use testkit::{ActionError, Gateway, bytes_of, uint8array, unique_key};

const ACTOR: &str = "agentOS";
/// Bound of one action (an `exec` of a guest script included).
const ACTION_LIMIT: Duration = Duration::from_secs(90);
/// The host's incoming message limit (`abi_host::serve` default).
const MESSAGE_LIMIT: usize = 32 << 20;

/// A durable-root actor on a fresh key.
struct Actor {
    key: String,
    gateway: Gateway,
}

impl Actor {
    fn new(prefix: &str) -> Actor {
        let key = unique_key(prefix);
        let gateway = Gateway::new(ACTOR, &key).expect("gateway");
        Actor { key, gateway }
    }

    async fn call(&self, action: &str, args: Vec<Value>) -> Result<Value, ActionError> {
        match tokio::time::timeout(ACTION_LIMIT, self.gateway.action(action, args)).await {
            Ok(result) => result,
            Err(_) => panic!("{}: `{action}` did not answer within {ACTION_LIMIT:?}", self.key),
        }
    }

    async fn ok(&self, action: &str, args: Vec<Value>) -> Value {
        let shown = short(&format!("{args:?}"));
        self.call(action, args).await.unwrap_or_else(|e| panic!("{action} {shown}: {e:?}"))
    }

    async fn write(&self, path: &str, content: &[u8]) {
        self.ok("writeFile", vec![json!(path), uint8array(content)]).await;
    }

    async fn read(&self, path: &str) -> Vec<u8> {
        bytes_of(&self.ok("readFile", vec![json!(path)]).await)
    }

    async fn exists(&self, path: &str) -> bool {
        self.ok("exists", vec![json!(path)]).await.as_bool().expect("exists returns a boolean")
    }

    async fn names(&self, dir: &str) -> BTreeSet<String> {
        let names = self.ok("readdir", vec![json!(dir)]).await;
        names.as_array().expect("readdir returns an array").iter().map(|n| n.as_str().unwrap().to_owned()).collect()
    }

    async fn exec(&self, script: &str) -> Value {
        let out = self.ok("exec", vec![json!(script)]).await;
        assert_eq!(out["exitCode"], json!(0), "exec {script:?}: {out}");
        out
    }

    async fn assert_clean(&self, after: &str) {
        let report = self.ok("checkRootFilesystem", vec![]).await;
        assert_eq!(report["clean"], json!(true), "durable root not clean after {after}: {report}");
        assert_eq!(report["problems"], json!([]), "after {after}: {report}");
    }
}

/// `text`, cut to a readable length for failure messages.
fn short(text: &str) -> String {
    if text.chars().count() <= 300 {
        return text.to_owned();
    }
    format!("{}...({} bytes)", text.chars().take(300).collect::<String>(), text.len())
}

/// `err` is a clear failure of an operation on `path`: an `invalid_argument`
/// naming `argument`, or one of the errno codes `errnos` with `path` in the
/// message or the metadata.
fn assert_clear(err: &ActionError, what: &str, argument: &str, path: &str, errnos: &[&str]) {
    assert_eq!(err.group, "user", "{what}: {err:?}");
    if err.code == "invalid_argument" {
        let named = err.metadata.as_ref().and_then(|m| m["argument"].as_str()).unwrap_or_default();
        assert!(
            named == argument || named.starts_with(&format!("{argument}.")),
            "{what}: invalid_argument must name `{argument}`: {err:?}"
        );
        assert!(err.message.contains(&format!("`{argument}`")), "{what}: message must name `{argument}`: {err:?}");
        return;
    }
    assert!(errnos.contains(&err.code.as_str()), "{what}: expected one of {errnos:?} or invalid_argument, got {err:?}");
    let in_metadata = err.metadata.as_ref().is_some_and(|m| m["path"] == json!(path) || m["to"] == json!(path));
    assert!(err.message.contains(path) || in_metadata, "{what}: the error must name {path:?}: {err:?}");
}

/// The action must fail clearly (see [`assert_clear`]); success is a bug.
async fn must_fail(actor: &Actor, action: &str, args: Vec<Value>, argument: &str, path: &str, errnos: &[&str]) {
    let what = format!("{action} {}", short(&format!("{args:?}")));
    match actor.call(action, args).await {
        Ok(value) => panic!("{what}: must fail, returned {}", short(&value.to_string())),
        Err(err) => assert_clear(&err, &what, argument, path, errnos),
    }
}

/// The action either succeeds (then returns `Some(value)`) or is refused as
/// an `invalid_argument` naming `argument` (then `None`): how a path with
/// `.`, `..` or `//` is treated.
async fn resolved_or_refused(actor: &Actor, action: &str, args: Vec<Value>, argument: &str) -> Option<Value> {
    let what = format!("{action} {args:?}");
    match actor.call(action, args).await {
        Ok(value) => Some(value),
        Err(err) => {
            assert_eq!(err.code, "invalid_argument", "{what}: {err:?}");
            assert_clear(&err, &what, argument, "", &[]);
            None
        }
    }
}

#[tokio::test]
async fn bad_paths_through_actions_fail_clearly_and_change_nothing() {
    let actor = Actor::new("bad-paths");
    dot_dot_and_empty_components_resolve_like_posix_or_are_refused(&actor).await;
    relative_and_empty_paths_are_invalid_arguments(&actor).await;
    overlong_names_and_paths_fail_with_enametoolong(&actor).await;
    errno_errors_are_exact_and_name_the_path(&actor).await;
}

async fn dot_dot_and_empty_components_resolve_like_posix_or_are_refused(actor: &Actor) {
    actor.ok("mkdir", vec![json!("/workspace/base/sub")]).await;
    actor.write("/workspace/base/a.txt", b"original").await;

    // Reads of the same file through unusual spellings.
    for path in [
        "/workspace/base/../base/a.txt",
        "/workspace/./base/a.txt",
        "//workspace//base///a.txt",
        "/../../workspace/base/a.txt",
        "/workspace/base/sub/../a.txt",
    ] {
        if let Some(value) = resolved_or_refused(actor, "readFile", vec![json!(path)], "path").await {
            assert_eq!(bytes_of(&value), b"original", "readFile {path}");
        }
        if let Some(value) = resolved_or_refused(actor, "stat", vec![json!(path)], "path").await {
            assert_eq!(value["size"], json!(8), "stat {path}: {value}");
        }
        if let Some(value) = resolved_or_refused(actor, "exists", vec![json!(path)], "path").await {
            assert_eq!(value, json!(true), "exists {path}");
        }
    }
    for path in ["/workspace/base/./sub/..", "//workspace/base//", "/workspace/base/."] {
        if let Some(value) = resolved_or_refused(actor, "readdir", vec![json!(path)], "path").await {
            let names: BTreeSet<&str> = value.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            assert_eq!(names, BTreeSet::from(["a.txt", "sub"]), "readdir {path}");
        }
    }

    // Writes through `..` land where POSIX says, or nowhere.
    if resolved_or_refused(actor, "writeFile", vec![json!("/workspace/base/sub/../w1.txt"), json!("w1")], "path")
        .await
        .is_some()
    {
        assert_eq!(actor.read("/workspace/base/w1.txt").await, b"w1");
    }
    if resolved_or_refused(actor, "mkdir", vec![json!("/workspace/base/m1/./m2/../m3")], "path").await.is_some() {
        let stat = actor.ok("stat", vec![json!("/workspace/base/m1/m3")]).await;
        assert_eq!(stat["isDirectory"], json!(true), "{stat}");
    }
    actor.write("/workspace/base/mv-src.txt", b"moving").await;
    if resolved_or_refused(
        actor,
        "move",
        vec![json!("/workspace/base/sub/../mv-src.txt"), json!("/workspace/base/sub/./moved.txt")],
        "from",
    )
    .await
    .is_some()
    {
        assert_eq!(actor.read("/workspace/base/sub/moved.txt").await, b"moving");
        assert!(!actor.exists("/workspace/base/mv-src.txt").await);
    }

    // Trailing slashes and `.`/`..` as the last component never act on a
    // file, and never remove the directory they name.
    let dir_errnos = ["ENOTDIR", "EISDIR", "EINVAL", "ENOENT", "EEXIST", "EBUSY", "ENOTEMPTY", "EPERM"];
    let cases: Vec<(&str, Vec<Value>, &str, &str)> = vec![
        ("readFile", vec![json!("/workspace/base/a.txt/")], "path", "/workspace/base/a.txt/"),
        ("readFile", vec![json!("/workspace/base/a.txt/..")], "path", "/workspace/base/a.txt/.."),
        ("readFile", vec![json!("/workspace/base/sub/")], "path", "/workspace/base/sub/"),
        ("stat", vec![json!("/workspace/base/a.txt/")], "path", "/workspace/base/a.txt/"),
        ("writeFile", vec![json!("/workspace/base/a.txt/"), json!("x")], "path", "/workspace/base/a.txt/"),
        ("writeFile", vec![json!("/workspace/base/new/"), json!("x")], "path", "/workspace/base/new/"),
        ("writeFile", vec![json!("/workspace/base/sub/."), json!("x")], "path", "/workspace/base/sub/."),
        ("deleteFile", vec![json!("/workspace/base/sub/.")], "path", "/workspace/base/sub/."),
        ("deleteFile", vec![json!("/workspace/base/sub/..")], "path", "/workspace/base/sub/.."),
        ("deleteFile", vec![json!("/workspace/base/a.txt/")], "path", "/workspace/base/a.txt/"),
        ("move", vec![json!("/workspace/base/sub/.."), json!("/workspace/elsewhere")], "from", "/workspace/base/sub/.."),
        ("move", vec![json!("/workspace/base/a.txt/"), json!("/workspace/base/b.txt")], "from", "/workspace/base/a.txt/"),
    ];
    for (action, args, argument, path) in cases {
        must_fail(actor, action, args, argument, path, &dir_errnos).await;
    }
    // `exists` of a file with a trailing slash is false (POSIX: ENOTDIR).
    if let Some(value) = resolved_or_refused(actor, "exists", vec![json!("/workspace/base/a.txt/")], "path").await {
        assert_eq!(value, json!(false));
    }

    // Nothing else changed: no entry named `.`, `..` or ``, nothing lost.
    assert_eq!(actor.read("/workspace/base/a.txt").await, b"original");
    assert!(actor.exists("/workspace/base/sub").await);
    assert!(!actor.exists("/workspace/base/new").await);
    assert!(!actor.exists("/workspace/elsewhere").await);
    let names = actor.names("/workspace/base").await;
    let allowed = BTreeSet::from(["a.txt", "sub", "w1.txt", "m1", "mv-src.txt"].map(String::from));
    assert!(names.is_subset(&allowed), "unexpected entries in /workspace/base: {names:?}");
    let listing = actor.exec("find /workspace | sort").await;
    let listing = listing["stdout"].as_str().unwrap();
    assert!(!listing.lines().any(|l| l.ends_with("/.") || l.ends_with("/..") || l.contains("//")), "{listing}");
    actor.assert_clean("paths with . and ..").await;
}

async fn relative_and_empty_paths_are_invalid_arguments(actor: &Actor) {
    actor.ok("mkdir", vec![json!("/workspace/rel")]).await;
    actor.write("/workspace/rel/keep.txt", b"keep").await;
    let relative = "workspace/rel/keep.txt";
    let cases: Vec<(&str, Vec<Value>, &str)> = vec![
        ("readFile", vec![json!(relative)], "path"),
        ("writeFile", vec![json!(relative), json!("x")], "path"),
        ("mkdir", vec![json!("workspace/rel/newdir")], "path"),
        ("readdir", vec![json!("workspace/rel")], "path"),
        ("readdirEntries", vec![json!("workspace/rel")], "path"),
        ("stat", vec![json!(relative)], "path"),
        ("exists", vec![json!(relative)], "path"),
        ("deleteFile", vec![json!(relative)], "path"),
        ("move", vec![json!(relative), json!("/workspace/rel/moved.txt")], "from"),
        ("move", vec![json!("/workspace/rel/keep.txt"), json!("moved.txt")], "to"),
        ("readFile", vec![json!("./keep.txt")], "path"),
        ("readFile", vec![json!("../workspace/rel/keep.txt")], "path"),
    ];
    for (action, args, argument) in cases {
        let what = format!("{action} {args:?}");
        let err = actor.call(action, args).await.expect_err(&what);
        assert_eq!(err.code, "invalid_argument", "{what}: {err:?}");
        assert_clear(&err, &what, argument, "", &[]);
    }
    // The empty path names nothing.
    for (action, args) in [
        ("readFile", vec![json!("")]),
        ("writeFile", vec![json!(""), json!("x")]),
        ("mkdir", vec![json!("")]),
        ("deleteFile", vec![json!("")]),
        ("stat", vec![json!("")]),
    ] {
        must_fail(actor, action, args, "path", "", &["ENOENT"]).await;
    }
    // A NUL byte cannot be part of a name.
    let nul = "/workspace/rel/a\u{0}b";
    must_fail(actor, "writeFile", vec![json!(nul), json!("x")], "path", nul, &["EINVAL"]).await;
    must_fail(actor, "mkdir", vec![json!(nul)], "path", nul, &["EINVAL"]).await;
    must_fail(actor, "readFile", vec![json!(nul)], "path", nul, &["EINVAL", "ENOENT"]).await;
    must_fail(actor, "move", vec![json!("/workspace/rel/keep.txt"), json!(nul)], "to", nul, &["EINVAL"]).await;
    assert_eq!(actor.read("/workspace/rel/keep.txt").await, b"keep");
    assert_eq!(actor.names("/workspace/rel").await, BTreeSet::from(["keep.txt".to_owned()]));
    actor.assert_clean("relative paths").await;
}

async fn errno_errors_are_exact_and_name_the_path(actor: &Actor) {
    actor.ok("mkdir", vec![json!("/workspace/errno")]).await;
    actor.ok("mkdir", vec![json!("/workspace/errno/d/e")]).await;
    actor.write("/workspace/errno/d/e/f.txt", b"deep").await;
    actor.write("/workspace/errno/a.txt", b"file a").await;
    actor.ok("mkdir", vec![json!("/workspace/errno/full/inner")]).await;

    let cases: Vec<(&str, Vec<Value>, &str, &str)> = vec![
        ("readFile", vec![json!("/workspace/errno/missing.txt")], "/workspace/errno/missing.txt", "ENOENT"),
        ("readFile", vec![json!("/workspace/errno/nodir/x")], "/workspace/errno/nodir/x", "ENOENT"),
        ("readFile", vec![json!("/workspace/errno/a.txt/x")], "/workspace/errno/a.txt/x", "ENOTDIR"),
        ("readFile", vec![json!("/workspace/errno/d")], "/workspace/errno/d", "EISDIR"),
        ("stat", vec![json!("/workspace/errno/missing.txt")], "/workspace/errno/missing.txt", "ENOENT"),
        ("stat", vec![json!("/workspace/errno/a.txt/x")], "/workspace/errno/a.txt/x", "ENOTDIR"),
        ("readdir", vec![json!("/workspace/errno/a.txt")], "/workspace/errno/a.txt", "ENOTDIR"),
        ("readdir", vec![json!("/workspace/errno/missing")], "/workspace/errno/missing", "ENOENT"),
        ("writeFile", vec![json!("/workspace/errno/d"), json!("x")], "/workspace/errno/d", "EISDIR"),
        ("writeFile", vec![json!("/workspace/errno/missing/x"), json!("x")], "/workspace/errno/missing/x", "ENOENT"),
        ("writeFile", vec![json!("/workspace/errno/a.txt/x"), json!("x")], "/workspace/errno/a.txt/x", "ENOTDIR"),
        ("mkdir", vec![json!("/workspace/errno/a.txt")], "/workspace/errno/a.txt", "EEXIST"),
        ("mkdir", vec![json!("/workspace/errno/d"), json!({ "recursive": false })], "/workspace/errno/d", "EEXIST"),
        ("mkdir", vec![json!("/workspace/errno/a.txt/sub")], "/workspace/errno/a.txt/sub", "ENOTDIR"),
        ("mkdir", vec![json!("/workspace/errno/no/x"), json!({ "recursive": false })], "/workspace/errno/no/x", "ENOENT"),
        ("deleteFile", vec![json!("/workspace/errno/d")], "/workspace/errno/d", "ENOTEMPTY"),
        ("deleteFile", vec![json!("/workspace/errno/missing")], "/workspace/errno/missing", "ENOENT"),
        ("deleteFile", vec![json!("/workspace/errno/a.txt/x")], "/workspace/errno/a.txt/x", "ENOTDIR"),
        ("move", vec![json!("/workspace/errno/missing"), json!("/workspace/errno/z")], "/workspace/errno/missing", "ENOENT"),
        ("move", vec![json!("/workspace/errno/d"), json!("/workspace/errno/d/e/inside")], "/workspace/errno/d", "EINVAL"),
        ("move", vec![json!("/workspace/errno/a.txt"), json!("/workspace/errno/d")], "/workspace/errno/a.txt", "EISDIR"),
        ("move", vec![json!("/workspace/errno/d"), json!("/workspace/errno/a.txt")], "/workspace/errno/d", "ENOTDIR"),
        ("move", vec![json!("/workspace/errno/d"), json!("/workspace/errno/full")], "/workspace/errno/d", "ENOTEMPTY"),
        ("move", vec![json!("/workspace/errno/a.txt"), json!("/workspace/errno/nodir/a.txt")], "/workspace/errno/a.txt", "ENOENT"),
    ];
    for (action, args, path, errno) in cases {
        let what = format!("{action} {args:?}");
        let err = actor.call(action, args).await.expect_err(&what);
        assert_eq!((err.group.as_str(), err.code.as_str()), ("user", errno), "{what}: {err:?}");
        assert!(err.message.contains(path), "{what}: message must name {path}: {err:?}");
        assert_eq!(err.metadata.as_ref().map(|m| m["path"].clone()), Some(json!(path)), "{what}: {err:?}");
    }
    assert_eq!(actor.read("/workspace/errno/a.txt").await, b"file a");
    assert_eq!(actor.read("/workspace/errno/d/e/f.txt").await, b"deep");
    assert_eq!(actor.names("/workspace/errno/full").await, BTreeSet::from(["inner".to_owned()]));
    assert_eq!(actor.ok("readdirEntries", vec![json!("/workspace/errno/a.txt")]).await, Value::Null);
    assert_eq!(actor.ok("readdirEntries", vec![json!("/workspace/errno/missing")]).await, Value::Null);
    actor.assert_clean("errno cases").await;
}

async fn overlong_names_and_paths_fail_with_enametoolong(actor: &Actor) {
    actor.ok("mkdir", vec![json!("/workspace/long")]).await;
    actor.write("/workspace/long/keep.txt", b"keep").await;

    // 255 bytes is the longest name, counted in bytes (é is two).
    let longest = format!("/workspace/long/{}", "n".repeat(255));
    actor.write(&longest, b"longest").await;
    assert_eq!(actor.read(&longest).await, b"longest");
    let wide = format!("/workspace/long/{}x", "é".repeat(127));
    actor.write(&wide, b"wide").await;
    assert_eq!(actor.read(&wide).await, b"wide");

    let name256 = format!("/workspace/long/{}", "b".repeat(256));
    let wide256 = format!("/workspace/long/{}", "é".repeat(128));
    let deep_ok: String = format!("/workspace/long{}", "/abcdefgh".repeat(440));
    let deep_long: String = format!("/workspace/long{}", "/abcdefgh".repeat(460));
    assert!(deep_ok.len() < 4000 && deep_long.len() > 4096);
    for path in [&name256, &wide256, &deep_long] {
        let long = ["ENAMETOOLONG"];
        must_fail(actor, "writeFile", vec![json!(path), json!("x")], "path", path, &long).await;
        must_fail(actor, "readFile", vec![json!(path)], "path", path, &long).await;
        must_fail(actor, "mkdir", vec![json!(path)], "path", path, &long).await;
        must_fail(actor, "stat", vec![json!(path)], "path", path, &long).await;
        must_fail(actor, "deleteFile", vec![json!(path)], "path", path, &long).await;
        must_fail(actor, "move", vec![json!("/workspace/long/keep.txt"), json!(path)], "to", path, &long).await;
        // Like Node's `existsSync`, a name that cannot exist does not.
        match actor.call("exists", vec![json!(path)]).await {
            Ok(value) => assert_eq!(value, json!(false), "exists {}", short(path)),
            Err(err) => assert_clear(&err, "exists", "path", path, &long),
        }
    }
    // A deep tree just under PATH_MAX works.
    actor.ok("mkdir", vec![json!(deep_ok)]).await;
    let deep_file = format!("{deep_ok}/f");
    actor.write(&deep_file, b"deep").await;
    assert_eq!(actor.read(&deep_file).await, b"deep");

    assert_eq!(actor.read("/workspace/long/keep.txt").await, b"keep");
    let names = actor.names("/workspace/long").await;
    assert_eq!(names.len(), 4, "only keep.txt, the two longest names and the deep tree: {names:?}");
    assert!(names.iter().all(|n| n.len() <= 255), "no over-long entry was created: {names:?}");
    actor.assert_clean("over-long names").await;
}

/// `deleteFile("/", {recursive: true})` is refused before anything is
/// removed (like `rm -r /` without `--no-preserve-root`).
#[tokio::test]
async fn recursive_delete_of_the_root_is_refused_before_removing_anything() {
    let actor = Actor::new("bad-rm-root");
    actor.write("/workspace/a.txt", b"file a").await;
    let before = actor.ok("checkRootFilesystem", vec![]).await;
    for options in [json!({ "recursive": true }), json!({ "recursive": false })] {
        let err = actor.call("deleteFile", vec![json!("/"), options.clone()]).await.expect_err("deleting / must fail");
        assert_eq!(err.group, "user", "{err:?}");
        assert!(["EBUSY", "EPERM", "EACCES", "EINVAL"].contains(&err.code.as_str()), "{options}: {err:?}");
        assert!(err.message.contains('/'), "{err:?}");
    }
    let after = actor.ok("checkRootFilesystem", vec![]).await;
    assert_eq!(after["inodes"], before["inodes"], "nothing was removed: before {before}, after {after}");
    assert_eq!(actor.read("/workspace/a.txt").await, b"file a");
    let echo = actor.exec("echo still here").await;
    assert_eq!(echo["stdout"], json!("still here\n"), "the VM still runs commands: {echo}");
    actor.assert_clean("deleteFile /").await;
}

/// A Node guest's bad paths: each fails with an error whose message carries
/// the exact errno (the sidecar reports durable-root errors other than
/// ENOENT/EEXIST/EACCES as EIO with the real code at the head of the
/// message), and nothing else changes.
const GUEST_SCRIPT: &str = r#"
const fs = require("fs");
const W = "/workspace/g";
fs.mkdirSync(W + "/s", { recursive: true });
fs.writeFileSync(W + "/keep.txt", "keep");
const out = {};
function attempt(label, f) {
  try { f(); out[label] = "ok"; } catch (e) { out[label] = String(e.code) + " | " + e.message; }
}
attempt("name255", () => fs.writeFileSync(W + "/" + "a".repeat(255), "x"));
attempt("name256", () => fs.writeFileSync(W + "/" + "b".repeat(256), "x"));
attempt("mkdir300", () => fs.mkdirSync(W + "/" + "c".repeat(300)));
attempt("rename300", () => fs.renameSync(W + "/keep.txt", W + "/" + "d".repeat(300)));
attempt("path5000", () => fs.writeFileSync(W + "/abcdefgh".repeat(520), "x"));
attempt("notdir", () => fs.writeFileSync(W + "/keep.txt/x", "x"));
attempt("isdir", () => fs.writeFileSync(W + "/s", "x"));
attempt("mkdirExists", () => fs.mkdirSync(W + "/s"));
attempt("intoSelf", () => fs.renameSync(W + "/s", W + "/s/t"));
attempt("unlinkDir", () => fs.unlinkSync(W + "/s"));
attempt("rmdirFull", () => fs.rmdirSync(W));
attempt("readMissing", () => fs.readFileSync(W + "/missing"));
attempt("linkExists", () => fs.linkSync(W + "/keep.txt", W + "/keep.txt"));
attempt("symlinkExists", () => fs.symlinkSync("x", W + "/keep.txt"));
out.names = fs.readdirSync(W).sort();
out.keep = fs.readFileSync(W + "/keep.txt", "utf8");
console.log(JSON.stringify(out));
"#;

#[tokio::test]
async fn bad_paths_from_guest_processes_fail_clearly_and_corrupt_nothing() {
    let actor = Actor::new("bad-guest");
    guest_bad_paths_fail_with_the_errno_and_corrupt_nothing(&actor).await;
    invalid_utf8_names_from_a_guest_fail_or_stay_consistent(&actor).await;
}

async fn guest_bad_paths_fail_with_the_errno_and_corrupt_nothing(actor: &Actor) {
    actor.write("/tmp/bad.js", GUEST_SCRIPT.as_bytes()).await;
    let out = actor.exec("node /tmp/bad.js").await;
    let stdout = out["stdout"].as_str().unwrap();
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let failed_with = |label: &str, errno: &str| {
        let text = report[label].as_str().unwrap_or_default();
        assert!(text != "ok" && text.contains(errno), "guest {label}: expected a failure naming {errno}, got {text:?}");
    };
    assert_eq!(report["name255"], json!("ok"), "{report}");
    for label in ["name256", "mkdir300", "rename300", "path5000"] {
        failed_with(label, "ENAMETOOLONG");
    }
    // A file used as a directory: ENOTDIR (the sidecar 0.2.21 checks write
    // permission on the "directory" first and says EACCES, on both roots).
    let notdir = report["notdir"].as_str().unwrap_or_default();
    assert!(notdir.contains("ENOTDIR") || notdir.contains("EACCES"), "{notdir:?}");
    failed_with("isdir", "EISDIR");
    failed_with("mkdirExists", "EEXIST");
    failed_with("intoSelf", "EINVAL");
    failed_with("unlinkDir", "EISDIR");
    failed_with("readMissing", "ENOENT");
    failed_with("linkExists", "EEXIST");
    failed_with("symlinkExists", "EEXIST");
    // rmdir of a non-empty directory: ENOTEMPTY (the sidecar may check the
    // parent's write permission first: EACCES).
    let rmdir = report["rmdirFull"].as_str().unwrap_or_default();
    assert!(rmdir.contains("ENOTEMPTY") || rmdir.contains("EACCES"), "{rmdir:?}");

    let expected_names = json!(["a".repeat(255), "keep.txt", "s"]);
    assert_eq!(report["names"], expected_names, "{report}");
    assert_eq!(report["keep"], json!("keep"));
    assert_eq!(actor.read("/workspace/g/keep.txt").await, b"keep");
    let names = actor.names("/workspace/g").await;
    assert_eq!(names.len(), 3, "{names:?}");
    actor.assert_clean("guest bad paths").await;
}

/// Invalid UTF-8 names from a Node guest (Buffer paths): the sidecar hands
/// the durable root valid UTF-8 (invalid bytes replaced by U+FFFD), so such
/// a name either fails clearly or becomes a readable, listable entry; the
/// store stays consistent.
const UTF8_SCRIPT: &str = r#"
const fs = require("fs");
const W = "/workspace/u";
fs.mkdirSync(W, { recursive: true });
fs.writeFileSync(W + "/plain.txt", "plain");
const out = {};
function attempt(label, f) {
  try { f(); out[label] = "ok"; } catch (e) { out[label] = String(e.code) + " | " + e.message; }
}
const path = (tail) => Buffer.concat([Buffer.from(W + "/"), Buffer.from(tail)]);
attempt("file", () => fs.writeFileSync(path([0x62, 0xff, 0x61]), "bad-1"));
attempt("dir", () => fs.mkdirSync(path([0x64, 0xc3])));
attempt("nested", () => fs.writeFileSync(Buffer.concat([path([0x64, 0xc3]), Buffer.from("/inner.txt")]), "inner"));
attempt("rename", () => fs.renameSync(W + "/plain.txt", path([0x72, 0xfe, 0xfe])));
out.names = fs.readdirSync(W).map((n) => Buffer.from(n).toString("hex")).sort();
console.log(JSON.stringify(out));
"#;

async fn invalid_utf8_names_from_a_guest_fail_or_stay_consistent(actor: &Actor) {
    actor.write("/tmp/utf8.js", UTF8_SCRIPT.as_bytes()).await;
    let out = actor.exec("node /tmp/utf8.js").await;
    let report: Value = serde_json::from_str(out["stdout"].as_str().unwrap().trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    for label in ["file", "dir", "nested", "rename"] {
        let text = report[label].as_str().unwrap_or_default();
        assert!(text == "ok" || text.starts_with('E'), "guest {label}: neither done nor a clear error: {text:?}");
    }
    // Every name the guest lists is valid UTF-8 and reachable through the
    // actions with the content the guest wrote.
    let names = actor.names("/workspace/u").await;
    for name in &names {
        assert!(!name.is_empty() && !name.contains('/'), "{names:?}");
        let path = format!("/workspace/u/{name}");
        let stat = actor.ok("stat", vec![json!(path)]).await;
        if stat["isDirectory"] == json!(false) {
            let content = actor.read(&path).await;
            assert!(
                [&b"bad-1"[..], b"plain"].contains(&content.as_slice()),
                "{name:?} holds {content:?}"
            );
        }
    }
    if report["file"] == json!("ok") {
        assert!(names.contains("b\u{FFFD}a"), "the invalid byte became U+FFFD: {names:?}");
        assert_eq!(actor.read("/workspace/u/b\u{FFFD}a").await, b"bad-1");
    }
    if report["nested"] == json!("ok") {
        assert_eq!(actor.read("/workspace/u/d\u{FFFD}/inner.txt").await, b"inner");
    }
    if report["rename"] == json!("ok") {
        assert!(!names.contains("plain.txt"), "{names:?}");
    } else {
        assert_eq!(actor.read("/workspace/u/plain.txt").await, b"plain");
    }
    actor.assert_clean("invalid UTF-8 names").await;
}

#[tokio::test]
async fn write_file_over_the_message_limit_fails_and_keeps_the_previous_content() {
    let actor = Actor::new("bad-huge");
    let previous: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    actor.write("/workspace/big.bin", &previous).await;

    let huge = vec![b'h'; MESSAGE_LIMIT + (1 << 20)];
    let err = actor.call("writeFile", vec![json!("/workspace/big.bin"), uint8array(&huge)]).await.expect_err("33 MiB");
    assert_eq!((err.group.as_str(), err.code.as_str()), ("message", "incoming_too_long"), "{err:?}");
    assert!(err.message.to_lowercase().contains("too long"), "{err:?}");
    drop(huge);
    assert!(actor.read("/workspace/big.bin").await == previous, "the previous content is intact");

    // Big but within the message limit (base64 in JSON: 4/3), and bigger
    // than one SQL batch (8 MiB of SQL text, hex: 2 bytes a byte), so stored
    // in several transactions: the write lands whole or fails whole.
    let big: Vec<u8> = (0..6_000_000u32).map(|i| (i % 241) as u8).collect();
    let expected = match actor.call("writeFile", vec![json!("/workspace/big.bin"), uint8array(&big)]).await {
        Ok(_) => &big,
        Err(err) => {
            assert_eq!(err.group, "user", "{err:?}");
            &previous
        }
    };
    assert!(actor.read("/workspace/big.bin").await == *expected, "the 6 MB write landed whole or not at all");
    let size = actor.exec("wc -c /workspace/big.bin").await;
    let size = size["stdout"].as_str().unwrap().split_whitespace().next().unwrap_or_default().to_owned();
    assert_eq!(size, expected.len().to_string(), "the guest sees the same file");

    // Past what one sidecar frame can carry (about 12.5 MB as base64): a
    // guest append needs the whole file from the root, which refuses it
    // (EFBIG, an I/O error in the guest); the file stays as it was.
    let over: Vec<u8> = (0..12_600_000u32).map(|i| (i % 239) as u8).collect();
    actor.call("writeFile", vec![json!("/workspace/over.bin"), uint8array(&over)]).await.expect("a client write is not limited by the frame");
    let appended = actor.ok("exec", vec![json!("echo more >> /workspace/over.bin")]).await;
    assert_ne!(appended["exitCode"], json!(0), "{appended}");
    assert!(actor.read("/workspace/over.bin").await == over, "the file is intact after the refused append");
    actor.assert_clean("huge writes").await;
}

/// Content `writer`/`round` writes: its tag repeated to a size that differs
/// per write and spans several 16 KiB chunks, so a mix of two writes is
/// never a valid content.
fn content_of(writer: usize, round: usize) -> Vec<u8> {
    let tag = format!("<w{writer}r{round}>");
    let size = 20_000 + writer * 7_919 + round * 3_571;
    tag.bytes().cycle().take(size).collect()
}

#[tokio::test]
async fn concurrent_writers_never_tear_files() {
    const WRITERS: usize = 4;
    const ROUNDS: usize = 8;
    const GUEST_LINES: usize = 80;
    let key = unique_key("bad-concurrent");
    let client = testkit::client();
    let actor = Actor { key: key.clone(), gateway: Gateway::new(ACTOR, &key).expect("gateway") };
    actor.ok("mkdir", vec![json!("/workspace/c")]).await;
    actor.write("/workspace/c/shared.txt", b"initial").await;
    let all: Arc<Vec<Vec<u8>>> =
        Arc::new((0..WRITERS).flat_map(|w| (0..ROUNDS).map(move |r| content_of(w, r))).collect());

    // A guest process appends to its own log the whole time.
    let guest = {
        let gateway = Gateway::new(ACTOR, &key).expect("gateway");
        let script = format!(
            "for i in $(seq 1 {GUEST_LINES}); do echo \"guest line $i\" >> /workspace/c/guest.log; done; echo done"
        );
        tokio::spawn(async move { tokio::time::timeout(ACTION_LIMIT, gateway.action("exec", vec![json!(script)])).await })
    };

    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let handle = client.get_or_create(ACTOR, vec![key.clone()], GetOrCreateOptions::default()).expect("handle");
        let all = all.clone();
        tasks.push(tokio::spawn(async move {
            let conn = handle.connect();
            let call = |action: &'static str, args: Vec<Value>| {
                let conn = conn.clone();
                async move {
                    tokio::time::timeout(ACTION_LIMIT, conn.action(action, args))
                        .await
                        .unwrap_or_else(|_| panic!("writer {writer}: {action} did not answer"))
                        .unwrap_or_else(|e| panic!("writer {writer}: {action}: {e:#}"))
                }
            };
            for round in 0..ROUNDS {
                let content = content_of(writer, round);
                // The same file for everyone, a file of its own, and an
                // atomic replace by rename.
                call("writeFile", vec![json!("/workspace/c/shared.txt"), uint8array(&content)]).await;
                call("writeFile", vec![json!(format!("/workspace/c/own-{writer}.txt")), uint8array(&content)]).await;
                let tmp = format!("/workspace/c/tmp-{writer}");
                call("writeFile", vec![json!(tmp), uint8array(&content)]).await;
                call("move", vec![json!(tmp), json!("/workspace/c/renamed.txt")]).await;
                let seen = bytes_of(&call("readFile", vec![json!("/workspace/c/shared.txt")]).await);
                assert!(
                    all.contains(&seen),
                    "writer {writer} round {round}: shared.txt is torn ({} bytes, starts {:?})",
                    seen.len(),
                    String::from_utf8_lossy(&seen[..seen.len().min(40)])
                );
            }
            conn.disconnect().await;
        }));
    }
    for task in tasks {
        task.await.expect("writer task");
    }
    let guest = guest.await.expect("guest task").expect("guest exec answered in time").expect("guest exec");
    assert_eq!(guest["exitCode"], json!(0), "{guest}");

    for path in ["/workspace/c/shared.txt", "/workspace/c/renamed.txt"] {
        let content = actor.read(path).await;
        assert!(all.contains(&content), "{path} is not one whole written content ({} bytes)", content.len());
    }
    for writer in 0..WRITERS {
        let own = actor.read(&format!("/workspace/c/own-{writer}.txt")).await;
        assert!(own == content_of(writer, ROUNDS - 1), "own-{writer}.txt holds its last write");
    }
    let log: String = (1..=GUEST_LINES).map(|i| format!("guest line {i}\n")).collect();
    assert_eq!(String::from_utf8(actor.read("/workspace/c/guest.log").await).unwrap(), log);
    let names = actor.names("/workspace/c").await;
    let mut expected: BTreeSet<String> = ["shared.txt", "renamed.txt", "guest.log"].map(String::from).into();
    expected.extend((0..WRITERS).map(|w| format!("own-{w}.txt")));
    assert_eq!(names, expected, "no temporary file is left behind");
    // What the guest sees agrees with the actions.
    let sums = actor.exec("wc -c /workspace/c/shared.txt /workspace/c/renamed.txt").await;
    let shared = actor.read("/workspace/c/shared.txt").await.len();
    assert!(sums["stdout"].as_str().unwrap().contains(&format!("{shared} /workspace/c/shared.txt")), "{sums}");
    actor.assert_clean("concurrent writers").await;
}
