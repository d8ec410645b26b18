// Interactive shells of the agentOS actor driven by the official RivetKit
// TypeScript client (rivetkit@2.3.19): attach, detach, re-attach from a new
// connection. The VM hands input to an idle shell only when the guest next
// reads (up to ~10 s), so waits are generous and bounded.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "rivetkit/client";

const endpoint = process.env.AGENTOS_TEST_ENDPOINT;
if (!endpoint || !endpoint.startsWith("http://127.0.0.1:")) {
  throw new Error("AGENTOS_TEST_ENDPOINT (a 127.0.0.1 URL) is required: run ./scripts/test");
}

const uniqueKey = (prefix) => `${prefix}-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
const decoder = new TextDecoder();
const text = (chunks) => chunks.map((c) => decoder.decode(c.data)).join("");

/** Collects one shell's events on a connection. */
function watch(conn, shellId) {
  const seen = { data: [], stderr: [], exit: [] };
  conn.on("shellData", (p) => p.shellId === shellId && seen.data.push(p));
  conn.on("shellStderr", (p) => p.shellId === shellId && seen.stderr.push(p));
  conn.on("shellExit", (p) => p.shellId === shellId && seen.exit.push(p));
  return seen;
}

/** Polls `check` every 100 ms until it returns a truthy value, for at most `ms`. */
async function eventually(what, check, ms = 90_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function expectError(promise, code, messageIncludes) {
  const error = await promise.then(
    () => assert.fail(`expected error ${code}`),
    (e) => e,
  );
  assert.equal(error.group, "user", `group of ${error}`);
  assert.equal(error.code, code, `code of ${error.message}`);
  assert.ok(error.message.includes(messageIncludes), `"${error.message}" should include "${messageIncludes}"`);
}

test("attach, detach and re-attach to a running shell", { timeout: 300_000 }, async () => {
  const key = uniqueKey("ts-shell");
  const clientA = createClient({ endpoint, poolName: "default" });
  const connA = clientA.agentOS.getOrCreate([key]).connect();
  let shellId;
  try {
    // The shell may print before the id reaches us: subscribe to all, filter after.
    const early = [];
    connA.on("shellData", (p) => early.push(p));
    ({ shellId } = await connA.openShell({ cols: 90, rows: 20 }));
    await connA.writeShell(shellId, "echo first-$((20+1))\n");
    await eventually("first-21", () => text(early.filter((p) => p.shellId === shellId)).includes("first-21\r\n"));
    const seqs = early.filter((p) => p.shellId === shellId).map((p) => p.seq);
    assert.ok(seqs.every((s, i) => i === 0 || s > seqs[i - 1]), `seq increases: ${seqs}`);
    assert.ok(early.every((p) => p.data instanceof Uint8Array), "data is a Uint8Array");
  } finally {
    await connA.dispose();
  }

  // A new client and connection: list, read what was missed, keep typing.
  const clientB = createClient({ endpoint, poolName: "default" });
  const connB = clientB.agentOS.getOrCreate([key]).connect();
  try {
    const seen = watch(connB, shellId);
    const shells = await connB.listShells();
    const info = shells.find((s) => s.shellId === shellId);
    assert.deepEqual(
      { command: info.command, args: info.args, cols: info.cols, rows: info.rows, running: info.running, exitCode: info.exitCode },
      { command: "sh", args: [], cols: 90, rows: 20, running: true, exitCode: null },
    );
    const missed = await connB.readShellOutput(shellId);
    assert.equal(missed.missed, 0);
    assert.ok(text(missed.chunks.filter((c) => c.stream === "stdout")).includes("first-21\r\n"));
    const lastSeq = missed.lastSeq;
    assert.ok(lastSeq >= info.lastSeq);

    await connB.writeShell(shellId, "echo second-$((40+2)); exit 3\n");
    assert.equal(await connB.waitShell(shellId), 3);
    const exit = await eventually("shellExit", () => seen.exit[0]);
    assert.deepEqual(exit, { shellId, exitCode: 3 });
    const fresh = seen.data.filter((p) => p.seq > lastSeq);
    assert.ok(text(fresh).includes("second-42\r\n"), text(fresh));

    // Reading after what B saw returns nothing new; the listing shows the exit.
    const tail = await connB.readShellOutput(shellId, Math.max(...seen.data.map((p) => p.seq), ...seen.stderr.map((p) => p.seq)));
    assert.deepEqual(tail.chunks, []);
    const done = (await connB.listShells()).find((s) => s.shellId === shellId);
    assert.deepEqual([done.running, done.exitCode], [false, 3]);
    await expectError(connB.writeShell(shellId, "echo late\n"), "shell_exited", shellId);
  } finally {
    await connB.dispose();
  }
});

test("bad arguments and unknown shells get named errors", { timeout: 120_000 }, async () => {
  const client = createClient({ endpoint, poolName: "default" });
  const handle = client.agentOS.getOrCreate([uniqueKey("ts-shell-bad")]);
  await expectError(handle.openShell({ cols: "wide" }), "invalid_argument", "`options.cols`");
  await expectError(handle.openShell({ colour: true }), "invalid_argument", "`options.colour`");
  await expectError(handle.writeShell("shell-1"), "invalid_argument", "`data`");
  await expectError(handle.resizeShell("shell-1", 80, 70000), "invalid_argument", "`rows`");
  await expectError(handle.readShellOutput("shell-1", -1), "invalid_argument", "`after`");
  await expectError(handle.writeShell("shell-77", "ls\n"), "shell_not_found", "`shell-77`");
  await expectError(handle.readShellOutput("shell-77"), "shell_not_found", "`shell-77`");
  await expectError(handle.closeShell("shell-77"), "shell_not_found", "`shell-77`");
  assert.deepEqual(await handle.listShells(), []);
});
