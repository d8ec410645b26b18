//! Getting a tarball's bytes onto disk: the HTTP implementation, behind a
//! small trait so the install logic can be tested without a network.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::OnceCell;

use crate::integrity::{Hasher, Integrity};
use crate::{Artifact, Progress, ProgressEvent};

/// Writes an artifact's tarball to `dest` and returns the sha512 of exactly
/// the bytes written (the caller verifies it before extracting anything).
pub(crate) trait Fetch: Sync {
    fn fetch(
        &self,
        artifact: &'static Artifact,
        dest: &Path,
        progress: &Progress<'_>,
    ) -> impl Future<Output = Result<Integrity>> + Send;
}

const ATTEMPTS: u32 = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A stall this long between bytes counts as a failed attempt. There is no
/// overall deadline: the Pi package is 131 MB and slow links are legitimate.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Downloads from the npm registry with reqwest (rustls). Proxies come from
/// the usual `HTTPS_PROXY`/`NO_PROXY` environment, which reqwest honours by
/// default. The client is built on first use so a fully cached run never
/// touches TLS or the network.
pub(crate) struct HttpFetcher {
    client: OnceCell<reqwest::Client>,
    /// First retry delay; doubles per attempt (1 s, 2 s).
    backoff: Duration,
    /// Only tests against a loopback server turn this off, so a developer's
    /// proxy settings cannot intercept them.
    use_proxy: bool,
}

impl Default for HttpFetcher {
    fn default() -> Self {
        Self {
            client: OnceCell::new(),
            backoff: Duration::from_secs(1),
            use_proxy: true,
        }
    }
}

/// An attempt's failure, split by whether another attempt could help.
enum Failure {
    Transient(anyhow::Error),
    Fatal(anyhow::Error),
}

impl HttpFetcher {
    async fn client(&self) -> Result<&reqwest::Client> {
        self.client
            .get_or_try_init(|| async {
                let builder = reqwest::Client::builder()
                    .user_agent(concat!(
                        "agentos-actor-provision/",
                        env!("CARGO_PKG_VERSION")
                    ))
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(READ_TIMEOUT);
                let builder = if self.use_proxy {
                    builder
                } else {
                    builder.no_proxy()
                };
                builder.build().context("building the HTTP client")
            })
            .await
    }

    async fn attempt(
        client: &reqwest::Client,
        artifact: &'static Artifact,
        dest: &Path,
        progress: &Progress<'_>,
    ) -> std::result::Result<Integrity, Failure> {
        let url = artifact.url;
        let resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| Failure::Transient(anyhow!(e).context(format!("GET {url}"))))?;
        let status = resp.status();
        if !status.is_success() {
            let err = anyhow!("GET {url} failed: HTTP {status}");
            // Server trouble and throttling may pass; a 404 or 403 will not.
            let transient = status.is_server_error()
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::REQUEST_TIMEOUT;
            return Err(if transient {
                Failure::Transient(err)
            } else {
                Failure::Fatal(err)
            });
        }

        let total = resp.content_length();
        progress(ProgressEvent::Started {
            artifact,
            total_bytes: total,
        });
        let mut file = tokio::fs::File::create(dest).await.map_err(|e| {
            Failure::Fatal(anyhow!(e).context(format!("creating {}", dest.display())))
        })?;
        let write_err = |e: std::io::Error| {
            Failure::Fatal(anyhow!(e).context(format!("writing {}", dest.display())))
        };

        let step = total.map_or(1 << 20, |t| (t / 100).max(64 << 10));
        let mut next_report = step;
        let mut downloaded = 0u64;
        let mut hasher = Hasher::default();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                Failure::Transient(anyhow!(e).context(format!(
                    "reading the body of {url} after {downloaded} bytes"
                )))
            })?;
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(write_err)?;
            downloaded += chunk.len() as u64;
            if downloaded >= next_report {
                next_report = downloaded + step;
                progress(ProgressEvent::Advanced {
                    artifact,
                    downloaded,
                    total,
                });
            }
        }
        file.flush().await.map_err(write_err)?;
        if let Some(t) = total
            && downloaded != t
        {
            return Err(Failure::Transient(anyhow!(
                "GET {url}: body ended after {downloaded} of {t} bytes"
            )));
        }
        if downloaded + step != next_report {
            progress(ProgressEvent::Advanced {
                artifact,
                downloaded,
                total,
            });
        }
        Ok(hasher.finish())
    }
}

