//! The storage bars of design.md §6, each against its baseline in the same
//! run, on the same host:
//!
//! 1. **Small files**: one `exec` of a Node guest script
//!    (`node -e`, `fs.writeFileSync` of 1,000 × 4 KiB files into a new
//!    directory) on an `agentOS` actor (durable root) ÷ the same on an
//!    `agentOSEphemeral` actor (the sidecar's default ephemeral root). Both
//!    VMs are booted first by `exec("true")`, so boot is excluded. Node
//!    rather than a shell loop: a loop of `head`/`cat` would spawn 1,000
//!    WASM processes and measure process start, not the filesystem.
//! 2. **Bulk file**: `writeFile` + `readFile` of 16 MiB on `agentOS` over a
//!    WebSocket connection ÷ `blobPut` + `blobGet` of the same bytes on
//!    `testPlugin` over another (plain `db_run`/`db_query` through the same
//!    host: 1 MiB rows, each an autocommitted `INSERT` with an `X'..'`
//!    literal, read back as `hex(data)`), as a throughput ratio (baseline
//!    time ÷ our time). The connections are [`RawConn`]s: the official Rust
//!    client cannot receive a reply over 16 MiB.
//! 3. **Wake**: an `agentOS` actor holding 1,000 files / 20 MiB (written by
//!    `writeFile` actions) sleeps (no connection open, idle past
//!    `--sleep-after-secs`, the engine reports `sleep_ts`); then a new
//!    connection's `readFile` of one file ÷ VM create (a new connection's
//!    first `exists("/")` on a brand-new actor, which boots its VM; checked
//!    through the `vmBooted` event, else `exec("true")` is timed). Both times
//!    run from opening the connection to the reply, so both include the
//!    engine starting the actor.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ciborium::Value as CborValue;
use rivetkit_client::connection::ActorConnection;
use serde_json::{Value, json};
use testkit::{bytes_of, unique_key};

use crate::rawconn::{RawConn, reply_bytes};

use crate::report::{self, Bar, Samples, Target, ms};
use crate::session::{BootWatch, ConnWatch, DURABLE, EPHEMERAL, HostOptions, Session, TEST_PLUGIN, call, exec_ok};

const MIB: usize = 1 << 20;
/// Bound for one action (a 16 MiB file, a VM boot under load).
const ACTION_LIMIT: Duration = Duration::from_secs(300);
/// Bound for one small-files guest script (about 30 s on the durable root
/// of a 2-core machine).
const SMALL_LIMIT: Duration = Duration::from_secs(150);

#[derive(clap::Args, Clone)]
pub struct Options {
    #[command(flatten)]
    pub host: HostOptions,
    /// Repetitions of the small-files and bulk-file measurements (medians are reported).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Repetitions of the wake and VM-create measurements.
    #[arg(long, default_value_t = 3)]
    pub wake_reps: usize,
    /// Size of the bulk file in MiB; if it fails, smaller sizes are tried.
    #[arg(long, default_value_t = 16)]
    pub bulk_mib: usize,
    /// Number of files of the small-files and wake workloads.
    #[arg(long, default_value_t = 1000)]
    pub files: usize,
    /// Which bars to measure.
    #[arg(long, value_delimiter = ',', default_value = "small,bulk,wake", value_parser = ["small", "bulk", "wake"])]
    pub bars: Vec<String>,
}

pub fn run(options: Options) -> Result<()> {
    let load_before = report::load();
    let session = Session::start(&options.host, &[])?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let bars = runtime.block_on(async {
        let wanted = |bar: &str| options.bars.iter().any(|b| b == bar);
        let mut bars = Vec::new();
        if wanted("small") {
            bars.push(small_files(&session, &options).await.context("small-files bar")?);
        }
        if wanted("bulk") {
            bars.push(bulk_file(&session, &options).await.context("bulk-file bar")?);
        }
        if wanted("wake") {
            bars.push(wake(&session, &options).await.context("wake bar")?);
        }
        anyhow::Ok(bars)
    })?;
    drop(runtime);
    drop(session);
    let machine = format!("{}; load average {load_before} before, {} after", report::machine(), report::load());
    println!("{}", report::render(&bars, &machine, &report::utc_now()));
    Ok(())
}

