//! The pinned artifact table: the single source of what gets provisioned.

use std::fmt;

use crate::Component;

/// Where the interesting file lives inside an extracted npm tarball.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expose {
    /// A fixed path relative to the extraction root (npm tarballs put
    /// everything under `package/`).
    File(&'static str),
    /// A fixed path that must be executable (chmod 0o755 after extraction,
    /// whatever mode the tarball recorded).
    Executable(&'static str),
    /// An executable whose directory inside the package is not pinned: the
    /// unique file with this name is searched for after extraction and its
    /// path is recorded in the stamp.
    FindExecutable(&'static str),
}

impl Expose {
    pub(crate) fn is_executable(self) -> bool {
        !matches!(self, Expose::File(_))
    }
}

/// One pinned npm tarball. Everything about it (what, where from, what hash,
/// what to hand back) lives here so there is exactly one place to bump a pin.
#[derive(Debug)]
pub struct Artifact {
    pub(crate) component: Component,
    pub(crate) name: &'static str,
    pub(crate) version: &'static str,
    pub(crate) url: &'static str,
    pub(crate) integrity: &'static str,
    pub(crate) expose: Expose,
}

impl Artifact {
    /// npm package name, e.g. `@agentos-software/pi`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Pinned npm version.
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// Which [`Component`] this artifact belongs to.
    pub fn component(&self) -> Component {
        self.component
    }

    /// Directory name inside the cache: `<sanitized-name>@<version>`.
    pub(crate) fn cache_key(&self) -> String {
        format!("{}@{}", sanitize(self.name), self.version)
    }
}

impl fmt::Display for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// Turns an npm name into one path component: drop the scope's `@`, and map
/// anything outside `[A-Za-z0-9._-]` (notably the scope's `/`) to `_`.
pub(crate) fn sanitize(name: &str) -> String {
    name.trim_start_matches('@')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Shorthand for the WASM command packages, which all expose the same file.
const fn command(
    name: &'static str,
    version: &'static str,
    url: &'static str,
    integrity: &'static str,
) -> Artifact {
    Artifact {
        component: Component::Commands,
        name,
        version,
        url,
        integrity,
        expose: Expose::File("package/dist/package.aospkg"),
    }
}

/// The pins. Commands are the eight packages behind
/// `@agentos-software/common@0.2.21`, in its dependency order.
pub(crate) static ARTIFACTS: &[Artifact] = &[
    Artifact {
        component: Component::Engine,
        name: "@rivetkit/engine-cli-linux-x64-musl",
        version: "2.3.19",
        url: "https://registry.npmjs.org/@rivetkit/engine-cli-linux-x64-musl/-/engine-cli-linux-x64-musl-2.3.19.tgz",
        integrity: "sha512-8aujounRoOmh1cdbLEd8SdaOZ6MYjE6lTC5UC8fjcqdk9lpeIdvgCEzTjUJYlslXFaiTv11wN70k2GfSxf5Rxg==",
        expose: Expose::Executable("package/rivet-engine"),
    },
    Artifact {
        component: Component::Sidecar,
        name: "@rivet-dev/agentos-sidecar-linux-x64-gnu",
        version: "0.2.21",
        url: "https://registry.npmjs.org/@rivet-dev/agentos-sidecar-linux-x64-gnu/-/agentos-sidecar-linux-x64-gnu-0.2.21.tgz",
        integrity: "sha512-/K716/d0v4R1VdKQcHL9rYivli92E4p9LbVQQfl2M382rA+tjlLuB0hnK0YNZAJyBt83+K7/INkkTUfjFp3hSQ==",
        expose: Expose::FindExecutable("agentos-sidecar"),
    },
    command(
        "@agentos-software/coreutils",
        "0.3.4",
        "https://registry.npmjs.org/@agentos-software/coreutils/-/coreutils-0.3.4.tgz",
        "sha512-tGd0gQjUjHnm+5KgOBwidwUtlkKnl9biQuD7X2sZl15VOhYqUJpnyLF33h/nF3r9WtOTclSiLj/dc2xCxmAXnw==",
    ),
    command(
        "@agentos-software/sed",
        "0.3.4",
        "https://registry.npmjs.org/@agentos-software/sed/-/sed-0.3.4.tgz",
        "sha512-J10nZnZmme2SvXK5WMK2unQlOVncMQVUCS20GZB579a2gNoayLJYHGvfJ9a4+42wOHgDKL1u74byWlydCkEyOQ==",
    ),
    command(
        "@agentos-software/grep",
        "0.3.4",
        "https://registry.npmjs.org/@agentos-software/grep/-/grep-0.3.4.tgz",
        "sha512-Bta2Ljl+kCX/3Bjg06Q9N9LPRcf13S92lHRaYG+CeGVDXabIIgkHLUGIQlI1OKuIr7IRAktjgelUAuJnxGFvvw==",
    ),
    command(
        "@agentos-software/gawk",
        "0.3.4",
        "https://registry.npmjs.org/@agentos-software/gawk/-/gawk-0.3.4.tgz",
        "sha512-NlU6nGxoqIUc1I2zdBHFwH04gE0tBygP2FcBO12VBptty7lbgq1CNLk909jIcSNFEwlm3VRPHeZNkbdVKZ2Ujg==",
    ),
    command(
        "@agentos-software/findutils",
        "0.3.4",
        "https://registry.npmjs.org/@agentos-software/findutils/-/findutils-0.3.4.tgz",
        "sha512-wjBWE3lkXe70fRj6da1+2MM/7KlPcBRhr2BycvgvAtglOT/0PtabFU9CrDuX3Vm/8acU/8tw35+WeitPOLi9mg==",
    ),
    command(
        "@agentos-software/diffutils",
        "0.3.4",
        "https://registry.npmjs.org/@agentos-software/diffutils/-/diffutils-0.3.4.tgz",
        "sha512-a5Do+ERMdHPwT0Vrp35fxSgrsJNK8wCsYX8dOAomH9N+xJyV2Hb7/LLyp7XxqGk9BEjMeA6UhbH5ZY/HAlx5sQ==",
    ),
    command(
        "@agentos-software/tar",
        "0.3.5",
        "https://registry.npmjs.org/@agentos-software/tar/-/tar-0.3.5.tgz",
        "sha512-hSf6PY4q1luIomFSDgVHxVDDIPdAVZxdgwrQFEYH4aIE6TXX9qatVmzR36uYLWpnFGAZTR6srREGoTnmOGV4Lg==",
    ),
    command(
        "@agentos-software/gzip",
        "0.3.4",
        "https://registry.npmjs.org/@agentos-software/gzip/-/gzip-0.3.4.tgz",
        "sha512-l7Y/Vwiwsqgna68yYwdNCnUBPGBg5zdmtjEFeG3hnDDFLe/02h17q0gUIqJmDBIAy1q9GoizqcFi7zXO2xygKg==",
    ),
    Artifact {
        component: Component::Pi,
        name: "@agentos-software/pi",
        version: "0.2.7",
        url: "https://registry.npmjs.org/@agentos-software/pi/-/pi-0.2.7.tgz",
        integrity: "sha512-nOdwksByJgTqt92Ya84CzTGxpVFwGI6gkGWaCD/mmvP11JRA++1nshNdbig2mtiaxT7VG3ovWJmK7ZLTTzkhPA==",
        expose: Expose::File("package/dist/package.aospkg"),
    },
    // Same layout as Pi: the `.aospkg` (node_modules inside) sits at a
    // fixed path in the tarball.
    Artifact {
        component: Component::ClaudeCode,
        name: "@agentos-software/claude-code",
        version: "0.2.7",
        url: "https://registry.npmjs.org/@agentos-software/claude-code/-/claude-code-0.2.7.tgz",
        integrity: "sha512-gXmqqOUWT98QvLkQXHn1UU8OOvqMO8BRSj+0PT99mOL6XNpBlPW6L065FJ9dC4IwJC5xeGzB1XFevjOdP7LwQg==",
        expose: Expose::File("package/dist/package.aospkg"),
    },
    // OpenCode passes ACP stdio MCP servers on to the agent (Claude Code
    // 0.2.7's adapter does not), so the tests use it for stdio MCP.
    Artifact {
        component: Component::OpenCode,
        name: "@agentos-software/opencode",
        version: "0.2.7",
        url: "https://registry.npmjs.org/@agentos-software/opencode/-/opencode-0.2.7.tgz",
        integrity: "sha512-lZspCiMgM0+kPAA08CEvyNy8lfBx463wObKpAwbYyaVvc0KfGvbAPS6VmnuZQWmaBmJJuRMtSo14nmb8XCD16g==",
        expose: Expose::File("package/dist/package.aospkg"),
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrity::Integrity;
    use std::collections::HashSet;

    #[test]
    fn table_is_self_consistent() {
        let mut keys = HashSet::new();
        for a in ARTIFACTS {
            // The URL is the registry's canonical tarball URL for name@version,
            // so a bumped version cannot silently keep an old URL.
            let base = a.name.rsplit('/').next().unwrap();
            let expected = format!(
                "https://registry.npmjs.org/{}/-/{}-{}.tgz",
                a.name, base, a.version
            );
            assert_eq!(a.url, expected, "{a}");
            Integrity::parse(a.integrity).unwrap_or_else(|e| panic!("{a}: {e:#}"));
            assert!(keys.insert(a.cache_key()), "duplicate cache key for {a}");
        }
        let count = |c| ARTIFACTS.iter().filter(|a| a.component == c).count();
        assert_eq!(count(Component::Engine), 1);
        assert_eq!(count(Component::Sidecar), 1);
        assert_eq!(count(Component::Commands), 8);
        assert_eq!(count(Component::Pi), 1);
        assert_eq!(count(Component::ClaudeCode), 1);
        assert_eq!(count(Component::OpenCode), 1);
    }

    #[test]
    fn sanitize_makes_one_path_component() {
        assert_eq!(
            sanitize("@rivetkit/engine-cli-linux-x64-musl"),
            "rivetkit_engine-cli-linux-x64-musl"
        );
        assert_eq!(sanitize("plain.name_x"), "plain.name_x");
        assert_eq!(
            ARTIFACTS[0].cache_key(),
            "rivetkit_engine-cli-linux-x64-musl@2.3.19"
        );
    }
}
