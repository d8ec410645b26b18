//! Tests of the durable root through its wire entry point, on an in-memory
//! SQLite. Every scenario ends with the consistency checker.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::testing::{MemSql, assert_clean, fs_with, small_fs};
use super::{Fs, FsOptions, OPERATIONS, Op, Problem, ROOT, handle};

type TestFs = Fs<Arc<MemSql>>;

async fn call(fs: &TestFs, op: &str, args: Value) -> Result<Option<Value>, String> {
    handle(fs, op, &args).await
}

async fn ok(fs: &TestFs, op: &str, args: Value) -> Option<Value> {
    match call(fs, op, args.clone()).await {
        Ok(value) => value,
        Err(e) => panic!("{op} {args}: {e}"),
    }
}

/// Asserts `op` fails with `errno` and the error text has the wire form.
async fn fails(fs: &TestFs, op: &str, args: Value, errno: &str) {
    match call(fs, op, args.clone()).await {
        Ok(v) => panic!("{op} {args}: expected {errno}, got {v:?}"),
        Err(e) => assert!(e.starts_with(&format!("{errno}: ")), "{op} {args}: expected {errno}, got `{e}`"),
    }
}

fn b64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

async fn write(fs: &TestFs, path: &str, bytes: &[u8]) {
    ok(fs, "writeFile", json!({"path": path, "content": b64(bytes)})).await;
}

async fn read(fs: &TestFs, path: &str) -> Vec<u8> {
    let v = ok(fs, "readFile", json!({"path": path})).await.expect("content");
    BASE64.decode(v.as_str().expect("base64 text")).expect("valid base64")
}

async fn stat(fs: &TestFs, op: &str, path: &str) -> Value {
    ok(fs, op, json!({"path": path})).await.expect("stat object")
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect()
}

// ---- dispatch ------------------------------------------------------------------

#[tokio::test]
async fn operation_table_drives_dispatch() {
    let (_sql, fs) = small_fs().await;
    let mut names: Vec<&str> = OPERATIONS.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), OPERATIONS.len(), "duplicate operation names");
    for (name, op) in OPERATIONS {
        assert_eq!(Op::from_name(name), Some(*op));
        assert_eq!(op.name(), *name);
        // Every listed operation is dispatched: with no arguments it fails
        // on the arguments, never as unsupported.
        let err = call(&fs, name, json!({})).await.expect_err(name);
        assert!(err.starts_with("EINVAL: "), "{name}: {err}");
    }
    assert_eq!(
        call(&fs, "fsync", json!({"path": "/"})).await,
        Err("ENOSYS: function not implemented".to_owned())
    );
    assert_clean(&fs).await;
}

#[tokio::test]
async fn bad_arguments_are_einval() {
    let (_sql, fs) = small_fs().await;
    write(&fs, "/f", b"x").await;
    fails(&fs, "stat", json!({"path": 5}), "EINVAL").await;
    fails(&fs, "stat", json!({"path": "relative/path"}), "EINVAL").await;
    fails(&fs, "writeFile", json!({"path": "/g", "content": "not base64!"}), "EINVAL").await;
    fails(&fs, "pread", json!({"path": "/f", "offset": -1, "length": 1}), "EINVAL").await;
    fails(&fs, "truncate", json!({"path": "/f", "length": 1.5}), "EINVAL").await;
    fails(&fs, "mkdir", json!({"path": "/d", "recursive": "yes"}), "EINVAL").await;
    fails(&fs, "chown", json!({"path": "/f", "uid": -2, "gid": 0}), "EINVAL").await;
    fails(&fs, "utimes", json!({"path": "/f", "atimeMs": "now", "mtimeMs": 0}), "EINVAL").await;
    fails(&fs, "stat", json!({"path": ""}), "ENOENT").await;
    fails(&fs, "stat", json!({"path": "/a\u{0}b"}), "EINVAL").await;
    assert_clean(&fs).await;
}

/// How `agentos-sidecar` 0.2.21 turns a `js_bridge` error text into the
/// guest's errno (read from the strings of its binary and confirmed by
/// answering `readlink` with chosen texts): the first listed phrase found
/// anywhere in the lower-cased text decides, else EIO.
fn sidecar_errno(text: &str) -> &'static str {
    let text = text.to_lowercase();
    let has = |phrases: &[&str]| phrases.iter().any(|p| text.contains(p));
    if has(&["enoent", "not found", "no such file"]) {
        "ENOENT"
    } else if has(&["eacces", "eperm", "permission denied"]) {
        "EACCES"
    } else if has(&["eexist", "already exists"]) {
        "EEXIST"
    } else {
        "EIO"
    }
}

#[tokio::test]
async fn error_text_names_only_the_errno_so_paths_cannot_change_it() {
    use super::Errno::*;
    let every = [
        ENOENT, ENOTDIR, EISDIR, EEXIST, ENOTEMPTY, EINVAL, ELOOP, ENAMETOOLONG, EPERM, EBUSY, ENOSYS, EFBIG, EIO,
    ];
    for errno in every {
        // The errno the guest should get through the sidecar's matcher.
        let expected = match errno {
            ENOENT => "ENOENT",
            EEXIST => "EEXIST",
            EPERM => "EACCES",
            ENOTDIR | EISDIR | ENOTEMPTY | EINVAL | ELOOP | ENAMETOOLONG | EBUSY | ENOSYS | EFBIG | EIO => "EIO",
        };
        let error = errno.at("op", "/w/Not Found/preexisting/no such file/permission denied");
        let text = error.wire_text();
        assert_eq!(text, format!("{}: {}", errno.code(), errno.description()));
        assert_eq!(sidecar_errno(&text), expected, "{text}");
    }

    // Through the wire: a non-empty directory whose name holds `eexist` is
    // ENOTEMPTY, never EEXIST; an existing one named `not found` is EEXIST.
    let (_sql, fs) = small_fs().await;
    ok(&fs, "mkdir", json!({"path": "/preexisting/sub", "recursive": true})).await;
    ok(&fs, "mkdir", json!({"path": "/not found"})).await;
    let err = call(&fs, "removeDir", json!({"path": "/preexisting"})).await.unwrap_err();
    assert_eq!(err, "ENOTEMPTY: directory not empty");
    let err = call(&fs, "mkdir", json!({"path": "/not found"})).await.unwrap_err();
    assert_eq!((err.as_str(), sidecar_errno(&err)), ("EEXIST: file already exists", "EEXIST"));
    let err = call(&fs, "symlink", json!({"target": "x", "linkPath": "/not found"})).await.unwrap_err();
    assert_eq!(sidecar_errno(&err), "EEXIST", "{err}");
    assert_clean(&fs).await;
}

// ---- one test per operation -------------------------------------------------------

