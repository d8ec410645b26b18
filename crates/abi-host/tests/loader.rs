//! Loading plugins with dlopen: the workspace's test plugin loads; files that
//! are not ABI v13 plugins are refused with an error that says why.

use std::path::PathBuf;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

fn test_plugin() -> PathBuf {
    let path = target_dir().join("debug/libtest_plugin.so");
    assert!(path.exists(), "{} is missing: build the workspace first (./scripts/test does)", path.display());
    path
}

#[test]
fn the_test_plugin_loads_once_per_path() {
    let first = abi_host::load(&test_plugin()).expect("load test plugin");
    let second = abi_host::load(&test_plugin()).expect("load again");
    assert!(std::sync::Arc::ptr_eq(&first, &second), "a path is loaded and initialised once");
    first.factory("{}", "").expect("factory with empty config");
}

#[test]
fn a_factory_error_carries_the_plugin_message() {
    let plugin = abi_host::load(&test_plugin()).unwrap();
    let err = plugin.factory("{not json", "").err().expect("bad config is refused");
    let text = format!("{err:#}");
    assert!(text.contains("factory_new failed"), "{text}");
    assert!(text.len() > "factory_new failed: ".len() + 10, "the plugin's own message is kept: {text}");
}

#[test]
fn a_library_without_the_abi_is_refused() {
    // libtest_plugin's rlib sibling is not a cdylib; use a real shared object
    // that exists everywhere instead: the C library.
    let libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("a libc.so.6 on this machine");
    let err = abi_host::load(&libc).err().expect("libc is not a plugin");
    let text = format!("{err:#}");
    assert!(text.contains("not an ABI v13 actor plugin") && text.contains("rivet_actor_abi_magic"), "{text}");
}

#[test]
fn missing_and_non_library_files_are_clear_errors() {
    let err = abi_host::load(std::path::Path::new("/no/such/plugin.so")).err().unwrap();
    assert!(format!("{err:#}").contains("plugin not found: /no/such/plugin.so"), "{err:#}");
    let not_elf = std::env::temp_dir().join(format!("not-a-plugin-{}.so", std::process::id()));
    std::fs::write(&not_elf, b"hello").unwrap();
    let err = abi_host::load(&not_elf).err().unwrap();
    std::fs::remove_file(&not_elf).unwrap();
    assert!(format!("{err:#}").contains("dlopen"), "{err:#}");
}
