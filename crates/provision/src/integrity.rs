//! Subresource-integrity strings as npm writes them (`sha512-<base64>`).

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha512};

/// A SHA-512 digest, the only algorithm npm has used for years; weaker ones
/// are refused rather than silently trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Integrity([u8; 64]);

impl Integrity {
    /// Parses an SRI string. Several space-separated hashes are allowed (as
    /// the SRI spec does); the sha512 one is used.
    pub(crate) fn parse(sri: &str) -> Result<Self> {
        let Some(b64) = sri
            .split_whitespace()
            .find_map(|h| h.strip_prefix("sha512-"))
        else {
            bail!("malformed integrity {sri:?}: expected `sha512-<base64>`");
        };
        // Options (`?foo`) may follow the hash in SRI; npm never writes them
        // but they are cheap to ignore.
        let b64 = b64.split('?').next().unwrap_or_default();
        let bytes = STANDARD
            .decode(b64)
            .with_context(|| format!("malformed integrity {sri:?}: invalid base64"))?;
        let digest: [u8; 64] = bytes.try_into().map_err(|b: Vec<u8>| {
            anyhow::anyhow!(
                "malformed integrity {sri:?}: sha512 digest has {} bytes, expected 64",
                b.len()
            )
        })?;
        Ok(Self(digest))
    }

    #[cfg(test)]
    pub(crate) fn of(bytes: &[u8]) -> Self {
        Self(Sha512::digest(bytes).into())
    }
}

impl std::fmt::Display for Integrity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha512-{}", STANDARD.encode(self.0))
    }
}

/// Incremental hasher fed while streaming, so the bytes are hashed exactly as
/// they were written to disk without reading them back.
#[derive(Default)]
pub(crate) struct Hasher(Sha512);

impl Hasher {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub(crate) fn finish(self) -> Integrity {
        Integrity(self.0.finalize().into())
    }
}

/// Checks downloaded bytes against the pin; the error names everything
/// needed to tell a stale pin from a tampered or corrupted download.
pub(crate) fn verify(
    artifact: &dyn std::fmt::Display,
    expected: &str,
    actual: &Integrity,
) -> Result<()> {
    let want =
        Integrity::parse(expected).with_context(|| format!("pinned integrity of {artifact}"))?;
    if &want != actual {
        bail!("integrity mismatch for {artifact}: expected {expected}, got {actual}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        let i = Integrity::of(b"hello");
        let s = i.to_string();
        assert!(s.starts_with("sha512-") && s.ends_with("=="), "{s}");
        assert_eq!(Integrity::parse(&s).unwrap(), i);
        // Extra algorithms alongside are tolerated; sha512 is picked.
        let multi = format!("sha1-AAAA {s}");
        assert_eq!(Integrity::parse(&multi).unwrap(), i);
    }

    #[test]
    fn verifies_good_bytes() {
        let expected = Integrity::of(b"payload").to_string();
        let mut h = Hasher::default();
        h.update(b"pay");
        h.update(b"load");
        verify(&"pkg@1.0.0", &expected, &h.finish()).unwrap();
    }

    #[test]
    fn rejects_bad_bytes_naming_both_hashes() {
        let expected = Integrity::of(b"payload").to_string();
        let actual = Integrity::of(b"tampered");
        let err = verify(&"pkg@1.0.0", &expected, &actual)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pkg@1.0.0"), "{err}");
        assert!(err.contains(&expected), "{err}");
        assert!(err.contains(&actual.to_string()), "{err}");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "sha512",
            "sha1-qUqP5cyxm6YcTAhz05Hph5gvu9M=",
            "sha256-LCa0a2j/xo/5m0U8HTBBNBNCLXBkg7+g+YpeiGJm564=",
            "sha512-not base64!!",
            "sha512-aGVsbG8=", // valid base64, but 5 bytes
        ] {
            assert!(Integrity::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        // A malformed pin is reported as such, not as a mismatch.
        let err = verify(&"pkg@1", "sha512-xx", &Integrity::of(b"")).unwrap_err();
        assert!(format!("{err:#}").contains("malformed"), "{err:#}");
    }
}