#[tokio::test]
async fn op_stat_and_lstat() {
    let (_sql, fs) = small_fs().await;
    let root = stat(&fs, "stat", "/").await;
    assert_eq!(root["ino"], 1);
    assert_eq!(root["mode"], 0o40755);
    assert_eq!(root["nlink"], 2);
    assert_eq!(root["size"], 4096);
    assert_eq!(root["isDirectory"], true);
    assert_eq!(root["isSymbolicLink"], false);

    write(&fs, "/f", b"hello").await;
    ok(&fs, "symlink", json!({"target": "f", "linkPath": "/l"})).await;
    let f = stat(&fs, "stat", "/f").await;
    let keys: Vec<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
    for key in [
        "dev", "ino", "mode", "nlink", "uid", "gid", "rdev", "size", "blocks", "atimeMs", "atimeNsec", "mtimeMs",
        "mtimeNsec", "ctimeMs", "ctimeNsec", "birthtimeMs", "isDirectory", "isSymbolicLink",
    ] {
        assert!(keys.contains(&key), "stat lacks {key}: {f}");
    }
    assert_eq!(keys.len(), 18, "{f}");
    assert_eq!(f["mode"], 0o100644);
    assert_eq!(f["size"], 5);
    assert_eq!(f["blocks"], 1);
    assert_eq!(f["nlink"], 1);
    for key in ["atimeMs", "mtimeMs", "ctimeMs", "birthtimeMs", "atimeNsec", "mtimeNsec", "ctimeNsec"] {
        assert!(f[key].is_u64(), "{key} must be an unsigned integer: {f}");
    }
    assert_eq!(f["mtimeMs"].as_u64().unwrap() % 1000, f["mtimeNsec"].as_u64().unwrap() / 1_000_000);

    let via_link = stat(&fs, "stat", "/l").await;
    assert_eq!(via_link["ino"], f["ino"]);
    let link = stat(&fs, "lstat", "/l").await;
    assert_ne!(link["ino"], f["ino"]);
    assert_eq!(link["mode"], 0o120777);
    assert_eq!(link["isSymbolicLink"], true);
    assert_eq!(link["size"], 1);

    fails(&fs, "stat", json!({"path": "/missing"}), "ENOENT").await;
    fails(&fs, "lstat", json!({"path": "/missing/x"}), "ENOENT").await;
    fails(&fs, "stat", json!({"path": "/f/x"}), "ENOTDIR").await;
    fails(&fs, "stat", json!({"path": "/f/"}), "ENOTDIR").await;
    fails(&fs, "stat", json!({"path": format!("/{}", "n".repeat(256))}), "ENAMETOOLONG").await;
    ok(&fs, "symlink", json!({"target": "dangling", "linkPath": "/d"})).await;
    fails(&fs, "stat", json!({"path": "/d"}), "ENOENT").await;
    assert_eq!(stat(&fs, "lstat", "/d").await["isSymbolicLink"], true);
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_exists() {
    let (_sql, fs) = small_fs().await;
    write(&fs, "/f", b"").await;
    ok(&fs, "symlink", json!({"target": "/nowhere", "linkPath": "/dangling"})).await;
    ok(&fs, "symlink", json!({"target": "/loop", "linkPath": "/loop"})).await;
    for (path, expected) in [("/", true), ("/f", true), ("/nope", false), ("/f/x", false), ("/dangling", false), ("/loop", false), ("rel", false)] {
        assert_eq!(ok(&fs, "exists", json!({"path": path})).await, Some(json!(expected)), "{path}");
    }
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_realpath() {
    let (_sql, fs) = small_fs().await;
    ok(&fs, "mkdir", json!({"path": "/a/b", "recursive": true})).await;
    write(&fs, "/a/b/f", b"x").await;
    ok(&fs, "symlink", json!({"target": "a/b", "linkPath": "/ab"})).await;
    ok(&fs, "symlink", json!({"target": "../b/f", "linkPath": "/a/b/rel"})).await;
    let rp = |p: &'static str| {
        let fs = &fs;
        async move { ok(fs, "realpath", json!({"path": p})).await.unwrap() }
    };
    assert_eq!(rp("/").await, "/");
    assert_eq!(rp("/ab").await, "/a/b");
    assert_eq!(rp("/ab/f").await, "/a/b/f");
    assert_eq!(rp("/ab/rel").await, "/a/b/f");
    assert_eq!(rp("/a/b/../b/./f").await, "/a/b/f");
    assert_eq!(rp("/ab/..").await, "/a");
    assert_eq!(rp("/..").await, "/");
    fails(&fs, "realpath", json!({"path": "/ab/missing"}), "ENOENT").await;
    fails(&fs, "realpath", json!({"path": "/a/b/f/x"}), "ENOTDIR").await;
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_read_dir_and_read_dir_with_types() {
    let (_sql, fs) = small_fs().await;
    ok(&fs, "mkdir", json!({"path": "/d/sub", "recursive": true})).await;
    write(&fs, "/d/b", b"").await;
    write(&fs, "/d/a", b"").await;
    ok(&fs, "symlink", json!({"target": "sub", "linkPath": "/d/link"})).await;
    ok(&fs, "symlink", json!({"target": "d", "linkPath": "/dl"})).await;
    assert_eq!(ok(&fs, "readDir", json!({"path": "/d"})).await, Some(json!(["a", "b", "link", "sub"])));
    assert_eq!(ok(&fs, "readDir", json!({"path": "/dl"})).await, Some(json!(["a", "b", "link", "sub"])));
    assert_eq!(ok(&fs, "readDir", json!({"path": "/d/sub"})).await, Some(json!([])));
    assert_eq!(
        ok(&fs, "readDirWithTypes", json!({"path": "/d"})).await,
        Some(json!([
            {"name": "a", "isDirectory": false, "isSymbolicLink": false},
            {"name": "b", "isDirectory": false, "isSymbolicLink": false},
            {"name": "link", "isDirectory": false, "isSymbolicLink": true},
            {"name": "sub", "isDirectory": true, "isSymbolicLink": false},
        ]))
    );
    fails(&fs, "readDir", json!({"path": "/d/a"}), "ENOTDIR").await;
    fails(&fs, "readDirWithTypes", json!({"path": "/d/a"}), "ENOTDIR").await;
    fails(&fs, "readDir", json!({"path": "/nope"}), "ENOENT").await;
    fails(&fs, "readDirWithTypes", json!({"path": "/nope"}), "ENOENT").await;
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_read_file() {
    let (_sql, fs) = small_fs().await;
    let data = pattern(100, 7);
    write(&fs, "/f", &data).await;
    write(&fs, "/empty", b"").await;
    ok(&fs, "mkdir", json!({"path": "/d"})).await;
    assert_eq!(read(&fs, "/f").await, data);
    assert_eq!(read(&fs, "/empty").await, b"");
    fails(&fs, "readFile", json!({"path": "/d"}), "EISDIR").await;
    fails(&fs, "readFile", json!({"path": "/"}), "EISDIR").await;
    fails(&fs, "readFile", json!({"path": "/nope"}), "ENOENT").await;
    fails(&fs, "readFile", json!({"path": "/f/x"}), "ENOTDIR").await;
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_pread() {
    let (_sql, fs) = small_fs().await;
    let data = pattern(50, 3);
    write(&fs, "/f", &data).await;
    ok(&fs, "mkdir", json!({"path": "/d"})).await;
    let pread = |offset: u64, length: u64| {
        let fs = &fs;
        async move {
            let v = ok(fs, "pread", json!({"path": "/f", "offset": offset, "length": length})).await.unwrap();
            BASE64.decode(v.as_str().unwrap()).unwrap()
        }
    };
    assert_eq!(pread(0, 50).await, data);
    assert_eq!(pread(10, 20).await, &data[10..30]);
    assert_eq!(pread(15, 2).await, &data[15..17]);
    assert_eq!(pread(40, 8 << 20).await, &data[40..]);
    assert_eq!(pread(50, 10).await, b"");
    assert_eq!(pread(500, 10).await, b"");
    assert_eq!(pread(3, 0).await, b"");
    // `len` is accepted for `length`.
    let v = ok(&fs, "pread", json!({"path": "/f", "offset": 1, "len": 2})).await.unwrap();
    assert_eq!(BASE64.decode(v.as_str().unwrap()).unwrap(), &data[1..3]);
    fails(&fs, "pread", json!({"path": "/d", "offset": 0, "length": 1}), "EISDIR").await;
    fails(&fs, "pread", json!({"path": "/nope", "offset": 0, "length": 1}), "ENOENT").await;
    fails(&fs, "pread", json!({"path": "/f", "length": 1}), "EINVAL").await;
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_readlink() {
    let (_sql, fs) = small_fs().await;
    ok(&fs, "symlink", json!({"target": "../some/where", "linkPath": "/l"})).await;
    write(&fs, "/f", b"").await;
    assert_eq!(ok(&fs, "readlink", json!({"path": "/l"})).await, Some(json!("../some/where")));
    fails(&fs, "readlink", json!({"path": "/f"}), "EINVAL").await;
    fails(&fs, "readlink", json!({"path": "/"}), "EINVAL").await;
    fails(&fs, "readlink", json!({"path": "/nope"}), "ENOENT").await;
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_write_file() {
    let (sql, fs) = small_fs().await;
    write(&fs, "/f", b"first version, two chunks").await;
    let ino = stat(&fs, "stat", "/f").await["ino"].clone();
    write(&fs, "/f", b"second").await;
    assert_eq!(read(&fs, "/f").await, b"second");
    assert_eq!(stat(&fs, "stat", "/f").await["ino"], ino, "replacing keeps the inode");
    assert_eq!(sql.scalar("SELECT COUNT(*) FROM fs_chunks"), 1);

    ok(&fs, "writeFile", json!({"path": "/x", "content": b64(b"#!"), "mode": 0o755})).await;
    assert_eq!(stat(&fs, "stat", "/x").await["mode"], 0o100755);
    // Through a symlink: the target is written; a dangling one creates it.
    ok(&fs, "symlink", json!({"target": "f", "linkPath": "/l"})).await;
    write(&fs, "/l", b"via link").await;
    assert_eq!(read(&fs, "/f").await, b"via link");
    assert_eq!(stat(&fs, "lstat", "/l").await["isSymbolicLink"], true);
    ok(&fs, "symlink", json!({"target": "created", "linkPath": "/dangling"})).await;
    write(&fs, "/dangling", b"new").await;
    assert_eq!(read(&fs, "/created").await, b"new");
    // Names with quotes and non-ASCII survive SQL literals.
    write(&fs, "/it's ü 'q'.txt", b"q").await;
    assert_eq!(read(&fs, "/it's ü 'q'.txt").await, b"q");

    ok(&fs, "mkdir", json!({"path": "/d"})).await;
    fails(&fs, "writeFile", json!({"path": "/d", "content": ""}), "EISDIR").await;
    fails(&fs, "writeFile", json!({"path": "/", "content": ""}), "EISDIR").await;
    fails(&fs, "writeFile", json!({"path": "/new/", "content": ""}), "EISDIR").await;
    fails(&fs, "writeFile", json!({"path": "/nope/f", "content": ""}), "ENOENT").await;
    fails(&fs, "writeFile", json!({"path": "/f/g", "content": ""}), "ENOTDIR").await;
    fails(&fs, "writeFile", json!({"path": format!("/{}", "n".repeat(256)), "content": ""}), "ENAMETOOLONG").await;
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_pwrite() {
    let (_sql, fs) = small_fs().await;
    write(&fs, "/f", b"0123456789").await;
    ok(&fs, "pwrite", json!({"path": "/f", "offset": 2, "content": b64(b"ab")})).await;
    assert_eq!(read(&fs, "/f").await, b"01ab456789");
    ok(&fs, "pwrite", json!({"path": "/f", "offset": 8, "content": b64(b"XYZ--over-a-chunk-boundary")})).await;
    assert_eq!(read(&fs, "/f").await, b"01ab4567XYZ--over-a-chunk-boundary");
    ok(&fs, "pwrite", json!({"path": "/f", "offset": 0, "content": ""})).await;
    assert_eq!(stat(&fs, "stat", "/f").await["size"], 34);
    ok(&fs, "mkdir", json!({"path": "/d"})).await;
    fails(&fs, "pwrite", json!({"path": "/d", "offset": 0, "content": b64(b"x")}), "EISDIR").await;
    fails(&fs, "pwrite", json!({"path": "/nope", "offset": 0, "content": b64(b"x")}), "ENOENT").await;
    fails(&fs, "pwrite", json!({"path": "/f", "content": b64(b"x")}), "EINVAL").await;
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_truncate() {
    let (_sql, fs) = small_fs().await;
    let data = pattern(40, 9);
    write(&fs, "/f", &data).await;
    ok(&fs, "truncate", json!({"path": "/f", "length": 20})).await;
    assert_eq!(read(&fs, "/f").await, &data[..20]);
    ok(&fs, "truncate", json!({"path": "/f", "length": 36})).await;
    let mut expected = data[..20].to_vec();
    expected.resize(36, 0);
    assert_eq!(read(&fs, "/f").await, expected, "growing exposes zeros, not old bytes");
    ok(&fs, "truncate", json!({"path": "/f", "length": 0})).await;
    assert_eq!(read(&fs, "/f").await, b"");
    ok(&fs, "truncate", json!({"path": "/f", "len": 3})).await;
    assert_eq!(read(&fs, "/f").await, [0, 0, 0]);
    ok(&fs, "mkdir", json!({"path": "/d"})).await;
    fails(&fs, "truncate", json!({"path": "/d", "length": 0}), "EISDIR").await;
    fails(&fs, "truncate", json!({"path": "/nope", "length": 0}), "ENOENT").await;
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_mkdir() {
    let (_sql, fs) = small_fs().await;
    ok(&fs, "mkdir", json!({"path": "/a"})).await;
    assert_eq!(stat(&fs, "stat", "/a").await["mode"], 0o40755);
    assert_eq!(stat(&fs, "stat", "/").await["nlink"], 3);
    ok(&fs, "mkdir", json!({"path": "/a/b/c/d", "recursive": true, "mode": 0o700})).await;
    assert_eq!(stat(&fs, "stat", "/a/b/c/d").await["mode"], 0o40700);
    assert_eq!(stat(&fs, "stat", "/a").await["nlink"], 3);
    ok(&fs, "mkdir", json!({"path": "/a/b", "recursive": true})).await;
    ok(&fs, "mkdir", json!({"path": "/a/b/../x/./y", "recursive": true})).await;
    assert_eq!(ok(&fs, "readDir", json!({"path": "/a"})).await, Some(json!(["b", "x"])));
    ok(&fs, "symlink", json!({"target": "a/b", "linkPath": "/ab"})).await;
    ok(&fs, "mkdir", json!({"path": "/ab/via-link", "recursive": true})).await;
    assert_eq!(stat(&fs, "stat", "/a/b/via-link").await["isDirectory"], true);
    write(&fs, "/f", b"").await;
    fails(&fs, "mkdir", json!({"path": "/a"}), "EEXIST").await;
    fails(&fs, "mkdir", json!({"path": "/f"}), "EEXIST").await;
    fails(&fs, "mkdir", json!({"path": "/ab"}), "EEXIST").await;
    fails(&fs, "mkdir", json!({"path": "/f", "recursive": true}), "EEXIST").await;
    fails(&fs, "mkdir", json!({"path": "/f/g", "recursive": true}), "ENOTDIR").await;
    fails(&fs, "mkdir", json!({"path": "/f/g"}), "ENOTDIR").await;
    fails(&fs, "mkdir", json!({"path": "/no/such"}), "ENOENT").await;
    fails(&fs, "mkdir", json!({"path": "/"}), "EEXIST").await;
    fails(&fs, "mkdir", json!({"path": format!("/a/{}", "n".repeat(256)), "recursive": true}), "ENAMETOOLONG").await;
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_create_dir() {
    let (_sql, fs) = small_fs().await;
    ok(&fs, "createDir", json!({"path": "/w"})).await;
    assert_eq!(stat(&fs, "stat", "/w").await["isDirectory"], true);
    fails(&fs, "createDir", json!({"path": "/w"}), "EEXIST").await;
    fails(&fs, "createDir", json!({"path": "/x/y"}), "ENOENT").await;
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_symlink() {
    let (_sql, fs) = small_fs().await;
    ok(&fs, "symlink", json!({"target": "certs/ca.crt", "linkPath": "/cert.pem"})).await;
    assert_eq!(ok(&fs, "readlink", json!({"path": "/cert.pem"})).await, Some(json!("certs/ca.crt")));
    assert_eq!(stat(&fs, "lstat", "/cert.pem").await["size"], 12);
    fails(&fs, "symlink", json!({"target": "x", "linkPath": "/cert.pem"}), "EEXIST").await;
    fails(&fs, "symlink", json!({"target": "x", "linkPath": "/"}), "EEXIST").await;
    fails(&fs, "symlink", json!({"target": "", "linkPath": "/e"}), "ENOENT").await;
    fails(&fs, "symlink", json!({"target": "x", "linkPath": "/no/dir/l"}), "ENOENT").await;
    fails(&fs, "symlink", json!({"target": "x"}), "EINVAL").await;
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_link() {
    let (sql, fs) = small_fs().await;
    write(&fs, "/a", b"shared content").await;
    ok(&fs, "link", json!({"oldPath": "/a", "newPath": "/b"})).await;
    let (a, b) = (stat(&fs, "stat", "/a").await, stat(&fs, "stat", "/b").await);
    assert_eq!(a["ino"], b["ino"]);
    assert_eq!(a["nlink"], 2);
    assert_eq!(sql.scalar("SELECT COUNT(*) FROM fs_inodes WHERE kind = 1"), 1);
    ok(&fs, "mkdir", json!({"path": "/d"})).await;
    fails(&fs, "link", json!({"oldPath": "/d", "newPath": "/d2"}), "EPERM").await;
    fails(&fs, "link", json!({"oldPath": "/a", "newPath": "/b"}), "EEXIST").await;
    fails(&fs, "link", json!({"oldPath": "/nope", "newPath": "/c"}), "ENOENT").await;
    fails(&fs, "link", json!({"oldPath": "/a", "newPath": "/nope/c"}), "ENOENT").await;
    // A symlink is linked itself, not its target.
    ok(&fs, "symlink", json!({"target": "a", "linkPath": "/s"})).await;
    ok(&fs, "link", json!({"oldPath": "/s", "newPath": "/s2"})).await;
    assert_eq!(stat(&fs, "lstat", "/s2").await["isSymbolicLink"], true);
    assert_eq!(stat(&fs, "lstat", "/s").await["nlink"], 2);
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_rename() {
    let (_sql, fs) = small_fs().await;
    write(&fs, "/f", b"file").await;
    ok(&fs, "rename", json!({"oldPath": "/f", "newPath": "/g"})).await;
    assert_eq!(read(&fs, "/g").await, b"file");
    fails(&fs, "stat", json!({"path": "/f"}), "ENOENT").await;

    ok(&fs, "mkdir", json!({"path": "/a/x", "recursive": true})).await;
    ok(&fs, "mkdir", json!({"path": "/b/empty", "recursive": true})).await;
    ok(&fs, "mkdir", json!({"path": "/full/child", "recursive": true})).await;
    fails(&fs, "rename", json!({"oldPath": "/g", "newPath": "/a"}), "EISDIR").await;
    fails(&fs, "rename", json!({"oldPath": "/a", "newPath": "/g"}), "ENOTDIR").await;
    fails(&fs, "rename", json!({"oldPath": "/a", "newPath": "/full"}), "ENOTEMPTY").await;
    fails(&fs, "rename", json!({"oldPath": "/a", "newPath": "/a/x/inside"}), "EINVAL").await;
    fails(&fs, "rename", json!({"oldPath": "/a", "newPath": "/a/inside"}), "EINVAL").await;
    fails(&fs, "rename", json!({"oldPath": "/", "newPath": "/r"}), "EBUSY").await;
    fails(&fs, "rename", json!({"oldPath": "/a", "newPath": "/"}), "EBUSY").await;
    fails(&fs, "rename", json!({"oldPath": "/nope", "newPath": "/x"}), "ENOENT").await;
    fails(&fs, "rename", json!({"oldPath": "/g", "newPath": "/nope/x"}), "ENOENT").await;
    fails(&fs, "rename", json!({"oldPath": "/g", "newPath": "/g/x"}), "ENOTDIR").await;
    fails(&fs, "rename", json!({"oldPath": "/g/", "newPath": "/h"}), "ENOTDIR").await;
    // Directory over an empty directory, across parents: link counts move.
    ok(&fs, "rename", json!({"oldPath": "/a", "newPath": "/b/empty"})).await;
    assert_eq!(ok(&fs, "readDir", json!({"path": "/b/empty"})).await, Some(json!(["x"])));
    assert_eq!(stat(&fs, "stat", "/b").await["nlink"], 3);
    assert_eq!(stat(&fs, "stat", "/").await["nlink"], 4); // b, full (+2)
    // Renaming to itself or to another link of the same inode does nothing.
    ok(&fs, "rename", json!({"oldPath": "/g", "newPath": "/g"})).await;
    ok(&fs, "link", json!({"oldPath": "/g", "newPath": "/g2"})).await;
    ok(&fs, "rename", json!({"oldPath": "/g", "newPath": "/g2"})).await;
    assert_eq!(stat(&fs, "stat", "/g").await["nlink"], 2);
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_remove_file() {
    let (sql, fs) = small_fs().await;
    write(&fs, "/f", &pattern(40, 1)).await;
    ok(&fs, "symlink", json!({"target": "f", "linkPath": "/l"})).await;
    ok(&fs, "removeFile", json!({"path": "/l"})).await;
    assert_eq!(read(&fs, "/f").await, pattern(40, 1), "removing a symlink keeps its target");
    ok(&fs, "removeFile", json!({"path": "/f"})).await;
    assert_eq!(sql.scalar("SELECT COUNT(*) FROM fs_chunks"), 0);
    assert_eq!(sql.scalar("SELECT COUNT(*) FROM fs_inodes"), 1);
    ok(&fs, "mkdir", json!({"path": "/d"})).await;
    fails(&fs, "removeFile", json!({"path": "/d"}), "EISDIR").await;
    fails(&fs, "removeFile", json!({"path": "/"}), "EISDIR").await;
    fails(&fs, "removeFile", json!({"path": "/f"}), "ENOENT").await;
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_remove_dir() {
    let (_sql, fs) = small_fs().await;
    ok(&fs, "mkdir", json!({"path": "/d/e", "recursive": true})).await;
    write(&fs, "/f", b"").await;
    ok(&fs, "symlink", json!({"target": "d", "linkPath": "/dl"})).await;
    fails(&fs, "removeDir", json!({"path": "/d"}), "ENOTEMPTY").await;
    fails(&fs, "removeDir", json!({"path": "/f"}), "ENOTDIR").await;
    fails(&fs, "removeDir", json!({"path": "/dl"}), "ENOTDIR").await;
    fails(&fs, "removeDir", json!({"path": "/"}), "EBUSY").await;
    fails(&fs, "removeDir", json!({"path": "/nope"}), "ENOENT").await;
    assert_eq!(stat(&fs, "stat", "/d").await["nlink"], 3);
    ok(&fs, "removeDir", json!({"path": "/d/e"})).await;
    assert_eq!(stat(&fs, "stat", "/d").await["nlink"], 2);
    ok(&fs, "removeDir", json!({"path": "/d"})).await;
    assert_eq!(stat(&fs, "stat", "/").await["nlink"], 2);
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_chmod() {
    let (sql, fs) = small_fs().await;
    write(&fs, "/f", b"").await;
    ok(&fs, "mkdir", json!({"path": "/d"})).await;
    ok(&fs, "symlink", json!({"target": "f", "linkPath": "/l"})).await;
    let before = stat(&fs, "stat", "/f").await;
    std::thread::sleep(std::time::Duration::from_millis(2));
    ok(&fs, "chmod", json!({"path": "/l", "mode": 0o4755})).await;
    let after = stat(&fs, "stat", "/f").await;
    assert_eq!(after["mode"], 0o104755, "type bits kept, setuid and permissions set");
    assert!(after["ctimeMs"].as_u64() > before["ctimeMs"].as_u64(), "ctime moves");
    assert_eq!(after["mtimeMs"], before["mtimeMs"], "mtime stays");
    assert_eq!(stat(&fs, "lstat", "/l").await["mode"], 0o120777, "the symlink itself is untouched");
    ok(&fs, "chmod", json!({"path": "/d", "mode": 0o170777})).await;
    assert_eq!(stat(&fs, "stat", "/d").await["mode"], 0o40777, "type bits of the argument are ignored");
    let unchanged = stat(&fs, "stat", "/d").await;
    let execs = sql.execs.lock().unwrap().len();
    ok(&fs, "chmod", json!({"path": "/d", "mode": 0o777})).await;
    assert_eq!(sql.execs.lock().unwrap().len(), execs, "a chmod that changes nothing writes nothing");
    assert_eq!(stat(&fs, "stat", "/d").await, unchanged);
    fails(&fs, "chmod", json!({"path": "/nope", "mode": 0o644}), "ENOENT").await;
    fails(&fs, "chmod", json!({"path": "/f"}), "EINVAL").await;
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_chown() {
    let (_sql, fs) = small_fs().await;
    write(&fs, "/f", b"").await;
    ok(&fs, "symlink", json!({"target": "f", "linkPath": "/l"})).await;
    ok(&fs, "chown", json!({"path": "/l", "uid": 1000, "gid": 1000, "followSymlinks": true})).await;
    assert_eq!((stat(&fs, "stat", "/f").await["uid"].clone(), stat(&fs, "stat", "/f").await["gid"].clone()), (json!(1000), json!(1000)));
    assert_eq!(stat(&fs, "lstat", "/l").await["uid"], 0);
    ok(&fs, "chown", json!({"path": "/l", "uid": 7, "gid": 8, "followSymlinks": false})).await;
    assert_eq!(stat(&fs, "lstat", "/l").await["uid"], 7);
    assert_eq!(stat(&fs, "stat", "/f").await["uid"], 1000);
    ok(&fs, "chown", json!({"path": "/f", "uid": -1, "gid": 5})).await;
    let f = stat(&fs, "stat", "/f").await;
    assert_eq!((f["uid"].clone(), f["gid"].clone()), (json!(1000), json!(5)));
    fails(&fs, "chown", json!({"path": "/nope", "uid": 0, "gid": 0}), "ENOENT").await;
    assert_clean(&fs).await;
}

#[tokio::test]
async fn op_utimes() {
    let (_sql, fs) = small_fs().await;
    write(&fs, "/f", b"").await;
    ok(&fs, "utimes", json!({"path": "/f", "atimeMs": 1795331120363u64, "mtimeMs": 1700000001456u64})).await;
    let f = stat(&fs, "stat", "/f").await;
    assert_eq!(f["atimeMs"], 1795331120363u64);
    assert_eq!(f["atimeNsec"], 363_000_000);
    assert_eq!(f["mtimeMs"], 1700000001456u64);
    assert!(f["ctimeMs"].as_u64().unwrap() > 1795331120363 || f["ctimeMs"].as_u64().unwrap() > 1_700_000_000_000);
    ok(&fs, "utimes", json!({"path": "/f", "atimeMs": 1000.5, "mtimeMs": 2000.25})).await;
    let f = stat(&fs, "stat", "/f").await;
    assert_eq!((f["atimeMs"].clone(), f["atimeNsec"].clone()), (json!(1000), json!(500_000)));
    assert_eq!((f["mtimeMs"].clone(), f["mtimeNsec"].clone()), (json!(2000), json!(250_000)));
    ok(&fs, "utimes", json!({"path": "/f", "atimeMs": -5, "mtimeMs": 0})).await;
    assert_eq!(stat(&fs, "stat", "/f").await["atimeMs"], 0, "pre-epoch times are reported as 0");
    fails(&fs, "utimes", json!({"path": "/nope", "atimeMs": 0, "mtimeMs": 0}), "ENOENT").await;
    fails(&fs, "utimes", json!({"path": "/f", "atimeMs": 0}), "EINVAL").await;
    assert_clean(&fs).await;
}

#[tokio::test]
async fn utimes_after_reads_follows_relatime() {
    let (sql, fs) = small_fs().await;
    write(&fs, "/f", b"data").await;
    let ms = |v: &Value, k: &str| v[k].as_u64().unwrap();
    let s0 = fs.stat("/f").await.unwrap();
    let st0 = stat(&fs, "stat", "/f").await;
    let execs = || sql.execs.lock().unwrap().len();
    let before = execs();
    // What the sidecar sends after a read: atime now, mtime as it read it (ms).
    let now_ms = ms(&st0, "mtimeMs") + 5;
    ok(&fs, "utimes", json!({"path": "/f", "atimeMs": now_ms, "mtimeMs": ms(&st0, "mtimeMs")})).await;
    assert_eq!(execs(), before, "atime already after mtime/ctime and recent: not written");
    assert_eq!(fs.stat("/f").await.unwrap(), s0);

    std::thread::sleep(std::time::Duration::from_millis(2));
    ok(&fs, "pwrite", json!({"path": "/f", "offset": 0, "content": b64(b"D")})).await;
    let s1 = fs.stat("/f").await.unwrap();
    let st1 = stat(&fs, "stat", "/f").await;
    let read_at = ms(&st1, "mtimeMs") + 1;
    ok(&fs, "utimes", json!({"path": "/f", "atimeMs": read_at, "mtimeMs": ms(&st1, "mtimeMs")})).await;
    let s2 = fs.stat("/f").await.unwrap();
    assert_eq!(s2.atime_ns, read_at as i64 * 1_000_000, "atime older than mtime: written");
    assert_eq!(s2.mtime_ns, s1.mtime_ns, "mtime keeps its nanoseconds");
    assert_eq!(s2.ctime_ns, s1.ctime_ns, "an atime update does not change ctime");

    let day_later = read_at + 86_400_000;
    ok(&fs, "utimes", json!({"path": "/f", "atimeMs": day_later, "mtimeMs": ms(&st1, "mtimeMs")})).await;
    assert_eq!(fs.stat("/f").await.unwrap().atime_ns, day_later as i64 * 1_000_000, "a day later: written");
    ok(&fs, "utimes", json!({"path": "/f", "atimeMs": 5000, "mtimeMs": ms(&st1, "mtimeMs")})).await;
    assert_eq!(fs.stat("/f").await.unwrap().atime_ns, 5_000_000_000, "moving atime back: written");
    assert_clean(&fs).await;
}

// ---- semantics across operations ---------------------------------------------------

#[tokio::test]
async fn times_follow_posix() {
    let (_sql, fs) = small_fs().await;
    ok(&fs, "mkdir", json!({"path": "/d"})).await;
    let pause = || std::thread::sleep(std::time::Duration::from_millis(2));
    // Full nanoseconds from the millisecond and nanosecond fields.
    let t = |v: &Value, k: &str| v[k].as_u64().unwrap() * 1_000_000 + v[k.replace("Ms", "Nsec")].as_u64().unwrap_or(0) % 1_000_000;
    let d0 = stat(&fs, "stat", "/d").await;
    pause();
    write(&fs, "/d/f", b"x").await;
    let d1 = stat(&fs, "stat", "/d").await;
    assert!(t(&d1, "mtimeMs") > t(&d0, "mtimeMs"), "creating an entry changes the directory's mtime");
    let f0 = stat(&fs, "stat", "/d/f").await;
    pause();
    ok(&fs, "pwrite", json!({"path": "/d/f", "offset": 0, "content": b64(b"y")})).await;
    let f1 = stat(&fs, "stat", "/d/f").await;
    assert!(t(&f1, "mtimeMs") > t(&f0, "mtimeMs") && t(&f1, "ctimeMs") > t(&f0, "ctimeMs"));
    assert_eq!(f1["atimeMs"], f0["atimeMs"], "writes leave atime alone");
    pause();
    let _ = read(&fs, "/d/f").await;
    assert_eq!(stat(&fs, "stat", "/d/f").await, f1, "reads change nothing (the sidecar sends utimes for atime)");
    pause();
    ok(&fs, "link", json!({"oldPath": "/d/f", "newPath": "/d/g"})).await;
    let f2 = stat(&fs, "stat", "/d/f").await;
    assert!(t(&f2, "ctimeMs") > t(&f1, "ctimeMs") && f2["mtimeMs"] == f1["mtimeMs"], "link changes ctime only");
    assert_eq!(f2["birthtimeMs"], f0["birthtimeMs"]);
    assert_clean(&fs).await;
}

#[tokio::test]
async fn rename_replaces_atomically() {
    let (sql, fs) = small_fs().await;
    write(&fs, "/new", &pattern(40, 1)).await;
    write(&fs, "/old", &pattern(40, 2)).await;
    ok(&fs, "link", json!({"oldPath": "/old", "newPath": "/old-link"})).await;
    let execs_before = sql.execs.lock().unwrap().len();
    ok(&fs, "rename", json!({"oldPath": "/new", "newPath": "/old"})).await;
    let batches: Vec<String> = sql.execs.lock().unwrap()[execs_before..].to_vec();
    assert_eq!(batches.len(), 1, "one batch");
    assert!(batches[0].starts_with("BEGIN IMMEDIATE;") && batches[0].trim_end().ends_with("COMMIT;"));
    assert_eq!(read(&fs, "/old").await, pattern(40, 1));
    assert_eq!(read(&fs, "/old-link").await, pattern(40, 2), "the replaced inode lives on through its other link");
    assert_eq!(stat(&fs, "stat", "/old-link").await["nlink"], 1);
    ok(&fs, "rename", json!({"oldPath": "/old", "newPath": "/old-link"})).await;
    assert_eq!(sql.scalar("SELECT COUNT(*) FROM fs_inodes WHERE kind = 1"), 1, "the last link's inode is freed");
    assert_eq!(sql.scalar("SELECT COUNT(*) FROM fs_chunks"), 3, "with its chunks");
    assert_clean(&fs).await;

    // A failed batch changes nothing, in SQLite or in the cache.
    ok(&fs, "mkdir", json!({"path": "/src/sub", "recursive": true})).await;
    write(&fs, "/src/sub/f", b"payload").await;
    ok(&fs, "mkdir", json!({"path": "/dst"})).await;
    sql.fail_when(|batch| batch.contains("fs_dirents"));
    fails(&fs, "rename", json!({"oldPath": "/src", "newPath": "/dst"}), "EIO").await;
    sql.stop_failing();
    assert_eq!(read(&fs, "/src/sub/f").await, b"payload");
    assert_eq!(ok(&fs, "readDir", json!({"path": "/dst"})).await, Some(json!([])));
    assert_clean(&fs).await;
    ok(&fs, "rename", json!({"oldPath": "/src", "newPath": "/dst"})).await;
    assert_eq!(read(&fs, "/dst/sub/f").await, b"payload");
    assert_eq!(ok(&fs, "realpath", json!({"path": "/dst/sub/f"})).await, Some(json!("/dst/sub/f")));
    assert_clean(&fs).await;
}

#[tokio::test]
async fn failed_batches_leave_cache_and_storage_unchanged() {
    let (sql, fs) = small_fs().await;
    write(&fs, "/f", b"keep").await;
    sql.fail_when(|_| true);
    fails(&fs, "mkdir", json!({"path": "/d"}), "EIO").await;
    fails(&fs, "writeFile", json!({"path": "/f", "content": b64(b"lost")}), "EIO").await;
    fails(&fs, "removeFile", json!({"path": "/f"}), "EIO").await;
    sql.stop_failing();
    assert!(sql.execs.lock().unwrap().iter().any(|b| b == "ROLLBACK;"), "failed batches are rolled back");
    assert_eq!(ok(&fs, "exists", json!({"path": "/d"})).await, Some(json!(false)));
    assert_eq!(read(&fs, "/f").await, b"keep");
    assert_clean(&fs).await;
    ok(&fs, "mkdir", json!({"path": "/d"})).await;
    assert_clean(&fs).await;
}

#[tokio::test]
async fn hard_links_share_content() {
    let (sql, fs) = small_fs().await;
    write(&fs, "/a", b"one").await;
    ok(&fs, "mkdir", json!({"path": "/d"})).await;
    ok(&fs, "link", json!({"oldPath": "/a", "newPath": "/d/b"})).await;
    write(&fs, "/d/b", b"two, written through the second name").await;
    assert_eq!(read(&fs, "/a").await, b"two, written through the second name");
    ok(&fs, "pwrite", json!({"path": "/a", "offset": 0, "content": b64(b"TWO")})).await;
    ok(&fs, "truncate", json!({"path": "/a", "length": 8})).await;
    assert_eq!(read(&fs, "/d/b").await, b"TWO, wri");
    ok(&fs, "removeFile", json!({"path": "/a"})).await;
    assert_eq!(read(&fs, "/d/b").await, b"TWO, wri");
    assert_eq!(stat(&fs, "stat", "/d/b").await["nlink"], 1);
    ok(&fs, "removeFile", json!({"path": "/d/b"})).await;
    assert_eq!(sql.scalar("SELECT COUNT(*) FROM fs_chunks"), 0, "content freed with the last link");
    assert_clean(&fs).await;
}

#[tokio::test]
async fn symlinks_follow_no_follow_and_loops() {
    let (_sql, fs) = small_fs().await;
    ok(&fs, "mkdir", json!({"path": "/real/dir", "recursive": true})).await;
    write(&fs, "/real/dir/f", b"target").await;
    ok(&fs, "symlink", json!({"target": "/real", "linkPath": "/abs"})).await;
    ok(&fs, "symlink", json!({"target": "../real/dir/f", "linkPath": "/real/rel"})).await;
    ok(&fs, "symlink", json!({"target": "rel", "linkPath": "/real/chain"})).await;
    assert_eq!(read(&fs, "/abs/dir/f").await, b"target");
    assert_eq!(read(&fs, "/real/chain").await, b"target");
    assert_eq!(read(&fs, "/abs/chain").await, b"target");
    // `..` after a symlink goes to the target's parent.
    assert_eq!(read(&fs, "/abs/dir/../dir/f").await, b"target");
    ok(&fs, "symlink", json!({"target": "/real/dir", "linkPath": "/deep"})).await;
    assert_eq!(ok(&fs, "realpath", json!({"path": "/deep/.."})).await, Some(json!("/real")));

    ok(&fs, "symlink", json!({"target": "loop2", "linkPath": "/loop1"})).await;
    ok(&fs, "symlink", json!({"target": "loop1", "linkPath": "/loop2"})).await;
    ok(&fs, "symlink", json!({"target": "self/x", "linkPath": "/self"})).await;
    for op in ["stat", "readFile", "realpath", "readDir"] {
        fails(&fs, op, json!({"path": "/loop1"}), "ELOOP").await;
    }
    fails(&fs, "stat", json!({"path": "/self"}), "ELOOP").await;
    fails(&fs, "writeFile", json!({"path": "/loop1", "content": ""}), "ELOOP").await;
    assert_eq!(stat(&fs, "lstat", "/loop1").await["isSymbolicLink"], true);
    assert_eq!(ok(&fs, "readlink", json!({"path": "/loop1"})).await, Some(json!("loop2")));
    // A chain of 40 links resolves, 41 is a loop.
    write(&fs, "/end", b"end").await;
    ok(&fs, "symlink", json!({"target": "end", "linkPath": "/c0"})).await;
    for i in 1..41 {
        ok(&fs, "symlink", json!({"target": format!("c{}", i - 1), "linkPath": format!("/c{i}")})).await;
    }
    assert_eq!(read(&fs, "/c39").await, b"end");
    fails(&fs, "readFile", json!({"path": "/c40"}), "ELOOP").await;
    // remove and rename act on the link itself.
    ok(&fs, "rename", json!({"oldPath": "/abs", "newPath": "/abs2"})).await;
    assert_eq!(ok(&fs, "readlink", json!({"path": "/abs2"})).await, Some(json!("/real")));
    ok(&fs, "removeFile", json!({"path": "/loop1"})).await;
    ok(&fs, "removeFile", json!({"path": "/abs2"})).await;
    assert_eq!(read(&fs, "/real/dir/f").await, b"target");
    assert_clean(&fs).await;
}

// ---- chunks ------------------------------------------------------------------------------

#[tokio::test]
async fn chunk_boundaries() {
    let (sql, fs) = small_fs().await;
    let count = |ino: &Value| sql.scalar(&format!("SELECT COUNT(*) FROM fs_chunks WHERE ino = {ino}"));
    for (len, chunks) in [(0usize, 0i64), (1, 1), (15, 1), (16, 1), (17, 2), (32, 2), (33, 3)] {
        let path = format!("/f{len}");
        let data = pattern(len, len as u8);
        write(&fs, &path, &data).await;
        let ino = stat(&fs, "stat", &path).await["ino"].clone();
        assert_eq!(count(&ino), chunks, "{len} bytes");
        assert_eq!(read(&fs, &path).await, data, "{len} bytes");
    }
    let last = sql.blob("SELECT data FROM fs_chunks WHERE ino = (SELECT ino FROM fs_dirents WHERE name = 'f17') AND idx = 1");
    assert_eq!(last.len(), 1, "chunk + 1 leaves a one-byte last chunk");
    // Binary content, every byte value, survives the hex and base64 round trips.
    let all: Vec<u8> = (0..=255u8).collect();
    write(&fs, "/bytes", &all).await;
    assert_eq!(read(&fs, "/bytes").await, all);
    // All-zero chunks are holes.
    let mut sparse = vec![0u8; 64];
    sparse[40] = 1;
    write(&fs, "/zeros", &sparse).await;
    let ino = stat(&fs, "stat", "/zeros").await["ino"].clone();
    assert_eq!(count(&ino), 1);
    assert_eq!(read(&fs, "/zeros").await, sparse);
    assert_clean(&fs).await;
}

#[tokio::test]
async fn pwrite_touches_only_needed_chunks() {
    let (sql, fs) = small_fs().await;
    write(&fs, "/f", &pattern(160, 5)).await; // 10 chunks
    let ino = stat(&fs, "stat", "/f").await["ino"].as_i64().unwrap();
    sql.audit_chunks();
    ok(&fs, "pwrite", json!({"path": "/f", "offset": 66, "content": b64(b"abc")})).await;
    assert_eq!(sql.take_chunk_audit(), vec![("update".to_owned(), ino, 4)]);
    ok(&fs, "pwrite", json!({"path": "/f", "offset": 78, "content": b64(b"0123456789")})).await;
    assert_eq!(sql.take_chunk_audit(), vec![("update".to_owned(), ino, 4), ("update".to_owned(), ino, 5)]);
    let mut expected = pattern(160, 5);
    expected[66..69].copy_from_slice(b"abc");
    expected[78..88].copy_from_slice(b"0123456789");
    assert_eq!(read(&fs, "/f").await, expected);
    // Appending touches the last chunk and new ones only.
    ok(&fs, "pwrite", json!({"path": "/f", "offset": 160, "content": b64(b"tail")})).await;
    assert_eq!(sql.take_chunk_audit(), vec![("insert".to_owned(), ino, 10)]);
    assert_clean(&fs).await;
}

#[tokio::test]
async fn sparse_pwrite_beyond_eof_reads_zeros() {
    let (sql, fs) = small_fs().await;
    write(&fs, "/f", b"head").await;
    let ino = stat(&fs, "stat", "/f").await["ino"].as_i64().unwrap();
    sql.audit_chunks();
    ok(&fs, "pwrite", json!({"path": "/f", "offset": 100, "content": b64(b"far")})).await;
    assert_eq!(sql.take_chunk_audit(), vec![("insert".to_owned(), ino, 6)], "no zero chunks are written");
    let data = read(&fs, "/f").await;
    assert_eq!(data.len(), 103);
    assert_eq!(&data[..4], b"head");
    assert!(data[4..100].iter().all(|b| *b == 0));
    assert_eq!(&data[100..], b"far");
    // A write into a hole creates just that chunk; one that starts past a
    // short chunk's end pads it with zeros.
    ok(&fs, "pwrite", json!({"path": "/f", "offset": 8, "content": b64(b"x")})).await;
    assert_eq!(sql.take_chunk_audit(), vec![("update".to_owned(), ino, 0)]);
    ok(&fs, "pwrite", json!({"path": "/f", "offset": 40, "content": b64(b"y")})).await;
    assert_eq!(sql.take_chunk_audit(), vec![("insert".to_owned(), ino, 2)]);
    let data = read(&fs, "/f").await;
    assert_eq!(&data[..9], b"head\0\0\0\0x");
    assert_eq!(data[40], b'y');
    assert_eq!(data.iter().filter(|b| **b != 0).count(), 4 + 1 + 1 + 3);
    assert_clean(&fs).await;
}

#[tokio::test]
async fn truncate_touches_only_needed_chunks() {
    let (sql, fs) = small_fs().await;
    write(&fs, "/f", &pattern(160, 5)).await;
    let ino = stat(&fs, "stat", "/f").await["ino"].as_i64().unwrap();
    sql.audit_chunks();
    ok(&fs, "truncate", json!({"path": "/f", "length": 72})).await;
    let mut audit = sql.take_chunk_audit();
    audit.sort();
    let mut expected: Vec<(String, i64, i64)> = (5..10).map(|idx| ("delete".to_owned(), ino, idx)).collect();
    expected.push(("update".to_owned(), ino, 4));
    expected.sort();
    assert_eq!(audit, expected);
    ok(&fs, "truncate", json!({"path": "/f", "length": 1 << 30})).await;
    assert!(sql.take_chunk_audit().is_empty(), "growing writes nothing");
    assert_eq!(stat(&fs, "stat", "/f").await["size"], 1 << 30);
    ok(&fs, "truncate", json!({"path": "/f", "length": 64})).await;
    assert_eq!(sql.take_chunk_audit(), vec![("delete".to_owned(), ino, 4)]);
    assert_eq!(read(&fs, "/f").await, &pattern(160, 5)[..64]);
    assert_clean(&fs).await;
}

#[tokio::test]
async fn pread_reads_only_needed_chunks() {
    let (sql, fs) = small_fs().await;
    write(&fs, "/f", &pattern(160, 5)).await;
    sql.take_chunk_rows_read();
    ok(&fs, "pread", json!({"path": "/f", "offset": 70, "length": 4})).await;
    assert_eq!(sql.take_chunk_rows_read(), 1);
    ok(&fs, "pread", json!({"path": "/f", "offset": 20, "length": 20})).await;
    assert_eq!(sql.take_chunk_rows_read(), 2);
    ok(&fs, "pread", json!({"path": "/f", "offset": 30, "length": 20})).await;
    assert_eq!(sql.take_chunk_rows_read(), 3);
    ok(&fs, "pread", json!({"path": "/f", "offset": 200, "length": 20})).await;
    assert_eq!(sql.take_chunk_rows_read(), 0);
    ok(&fs, "stat", json!({"path": "/f"})).await;
    assert!(sql.queries.lock().unwrap().is_empty(), "metadata is answered from the cache");
    assert_clean(&fs).await;
}

#[tokio::test]
async fn reads_are_bounded() {
    let (sql, fs) = small_fs().await;
    write(&fs, "/f", b"x").await;
    ok(&fs, "truncate", json!({"path": "/f", "length": 1u64 << 40})).await; // a 1 TiB hole
    assert_eq!(sql.scalar("SELECT COUNT(*) FROM fs_chunks"), 1);
    fails(&fs, "readFile", json!({"path": "/f"}), "EFBIG").await;
    // What the sidecar's frame can carry is read whole; one byte more is
    // refused at once rather than sent where it cannot arrive.
    let limit = super::wire::SIDECAR_READ_MAX;
    write(&fs, "/g", b"").await;
    ok(&fs, "truncate", json!({"path": "/g", "length": limit})).await;
    let whole = ok(&fs, "readFile", json!({"path": "/g"})).await.unwrap();
    assert_eq!(BASE64.decode(whole.as_str().unwrap()).unwrap().len() as u64, limit);
    ok(&fs, "truncate", json!({"path": "/g", "length": limit + 1})).await;
    fails(&fs, "readFile", json!({"path": "/g"}), "EFBIG").await;
    assert_eq!(fs.read_file("/g").await.unwrap().len() as u64, limit + 1, "client reads are not limited by the frame");
    let window = fs.pread("/f", 0, 1 << 40).await.unwrap();
    assert_eq!(window.len() as u64, super::MAX_READ, "pread returns a short read");
    assert_eq!(window[0], b'x');
    assert_clean(&fs).await;
}

#[tokio::test]
async fn huge_pwrite_is_split_at_chunk_boundaries() {
    let (sql, fs) = fs_with(16, FsOptions { max_batch_bytes: 4096 + 3 * (32 + 400) }).await; // 3 chunks per batch
    write(&fs, "/f", b"").await;
    let before = sql.execs.lock().unwrap().len();
    let data = pattern(100, 2);
    ok(&fs, "pwrite", json!({"path": "/f", "offset": 5, "content": b64(&data)})).await;
    // Offsets 5..105 cover chunks 0..=6, three per batch.
    assert_eq!(sql.execs.lock().unwrap().len() - before, 3);
    let mut expected = vec![0u8; 5];
    expected.extend_from_slice(&data);
    assert_eq!(read(&fs, "/f").await, expected);
    assert_clean(&fs).await;
}

// ---- copy-on-write of big files, recovery ------------------------------------------

fn cow_options() -> FsOptions {
    FsOptions { max_batch_bytes: 4096 + 4 * (32 + 400) } // 4 chunks of 16 bytes per batch
}

#[tokio::test]
async fn big_write_file_goes_through_copy_on_write() {
    let (sql, fs) = fs_with(16, cow_options()).await;
    let big = pattern(16 * 20, 1);
    let before = sql.execs.lock().unwrap().len();
    write(&fs, "/big", &big).await;
    let batches = sql.execs.lock().unwrap()[before..].to_vec();
    assert_eq!(batches.len(), 5 + 1, "five staging batches and the switch");
    assert!(batches.iter().all(|b| b.starts_with("BEGIN IMMEDIATE;")));
    assert!(!batches[0].contains("fs_dirents"), "staging creates no entry");
    assert!(batches[5].contains("fs_dirents") && !batches[5].contains("X'"), "the switch is small");
    assert_eq!(read(&fs, "/big").await, big);
    assert_clean(&fs).await;

    // Replacing an existing file keeps its inode, so hard links follow.
    ok(&fs, "link", json!({"oldPath": "/big", "newPath": "/alias"})).await;
    let ino = stat(&fs, "stat", "/big").await["ino"].clone();
    let bigger = pattern(16 * 30 + 3, 9);
    write(&fs, "/big", &bigger).await;
    assert_eq!(stat(&fs, "stat", "/big").await["ino"], ino);
    assert_eq!(read(&fs, "/alias").await, bigger);
    assert_eq!(sql.scalar(&format!("SELECT COUNT(*) FROM fs_chunks WHERE ino = {ino}")), 31);
    assert_eq!(sql.scalar("SELECT COUNT(*) FROM fs_inodes WHERE nlink = 0"), 0);
    assert_clean(&fs).await;
}

#[tokio::test]
async fn interrupted_copy_on_write_keeps_old_content() {
    let (sql, fs) = fs_with(16, cow_options()).await;
    write(&fs, "/f", b"old content").await;
    let big = pattern(16 * 20, 4);
    // The switch fails: readers keep the old content, the staged inode is
    // discarded.
    sql.fail_when(|batch| batch.contains("UPDATE fs_chunks SET ino"));
    fails(&fs, "writeFile", json!({"path": "/f", "content": b64(&big)}), "EIO").await;
    sql.stop_failing();
    assert_eq!(read(&fs, "/f").await, b"old content");
    assert_clean(&fs).await;

    // Staging fails half-way and so does the cleanup (as if the process
    // died): the staged inode stays until recover() removes it.
    let mut staged_batches = 0;
    sql.fail_when(move |batch| {
        if batch.contains("DELETE FROM fs_inodes WHERE ino") && batch.contains("nlink = 0") {
            return true; // the best-effort cleanup
        }
        if batch.contains("INSERT INTO fs_chunks") {
            staged_batches += 1;
            return staged_batches == 3;
        }
        false
    });
    fails(&fs, "writeFile", json!({"path": "/f", "content": b64(&big)}), "EIO").await;
    sql.stop_failing();
    assert_eq!(read(&fs, "/f").await, b"old content");
    assert_eq!(sql.scalar("SELECT COUNT(*) FROM fs_inodes WHERE nlink = 0"), 1);
    let report = fs.check().await.unwrap();
    assert!(matches!(report.problems.as_slice(), [Problem::Unreachable { .. }]), "{:?}", report.problems);
    assert_eq!(fs.recover().await.unwrap(), 1);
    assert_eq!(sql.scalar("SELECT COUNT(*) FROM fs_inodes WHERE nlink = 0"), 0);
    assert_clean(&fs).await;
    write(&fs, "/f", &big).await;
    assert_eq!(read(&fs, "/f").await, big);
    assert_clean(&fs).await;
}

#[tokio::test]
async fn open_recovers_staged_inodes_and_reloads_everything() {
    let (sql, fs) = small_fs().await;
    ok(&fs, "mkdir", json!({"path": "/d"})).await;
    write(&fs, "/d/f", b"durable").await;
    ok(&fs, "symlink", json!({"target": "d/f", "linkPath": "/l"})).await;
    let last = sql.scalar("SELECT MAX(ino) FROM fs_inodes");
    let next = last + 1;
    sql.raw(&format!(
        "INSERT INTO fs_inodes VALUES ({next}, 1, 33188, 0, 0, 16, 0, 0, 0, 0, 0, NULL);
         INSERT INTO fs_chunks VALUES ({next}, 0, X'00112233');"
    ));
    drop(fs);
    let fs = Fs::open(sql.clone(), FsOptions::default()).await.unwrap();
    assert_eq!(sql.scalar("SELECT COUNT(*) FROM fs_inodes WHERE nlink = 0"), 0);
    assert_eq!(read(&fs, "/l").await, b"durable");
    assert_eq!(fs.chunk_size(), 16);
    write(&fs, "/new", b"x").await;
    assert!(stat(&fs, "stat", "/new").await["ino"].as_i64().unwrap() > last, "new inodes get fresh numbers");
    assert_clean(&fs).await;
}

#[tokio::test]
async fn migration_creates_root_and_default_chunk_size() {
    let sql = MemSql::migrated();
    assert_eq!(sql.scalar("SELECT CAST(value AS INTEGER) FROM agentos_actor_meta WHERE key = 'fs_chunk_size'"), 16384);
    assert_eq!(sql.scalar("SELECT mode FROM fs_inodes WHERE ino = 1"), 0o40755);
    assert!(sql.scalar("SELECT mtime_ns FROM fs_inodes WHERE ino = 1") > 1_700_000_000_000_000_000);
    let fs = Fs::open(sql.clone(), FsOptions::default()).await.unwrap();
    assert_eq!(fs.chunk_size(), 16384);
    let big = pattern(40_000, 3);
    write(&fs, "/f", &big).await;
    assert_eq!(sql.scalar("SELECT COUNT(*) FROM fs_chunks"), 3);
    assert_eq!(read(&fs, "/f").await, big);
    let report = assert_clean(&fs).await;
    assert_eq!((report.inodes, report.entries, report.chunks), (2, 1, 3));
}

// ---- the checker ---------------------------------------------------------------------------

/// A small tree: /d (dir), /d/f (file, 2 chunks), /l (symlink), /h (hard link of /d/f).
async fn checker_fixture() -> (Arc<MemSql>, TestFs, i64) {
    let (sql, fs) = small_fs().await;
    ok(&fs, "mkdir", json!({"path": "/d"})).await;
    write(&fs, "/d/f", &pattern(20, 1)).await;
    ok(&fs, "symlink", json!({"target": "d/f", "linkPath": "/l"})).await;
    ok(&fs, "link", json!({"oldPath": "/d/f", "newPath": "/h"})).await;
    assert_clean(&fs).await;
    let f = stat(&fs, "stat", "/d/f").await["ino"].as_i64().unwrap();
    (sql, fs, f)
}

async fn problems_after(corruption: impl FnOnce(&MemSql, i64)) -> Vec<Problem> {
    let (sql, _fs, f) = checker_fixture().await;
    corruption(&sql, f);
    super::check(&sql).await.unwrap().problems
}

#[tokio::test]
async fn checker_detects_each_corruption() {
    let p = problems_after(|sql, _| sql.raw("DELETE FROM fs_inodes WHERE ino = 1")).await;
    assert!(p.contains(&Problem::MissingRoot), "{p:?}");
    let p = problems_after(|sql, _| sql.raw("UPDATE fs_inodes SET kind = 1, mode = 33188, nlink = 1 WHERE ino = 1")).await;
    assert!(p.contains(&Problem::RootNotDirectory), "{p:?}");
    let p = problems_after(|sql, _| sql.raw("INSERT INTO fs_dirents VALUES (1, 'loop', 1)")).await;
    assert!(p.iter().any(|x| matches!(x, Problem::RootHasEntry { .. })), "{p:?}");
    let p = problems_after(|sql, _| sql.raw("INSERT INTO fs_dirents VALUES (1, 'ghost', 999)")).await;
    assert!(p.contains(&Problem::DanglingEntry { parent: 1, name: "ghost".into(), ino: 999 }), "{p:?}");
    let p = problems_after(|sql, f| sql.raw(&format!("INSERT INTO fs_dirents VALUES ({f}, 'x', 1000)"))).await;
    assert!(p.iter().any(|x| matches!(x, Problem::EntryOutsideDirectory { .. })), "{p:?}");
    let p = problems_after(|sql, _| sql.raw("UPDATE fs_dirents SET name = 'a/b' WHERE name = 'l'")).await;
    assert!(p.iter().any(|x| matches!(x, Problem::BadName { .. })), "{p:?}");
    let p = problems_after(|sql, _| {
        sql.raw("INSERT INTO fs_dirents SELECT 1, 'd2', ino FROM fs_dirents WHERE name = 'd'; UPDATE fs_inodes SET nlink = 4 WHERE ino = 1")
    })
    .await;
    assert!(p.iter().any(|x| matches!(x, Problem::DirectoryLinkedTwice { entries: 2, .. })), "{p:?}");
    let p = problems_after(|sql, f| sql.raw(&format!("DELETE FROM fs_dirents WHERE ino = {f}"))).await;
    assert!(p.contains(&Problem::Unreachable { ino: 0 }) || p.iter().any(|x| matches!(x, Problem::Unreachable { .. })), "{p:?}");
    assert!(p.iter().any(|x| matches!(x, Problem::WrongNlink { expected: 0, .. })), "{p:?}");
    let p = problems_after(|sql, f| sql.raw(&format!("UPDATE fs_inodes SET nlink = 1 WHERE ino = {f}"))).await;
    assert!(p.iter().any(|x| matches!(x, Problem::WrongNlink { stored: 1, expected: 2, .. })), "{p:?}");
    let p = problems_after(|sql, _| sql.raw("UPDATE fs_inodes SET nlink = 9 WHERE ino = 1")).await;
    assert!(p.contains(&Problem::WrongNlink { ino: 1, stored: 9, expected: 3 }), "{p:?}");
    let p = problems_after(|sql, f| sql.raw(&format!("UPDATE fs_inodes SET mode = 16877 WHERE ino = {f}"))).await;
    assert!(p.iter().any(|x| matches!(x, Problem::ModeKindMismatch { .. })), "{p:?}");
    let p = problems_after(|sql, _| sql.raw("UPDATE fs_inodes SET size = 99 WHERE kind = 3")).await;
    assert!(p.iter().any(|x| matches!(x, Problem::BadSymlink { .. })), "{p:?}");
    let p = problems_after(|sql, f| sql.raw(&format!("UPDATE fs_inodes SET target = X'41' WHERE ino = {f}"))).await;
    assert!(p.iter().any(|x| matches!(x, Problem::TargetOnNonSymlink { .. })), "{p:?}");
    let p = problems_after(|sql, _| sql.raw("UPDATE fs_inodes SET size = 4096 WHERE ino = 1")).await;
    assert!(p.contains(&Problem::DirectoryWithSize { ino: 1, size: 4096 }), "{p:?}");
    let p = problems_after(|sql, _| sql.raw("INSERT INTO fs_chunks VALUES (4242, 0, X'01')")).await;
    assert!(p.contains(&Problem::OrphanChunk { ino: 4242, idx: 0 }), "{p:?}");
    let p = problems_after(|sql, _| sql.raw("INSERT INTO fs_chunks VALUES (1, 0, X'01')")).await;
    assert!(p.contains(&Problem::OrphanChunk { ino: 1, idx: 0 }), "chunk of a directory: {p:?}");
    let p = problems_after(|sql, f| sql.raw(&format!("UPDATE fs_chunks SET data = zeroblob(17) WHERE ino = {f} AND idx = 0"))).await;
    assert!(p.iter().any(|x| matches!(x, Problem::BadChunkLength { len: 17, .. })), "{p:?}");
    let p = problems_after(|sql, f| sql.raw(&format!("UPDATE fs_chunks SET data = X'' WHERE ino = {f} AND idx = 0"))).await;
    assert!(p.iter().any(|x| matches!(x, Problem::BadChunkLength { len: 0, .. })), "{p:?}");
    let p = problems_after(|sql, f| sql.raw(&format!("INSERT INTO fs_chunks VALUES ({f}, 5, X'01')"))).await;
    assert!(p.iter().any(|x| matches!(x, Problem::ChunkBeyondSize { idx: 5, .. })), "{p:?}");
    let p = problems_after(|sql, f| sql.raw(&format!("UPDATE fs_inodes SET size = 17 WHERE ino = {f}"))).await;
    assert!(p.iter().any(|x| matches!(x, Problem::ChunkBeyondSize { idx: 1, len: 4, size: 17, .. })), "{p:?}");
    let p = problems_after(|sql, _| sql.raw("INSERT INTO fs_inodes VALUES (77, 7, 0, 0, 0, 0, 1, 0, 0, 0, 0, NULL)")).await;
    assert!(p.iter().any(|x| matches!(x, Problem::UnreadableInode { ino: 77, .. })), "{p:?}");

    // The cache is compared with storage too.
    let (sql, fs, f) = checker_fixture().await;
    sql.raw(&format!("UPDATE fs_inodes SET uid = 5 WHERE ino = {f}"));
    assert!(fs.check().await.unwrap().problems.contains(&Problem::CacheMismatch));
    // A fresh filesystem is clean, and the root cannot be reached twice.
    let (_sql, fs) = small_fs().await;
    assert_eq!(assert_clean(&fs).await.inodes, 1);
    assert_eq!(fs.stat("/").await.unwrap().ino, ROOT);
}