/// The guest script writing `files` files of `size` bytes into `dir`; it
/// prints `ok <ms spent in the write loop>`.
fn write_files_script(dir: &str, files: usize, size: usize) -> String {
    let script = format!(
        "const fs=require(\"fs\");const d=\"{dir}\";fs.mkdirSync(d,{{recursive:true}});\
         const b=Buffer.alloc({size},\"agentos-bench\");const t=Date.now();\
         for(let i=0;i<{files};i++){{fs.writeFileSync(d+\"/f\"+i,b)}}\
         console.log(\"ok \"+(Date.now()-t))"
    );
    format!("node -e '{script}'")
}

/// Runs the write script and checks that every file exists. Returns the
/// wall time of the `exec` and the guest's own loop time.
async fn write_files(conn: &ActorConnection, dir: &str, files: usize, size: usize) -> Result<(Duration, Duration)> {
    let command = write_files_script(dir, files, size);
    let start = Instant::now();
    let stdout = exec_ok(conn, &command, SMALL_LIMIT).await?;
    let wall = start.elapsed();
    let guest_ms: u64 = stdout
        .trim()
        .strip_prefix("ok ")
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unexpected guest output {stdout:?}"))?;
    let names = call(conn, "readdir", vec![json!(dir)], ACTION_LIMIT).await?;
    let count = names.as_array().map_or(0, Vec::len);
    if count != files {
        bail!("{dir} holds {count} entries after writing {files} files");
    }
    Ok((wall, Duration::from_millis(guest_ms)))
}

async fn small_files(session: &Session, options: &Options) -> Result<Bar> {
    eprintln!("bench: small files ({} × 4 KiB, {} reps)", options.files, options.reps);
    let mut durable = SmallActor::new(session, DURABLE).await?;
    let mut ephemeral = SmallActor::new(session, EPHEMERAL).await?;
    let [mut ours, mut base, mut ours_guest, mut base_guest]: [Samples; 4] = Default::default();
    let mut failures = Vec::new();
    let mut rep = 0;
    while rep < options.reps {
        let dir = format!("/workspace/small-{rep}-{}", failures.len());
        // Alternate which root goes first, so drift hits both alike.
        let order = if rep % 2 == 0 { [true, false] } else { [false, true] };
        let mut timings = Vec::new();
        for is_durable in order {
            let actor = if is_durable { &mut durable } else { &mut ephemeral };
            match write_files(&actor.conn, &dir, options.files, 4096).await {
                Ok(timing) => timings.push((is_durable, timing)),
                Err(error) => {
                    // Recorded and retried on a new actor, so one stuck
                    // exec does not lose the whole run.
                    let failure = format!(
                        "rep {rep} {} failed ({} connection drops seen): {error:#}",
                        root_name(is_durable),
                        actor.watch.drops()
                    );
                    eprintln!("bench:   {failure}");
                    failures.push(failure);
                    if failures.len() > 2 {
                        bail!("small files failed three times: {failures:?}");
                    }
                    let name = actor.name;
                    actor.close().await;
                    *actor = SmallActor::new(session, name).await?;
                    break;
                }
            }
        }
        if timings.len() < 2 {
            continue;
        }
        for (is_durable, (w, g)) in timings {
            eprintln!("bench:   rep {rep} {}: {:.0} ms (guest loop {:.0} ms)", root_name(is_durable), ms(w), ms(g));
            let (wall, guest) = if is_durable { (&mut ours, &mut ours_guest) } else { (&mut base, &mut base_guest) };
            wall.push(w);
            guest.push(g);
        }
        rep += 1;
    }
    durable.close().await;
    ephemeral.close().await;
    let ratio = ours.median().as_secs_f64() / base.median().as_secs_f64();
    let mut details = vec![
        "one `exec` of `node -e` (fs.writeFileSync in a loop, new directory each rep); VMs booted beforehand; median wall time of the exec".into(),
        format!("durable exec: {}; guest loop: {}", ours.list(), ours_guest.list()),
        format!("ephemeral exec: {}; guest loop: {}", base.list(), base_guest.list()),
        format!(
            "guest loop medians: durable {:.0} ms, ephemeral {:.0} ms ({:.2}×)",
            ms(ours_guest.median()),
            ms(base_guest.median()),
            ours_guest.median().as_secs_f64() / base_guest.median().as_secs_f64().max(1e-9)
        ),
    ];
    details.extend(failures);
    Ok(Bar {
        name: format!("small files: {} × 4 KiB written in the guest, durable ÷ ephemeral root", options.files),
        ours: format!("{:.0} ms", ms(ours.median())),
        baseline: format!("{:.0} ms", ms(base.median())),
        ratio,
        target: Target::AtMost(2.0),
        details,
    })
}

