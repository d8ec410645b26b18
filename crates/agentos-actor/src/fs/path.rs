//! Path parsing. Paths on the wire are absolute UTF-8 strings; `.` and empty
//! components are dropped here, while `..` is kept and resolved physically
//! during the walk (after a symlink it goes to the link target's parent, as
//! POSIX requires), see `Meta::resolve`.

use super::error::Errno;

/// Longest name of one directory entry, in bytes (POSIX `NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// Longest path, in bytes, including the terminating NUL (POSIX `PATH_MAX`).
pub const PATH_MAX: usize = 4096;

/// A parsed absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsPath {
    /// Components without `.` and empty ones; `..` kept.
    pub comps: Vec<String>,
    /// The path ends with `/` (or `/.`): the final entry must be a directory,
    /// and a final symlink is followed.
    pub trailing_slash: bool,
}

/// Parses an absolute path. Relative paths are `EINVAL` (the sidecar always
/// sends absolute ones), an empty path is `ENOENT`, NUL bytes are `EINVAL`,
/// over-long paths or names are `ENAMETOOLONG`.
pub fn parse(path: &str) -> Result<FsPath, Errno> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    if !path.starts_with('/') {
        return Err(Errno::EINVAL);
    }
    let parsed = split(path)?;
    Ok(parsed)
}

/// Splits a symlink target, which may be relative. Returns the components
/// and whether it is absolute.
pub fn parse_target(target: &str) -> Result<(FsPath, bool), Errno> {
    if target.is_empty() {
        return Err(Errno::ENOENT);
    }
    Ok((split(target)?, target.starts_with('/')))
}

fn split(path: &str) -> Result<FsPath, Errno> {
    if path.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if path.contains('\0') {
        return Err(Errno::EINVAL);
    }
    let mut comps = Vec::new();
    let mut last_raw = "";
    for raw in path.split('/') {
        last_raw = raw;
        if raw.is_empty() || raw == "." {
            continue;
        }
        if raw.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        comps.push(raw.to_owned());
    }
    let trailing_slash = !comps.is_empty() && (last_raw.is_empty() || last_raw == ".");
    Ok(FsPath { comps, trailing_slash })
}

/// Checks a name about to become a directory entry.
pub fn check_new_name(name: &str) -> Result<(), Errno> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Errno::EINVAL);
    }
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes() {
        let p = parse("//a/./b//c/").unwrap();
        assert_eq!(p.comps, ["a", "b", "c"]);
        assert!(p.trailing_slash);
        let p = parse("/a/../b").unwrap();
        assert_eq!(p.comps, ["a", "..", "b"]);
        assert!(!p.trailing_slash);
        let root = parse("/").unwrap();
        assert!(root.comps.is_empty());
        assert!(!root.trailing_slash);
        assert!(parse("/a/.").unwrap().trailing_slash);
    }

    #[test]
    fn rejects_bad_paths() {
        assert_eq!(parse(""), Err(Errno::ENOENT));
        assert_eq!(parse("a/b"), Err(Errno::EINVAL));
        assert_eq!(parse("/a\0b"), Err(Errno::EINVAL));
        assert_eq!(parse(&format!("/{}", "n".repeat(256))), Err(Errno::ENAMETOOLONG));
        assert!(parse(&format!("/{}", "n".repeat(255))).is_ok());
        assert_eq!(parse(&"/a".repeat(2048)), Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn new_names() {
        assert_eq!(check_new_name(".."), Err(Errno::EINVAL));
        assert_eq!(check_new_name(&"x".repeat(256)), Err(Errno::ENAMETOOLONG));
        assert!(check_new_name("ok name").is_ok());
    }
}