impl Fetch for HttpFetcher {
    async fn fetch(
        &self,
        artifact: &'static Artifact,
        dest: &Path,
        progress: &Progress<'_>,
    ) -> Result<Integrity> {
        let client = self.client().await?;
        let mut attempt = 1;
        loop {
            match Self::attempt(client, artifact, dest, progress).await {
                Ok(digest) => return Ok(digest),
                Err(Failure::Transient(e)) if attempt < ATTEMPTS => {
                    progress(ProgressEvent::Retrying {
                        artifact,
                        attempt,
                        error: format!("{e:#}"),
                    });
                    tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
                    attempt += 1;
                }
                Err(Failure::Transient(e)) => {
                    return Err(e.context(format!(
                        "downloading {artifact} failed after {ATTEMPTS} attempts"
                    )));
                }
                Err(Failure::Fatal(e)) => return Err(e.context(format!("downloading {artifact}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::Expose;
    use crate::tests::TempDir;
    use crate::{Component, no_progress};
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A one-trick HTTP/1.1 server on loopback: every request gets `response`.
    /// Returns its base URL and a connection counter.
    async fn serve(response: Vec<u8>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let response = response.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = sock.write_all(&response).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        (url, hits)
    }

    fn response(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!("HTTP/1.1 {status}\r\nConnection: close\r\n{headers}\r\n").into_bytes();
        r.extend_from_slice(body);
        r
    }

    fn artifact_at(url: String) -> &'static Artifact {
        Box::leak(Box::new(Artifact {
            component: Component::Engine,
            name: "@test/http",
            version: "1.0.0",
            url: Box::leak(format!("{url}/pkg.tgz").into_boxed_str()),
            integrity: "sha512-unused",
            expose: Expose::File("package/x"),
        }))
    }

    fn fetcher() -> HttpFetcher {
        HttpFetcher {
            backoff: Duration::ZERO,
            use_proxy: false,
            ..HttpFetcher::default()
        }
    }

    #[tokio::test]
    async fn streams_body_to_file_and_hashes_it() {
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (url, hits) = serve(response(
            "200 OK",
            &format!("Content-Length: {}\r\n", body.len()),
            &body,
        ))
        .await;
        let art = artifact_at(url);
        let dir = TempDir::new();
        let dest = dir.path().join("pkg.tgz");
        let events = Mutex::new(Vec::new());
        let got = fetcher()
            .fetch(art, &dest, &|e| events.lock().unwrap().push(e))
            .await
            .unwrap();
        assert_eq!(got, Integrity::of(&body));
        assert_eq!(std::fs::read(&dest).unwrap(), body);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        let events = events.into_inner().unwrap();
        assert!(
            matches!(
                events[0],
                ProgressEvent::Started {
                    total_bytes: Some(300_000),
                    ..
                }
            ),
            "{events:?}"
        );
        assert!(
            matches!(
                events.last(),
                Some(ProgressEvent::Advanced {
                    downloaded: 300_000,
                    total: Some(300_000),
                    ..
                })
            ),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn client_errors_fail_at_once_naming_the_url() {
        let (url, hits) = serve(response("404 Not Found", "Content-Length: 0\r\n", b"")).await;
        let art = artifact_at(url);
        let dir = TempDir::new();
        let err = fetcher()
            .fetch(art, &dir.path().join("x"), &no_progress)
            .await
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(art.url) && msg.contains("404"), "{msg}");
        assert_eq!(hits.load(Ordering::SeqCst), 1, "a 404 is not retried");
    }

    #[tokio::test]
    async fn server_errors_and_truncation_are_retried_three_times() {
        for resp in [
            response("503 Service Unavailable", "Content-Length: 0\r\n", b""),
            // Promises 100 bytes, sends 10, closes.
            response("200 OK", "Content-Length: 100\r\n", b"0123456789"),
        ] {
            let (url, hits) = serve(resp).await;
            let art = artifact_at(url);
            let dir = TempDir::new();
            let retries = AtomicUsize::new(0);
            let progress = |e| {
                if let ProgressEvent::Retrying { .. } = e {
                    retries.fetch_add(1, Ordering::SeqCst);
                }
            };
            let err = fetcher()
                .fetch(art, &dir.path().join("x"), &progress)
                .await
                .unwrap_err();
            let msg = format!("{err:#}");
            assert!(
                msg.contains("after 3 attempts") && msg.contains(art.url),
                "{msg}"
            );
            assert_eq!(hits.load(Ordering::SeqCst), 3);
            assert_eq!(retries.load(Ordering::SeqCst), 2);
        }
    }
}