/// A small-files actor: its connection (watched for drops), VM booted.
struct SmallActor {
    name: &'static str,
    conn: ActorConnection,
    watch: ConnWatch,
}

impl SmallActor {
    async fn new(session: &Session, name: &'static str) -> Result<SmallActor> {
        let conn = session.connect(name, &unique_key("bench-small"))?;
        let watch = ConnWatch::new(&conn, name);
        exec_ok(&conn, "true", SMALL_LIMIT).await.context("warm-up exec")?;
        Ok(SmallActor { name, conn, watch })
    }

    async fn close(&self) {
        self.watch.closing();
        self.conn.disconnect().await;
    }
}

fn root_name(durable: bool) -> &'static str {
    if durable { "durable" } else { "ephemeral" }
}

/// Deterministic, incompressible-looking bytes (xorshift64).
fn payload(len: usize) -> Vec<u8> {
    payload_seeded(len, 0)
}

fn payload_seeded(len: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Bytes as the JSON-compat `["$Uint8Array", base64]` pair: rivetkit-core
/// decodes a CBOR-encoded message into JSON values, so it refuses a CBOR
/// byte string.
fn uint8array(bytes: &[u8]) -> CborValue {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    CborValue::Array(vec![CborValue::Text("$Uint8Array".into()), CborValue::Text(b64)])
}

/// One write + read through each path: (write, read) times of ours and of
/// the baseline.
struct BulkRound {
    ours: (Duration, Duration),
    base: (Duration, Duration),
}

async fn ours_round(conn: &mut RawConn, bytes: &[u8]) -> Result<(Duration, Duration)> {
    let path = CborValue::Text("/workspace/bulk.bin".into());
    let content = uint8array(bytes);
    let start = Instant::now();
    conn.action("writeFile", vec![path.clone(), content], ACTION_LIMIT).await?;
    let written = start.elapsed();
    let start = Instant::now();
    let read = conn.action("readFile", vec![path], ACTION_LIMIT).await?;
    let times = (written, start.elapsed());
    if reply_bytes(&read)? != bytes {
        bail!("readFile returned other bytes than were written");
    }
    Ok(times)
}

async fn base_round(conn: &mut RawConn, bytes: &[u8]) -> Result<(Duration, Duration)> {
    let content = uint8array(bytes);
    let start = Instant::now();
    conn.action("blobPut", vec![content], ACTION_LIMIT).await?;
    let written = start.elapsed();
    let start = Instant::now();
    let read = conn.action("blobGet", vec![], ACTION_LIMIT).await?;
    let times = (written, start.elapsed());
    if reply_bytes(&read)? != bytes {
        bail!("blobGet returned other bytes than were put");
    }
    Ok(times)
}

/// The two actors of the bulk bar.
struct BulkActors {
    ours: String,
    base: String,
}

impl BulkActors {
    /// New actors, warmed up (the agentOS VM booted, the test plugin answering).
    async fn new(session: &Session) -> Result<BulkActors> {
        let ours = session.handle(DURABLE, &unique_key("bench-bulk"))?.resolve().await?;
        let base = session.handle(TEST_PLUGIN, &unique_key("bench-bulk-sql"))?.resolve().await?;
        let actors = BulkActors { ours, base };
        let (mut ours, mut base) = actors.connect(session).await?;
        ours.action("exists", vec![CborValue::Text("/".into())], ACTION_LIMIT).await.context("warm-up")?;
        base.action("ping", vec![], ACTION_LIMIT).await.context("warm-up")?;
        ours.close().await;
        base.close().await;
        Ok(actors)
    }

    async fn connect(&self, session: &Session) -> Result<(RawConn, RawConn)> {
        let ours = RawConn::open(session.endpoint(), &self.ours, ACTION_LIMIT).await?;
        let base = RawConn::open(session.endpoint(), &self.base, ACTION_LIMIT).await?;
        Ok((ours, base))
    }

    /// One write + read through each path, on new connections (opened
    /// before timing): the gateway closes a connection that has carried a
    /// few ~21 MiB messages (`guard.websocket_pending_limit_reached`).
    async fn round(&self, session: &Session, bytes: &[u8], ours_first: bool) -> Result<BulkRound> {
        let (mut ours, mut base) = self.connect(session).await?;
        let result = if ours_first {
            let o = ours_round(&mut ours, bytes).await;
            let b = base_round(&mut base, bytes).await;
            o.and_then(|o| Ok((o, b?)))
        } else {
            let b = base_round(&mut base, bytes).await;
            let o = ours_round(&mut ours, bytes).await;
            b.and_then(|b| Ok((o?, b)))
        };
        ours.close().await;
        base.close().await;
        let (ours, base) = result?;
        Ok(BulkRound { ours, base })
    }
}

async fn bulk_file(session: &Session, options: &Options) -> Result<Bar> {
    eprintln!("bench: bulk file ({} MiB, {} reps)", options.bulk_mib, options.reps);
    let mut sizes = vec![options.bulk_mib];
    sizes.extend([12, 10, 8, 6, 4, 2, 1].into_iter().filter(|s| *s < options.bulk_mib));
    let mut notes = Vec::new();
    let mut actors = BulkActors::new(session).await?;
    let mut chosen = None;
    for mib in sizes {
        let bytes = payload(mib * MIB);
        // The first round also warms up (tables, first file); not counted.
        match actors.round(session, &bytes, true).await {
            Ok(_) => {
                chosen = Some((mib, bytes));
                break;
            }
            Err(error) => {
                eprintln!("bench:   {mib} MiB failed: {error:#}");
                notes.push(format!("{mib} MiB failed: {error:#}"));
                actors = BulkActors::new(session).await?;
            }
        }
    }
    let Some((mib, bytes)) = chosen else { bail!("no bulk size worked: {notes:?}") };
    let [mut ours_w, mut ours_r, mut base_w, mut base_r, mut ours_t, mut base_t]: [Samples; 6] = Default::default();
    for rep in 0..options.reps {
        let round = actors.round(session, &bytes, rep % 2 == 1).await?;
        eprintln!(
            "bench:   rep {rep}: writeFile {:.0} + readFile {:.0} ms; blobPut {:.0} + blobGet {:.0} ms",
            ms(round.ours.0),
            ms(round.ours.1),
            ms(round.base.0),
            ms(round.base.1)
        );
        ours_w.push(round.ours.0);
        ours_r.push(round.ours.1);
        base_w.push(round.base.0);
        base_r.push(round.base.1);
        ours_t.push(round.ours.0 + round.ours.1);
        base_t.push(round.base.0 + round.base.1);
    }
    let (ours_m, base_m) = (ours_t.median(), base_t.median());
    let mib_per_s = |d: Duration| 2.0 * mib as f64 / d.as_secs_f64();
    let mut details = vec![
        format!(
            "{mib} MiB of pseudo-random bytes, each path on its own WebSocket connection, new each round, order alternating (CBOR encoding; bytes as `[\"$Uint8Array\", base64]` both ways, ~21.3 MiB messages for 16 MiB); ratio = throughput ours ÷ baseline = baseline time ÷ our time, counting the bytes written plus read"
        ),
        "baseline: `testPlugin.blobPut` (1 MiB rows, one autocommitted `db_run` `INSERT … X'<hex>'` each) + `blobGet` (one `db_query` `SELECT hex(data)` per row)".into(),
        format!("writeFile {} (median {:.0} ms); readFile {} (median {:.0} ms)", ours_w.list(), ms(ours_w.median()), ours_r.list(), ms(ours_r.median())),
        format!("blobPut {} (median {:.0} ms); blobGet {} (median {:.0} ms)", base_w.list(), ms(base_w.median()), base_r.list(), ms(base_r.median())),
    ];
    details.extend(notes);
    Ok(Bar {
        name: format!("bulk file: writeFile + readFile of {mib} MiB, throughput ÷ plain SQL"),
        ours: format!("{:.0} ms ({:.1} MiB/s)", ms(ours_m), mib_per_s(ours_m)),
        baseline: format!("{:.0} ms ({:.1} MiB/s)", ms(base_m), mib_per_s(base_m)),
        ratio: base_m.as_secs_f64() / ours_m.as_secs_f64(),
        target: Target::AtLeast(0.5),
        details,
    })
}

/// Writes `files` files of `size` distinct pseudo-random bytes into `dir`
/// with `writeFile` actions, one at a time (overlapping writes to one actor
/// are slower: ~36 ms each with 2 in flight against ~9 ms one by one);
/// checks the count.
async fn fill(conn: &ActorConnection, dir: &str, files: usize, size: usize) -> Result<Duration> {
    let start = Instant::now();
    call(conn, "mkdir", vec![json!(dir)], ACTION_LIMIT).await?;
    for i in 0..files {
        let content = testkit::uint8array(&payload_seeded(size, i as u64 + 1));
        call(conn, "writeFile", vec![json!(format!("{dir}/f{i}")), content], ACTION_LIMIT).await?;
    }
    let elapsed = start.elapsed();
    let names = call(conn, "readdir", vec![json!(dir)], ACTION_LIMIT).await?;
    let count = names.as_array().map_or(0, Vec::len);
    if count != files {
        bail!("{dir} holds {count} entries after writing {files} files");
    }
    Ok(elapsed)
}

/// Opens a new connection to `name`/`key` and times it up to the reply of
/// `action`; also reports whether the VM booted on the way.
async fn first_action(
    session: &Session,
    name: &str,
    key: &str,
    action: &str,
    args: Vec<Value>,
) -> Result<(Duration, Value, bool)> {
    let start = Instant::now();
    let conn = session.connect(name, key)?;
    let boots = BootWatch::new(&conn).await;
    let value = call(&conn, action, args, ACTION_LIMIT).await?;
    let elapsed = start.elapsed();
    let booted = boots.booted(Duration::from_secs(2)).await;
    conn.disconnect().await;
    Ok((elapsed, value, booted))
}

async fn wake(session: &Session, options: &Options) -> Result<Bar> {
    let file_size = 20 * MIB / options.files.max(1);
    eprintln!("bench: wake ({} files × {file_size} bytes, {} reps)", options.files, options.wake_reps);
    let key = unique_key("bench-wake");
    let handle = session.handle(DURABLE, &key)?;
    let conn = handle.connect();
    let setup = fill(&conn, "/workspace/w", options.files, file_size).await.context("fill the wake actor")?;
    eprintln!("bench:   wrote {:.1} MiB in {:.0} ms", (options.files * file_size) as f64 / MIB as f64, ms(setup));
    conn.disconnect().await;
    let actor_id = handle.resolve().await.context("resolve the wake actor's id")?;
    let sleep_limit = Duration::from_secs(options.host.sleep_after_secs + 60);

    let (mut wakes, mut creates) = (Samples::default(), Samples::default());
    let mut wake_boots = 0;
    for rep in 0..options.wake_reps {
        let waited = session.wait_asleep(&actor_id, sleep_limit).await?;
        // Let the host finish tearing the actor down after the engine
        // recorded the sleep.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let path = format!("/workspace/w/f{}", (rep * 397 + 11) % options.files);
        let (elapsed, value, booted) = first_action(session, DURABLE, &key, "readFile", vec![json!(path)]).await?;
        let len = bytes_of(&value).len();
        if len != file_size {
            bail!("{path}: read {len} bytes, wrote {file_size}");
        }
        eprintln!(
            "bench:   rep {rep}: slept after {:.1} s idle; wake + readFile {:.0} ms (VM booted: {booted})",
            waited.as_secs_f64(),
            ms(elapsed)
        );
        wake_boots += usize::from(booted);
        wakes.push(elapsed);
    }
    // `exists("/")` is the cheapest action that boots the VM of a brand-new
    // actor; should it ever stop booting one, `exec("true")` is used.
    let mut create_action = ("exists", json!("/"));
    let mut rep = 0;
    while rep < options.wake_reps {
        let (action, arg) = create_action.clone();
        let (elapsed, _, booted) =
            first_action(session, DURABLE, &unique_key("bench-create"), action, vec![arg]).await?;
        if !booted {
            if action == "exec" {
                bail!("exec(\"true\") on a new actor did not boot a VM (no vmBooted event)");
            }
            eprintln!("bench:   {action} did not boot the VM of a new actor; timing exec(\"true\") instead");
            create_action = ("exec", json!("true"));
            continue;
        }
        eprintln!("bench:   rep {rep}: new actor + VM create ({action}) {:.0} ms", ms(elapsed));
        creates.push(elapsed);
        rep += 1;
    }
    let create_call = match create_action.0 {
        "exists" => "`exists(\"/\")`",
        _ => "`exec(\"true\")`",
    };
    Ok(Bar {
        name: format!("wake: readFile after sleep of an actor holding {} files / 20 MiB ÷ VM create", options.files),
        ours: format!("{:.0} ms", ms(wakes.median())),
        baseline: format!("{:.0} ms", ms(creates.median())),
        ratio: wakes.median().as_secs_f64() / creates.median().as_secs_f64(),
        target: Target::AtMost(1.3),
        details: vec![
            "both from opening a new connection to the reply (engine starts the actor in both); sleep forced by `--sleep-after-secs` with no connection open, waited for through the engine's actor API".into(),
            format!("wake + readFile of one {file_size}-byte file: {} (the VM booted on {wake_boots} of {} wakes)", wakes.list(), options.wake_reps),
            format!("VM create (first {create_call} on a brand-new actor, which boots its VM): {}", creates.list()),
            format!("setup: {} × {file_size} bytes written by `writeFile` actions (one at a time) in {:.0} ms", options.files, ms(setup)),
        ],
    })
}

/// One small-files run on the durable root with the root's trace log on;
/// prints the `js_bridge` operations it caused, per file, and where the time
/// went by operation (the gap before each traced completion is charged to
/// it: the call itself plus the sidecar's work since the previous call).
pub fn root_ops(options: HostOptions) -> Result<()> {
    let env = [("AGENTOS_PLUGIN_LOG", "agentos_actor::root=trace"), ("NO_COLOR", "1")];
    let session = Session::start(&options, &env)?;
    let files = 1000;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (wall, ops) = runtime.block_on(async {
        let conn = session.connect(DURABLE, &unique_key("bench-root-ops"))?;
        exec_ok(&conn, "true", ACTION_LIMIT).await?;
        // Let boot-time root traffic drain before counting.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = session.host_stderr().len();
        let (wall, _) = write_files(&conn, "/workspace/ops", files, 4096).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let lines = session.host_stderr();
        conn.disconnect().await;
        anyhow::Ok((wall, root_ops_of(&lines[before.min(lines.len())..], "/workspace/ops/")))
    })?;
    drop(runtime);
    drop(session);
    let total: usize = ops.values().map(|o| o.count).sum();
    let traced: f64 = ops.values().map(|o| o.ms).sum();
    println!("small-files run on the durable root: {files} × 4 KiB in {:.0} ms (trace logging on)", ms(wall));
    println!(
        "js_bridge calls while writing: {total} ({:.1} per file), {traced:.0} ms between the first and the last",
        total as f64 / files as f64
    );
    let mut by_time: Vec<_> = ops.into_iter().collect();
    by_time.sort_by(|a, b| b.1.ms.total_cmp(&a.1.ms));
    println!("| operation | calls | per file | ms total | ms per call | share of time |");
    println!("|---|---|---|---|---|---|");
    for (op, o) in by_time {
        println!(
            "| {op} | {} | {:.2} | {:.0} | {:.3} | {:.0}% |",
            o.count,
            o.count as f64 / files as f64,
            o.ms,
            o.ms / o.count.max(1) as f64,
            100.0 * o.ms / traced.max(1e-9)
        );
    }
    Ok(())
}

#[derive(Debug, Default, PartialEq)]
struct OpStats {
    count: usize,
    ms: f64,
}

/// The `agentos_actor::root` trace lines from the first to the last one
/// naming a path under `prefix`, by operation: how many, and the time since
/// the previous traced call summed.
fn root_ops_of(lines: &[String], prefix: &str) -> BTreeMap<String, OpStats> {
    let traced: Vec<(f64, String, bool)> = lines
        .iter()
        .filter(|l| l.contains("agentos_actor::root"))
        .filter_map(|l| {
            let secs = seconds_of_day(l.split_whitespace().next()?)?;
            let rest = l.split_once("operation=")?.1;
            let op: String = rest.trim_start_matches('"').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            Some((secs, op, l.contains(prefix)))
        })
        .collect();
    let mut stats: BTreeMap<String, OpStats> = BTreeMap::new();
    let (Some(first), Some(last)) = (traced.iter().position(|t| t.2), traced.iter().rposition(|t| t.2)) else {
        return stats;
    };
    for pair in traced[first..=last].windows(2) {
        let mut gap = pair[1].0 - pair[0].0;
        if gap < 0.0 {
            gap += 86_400.0; // past midnight
        }
        let entry = stats.entry(pair[1].1.clone()).or_default();
        entry.count += 1;
        entry.ms += gap * 1000.0;
    }
    stats.entry(traced[first].1.clone()).or_default().count += 1;
    stats
}

/// Seconds since midnight of an RFC 3339 UTC timestamp
/// (`2026-11-22T09:11:05.912264Z`).
fn seconds_of_day(stamp: &str) -> Option<f64> {
    let time = stamp.split_once('T')?.1.strip_suffix('Z')?;
    let mut parts = time.split(':');
    let hours: f64 = parts.next()?.parse().ok()?;
    let minutes: f64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    Some(hours * 3600.0 + minutes * 60.0 + seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_deterministic_and_not_zero() {
        let a = payload(1000);
        assert_eq!(a.len(), 1000);
        assert_eq!(a, payload(1000));
        assert!(a.chunks(16).all(|c| c.iter().any(|b| *b != 0)));
        assert_ne!(payload_seeded(64, 1), payload_seeded(64, 2));
    }

    #[test]
    fn root_op_lines_are_counted_and_timed() {
        let line = |t: &str, op: &str, path: &str| {
            format!(
                "2026-11-22T{t}Z TRACE agentos_actor::root: operation=\"{op}\" path=Some(String(\"{path}\")) error=None"
            )
        };
        let lines = vec![
            line("09:00:00.000", "stat", "/boot"),
            line("09:00:01.000", "realpath", "/w/f0"),
            line("09:00:01.010", "writeFile", "/w/f0"),
            line("09:00:01.011", "lstat", "/w"),
            line("09:00:01.015", "writeFile", "/w/f1"),
            "noise operation=\"stat\"".to_owned(),
            line("09:00:09.000", "stat", "/after"),
        ];
        let ops = root_ops_of(&lines, "/w/f");
        assert_eq!(ops.len(), 3);
        assert_eq!(ops["realpath"].count, 1);
        assert_eq!(ops["writeFile"].count, 2);
        assert!((ops["writeFile"].ms - 14.0).abs() < 1e-6, "{ops:?}");
        assert!((ops["lstat"].ms - 1.0).abs() < 1e-6, "{ops:?}");
        assert_eq!(seconds_of_day("2026-11-22T23:59:59.5Z"), Some(86_399.5));
        assert_eq!(seconds_of_day("garbage"), None);
    }

    #[test]
    fn script_is_one_shell_word() {
        let command = write_files_script("/workspace/x", 3, 10);
        assert!(command.starts_with("node -e '") && command.ends_with('\''));
        assert_eq!(command.matches('\'').count(), 2);
    }
}
