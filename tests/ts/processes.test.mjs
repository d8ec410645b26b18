// Spawned processes through the official RivetKit TypeScript client
// (rivetkit@2.3.19) against the real engine + host started by ./scripts/test:
// output streamed as numbered events, replay of what a client missed, stdin.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "rivetkit/client";

const endpoint = process.env.AGENTOS_TEST_ENDPOINT;
if (!endpoint || !endpoint.startsWith("http://127.0.0.1:")) {
  throw new Error("AGENTOS_TEST_ENDPOINT (a 127.0.0.1 URL) is required: run ./scripts/test");
}

const uniqueKey = (prefix) => `${prefix}-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
const text = (chunks, stream) =>
  new TextDecoder().decode(
    Buffer.concat(chunks.filter((c) => c.stream === stream).map((c) => Buffer.from(c.data))),
  );

/** Collects processOutput/processExit payloads of the connection in arrival order. */
function collect(conn) {
  const seen = [];
  conn.on("processOutput", (payload) => seen.push({ event: "processOutput", ...payload }));
  conn.on("processExit", (payload) => seen.push({ event: "processExit", ...payload }));
  return seen;
}

/** Resolves with the events of `pid` once its processExit arrived, or rejects after `ms`. */
async function untilExit(seen, pid, ms = 120_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const mine = seen.filter((e) => e.pid === pid);
    if (mine.some((e) => e.event === "processExit")) return mine;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no processExit for ${pid} within ${ms} ms`);
}

test("spawn streams numbered output events; readProcessOutput replays them", { timeout: 240_000 }, async () => {
  const client = createClient({ endpoint, poolName: "default" });
  const conn = client.agentOS.getOrCreate([uniqueKey("ts-proc-stream")]).connect();
  try {
    const seen = collect(conn);
    const { pid } = await conn.spawn("sh", ["-c", "for i in 1 2 3; do echo out$i; echo err$i >&2; done"]);
    assert.equal(typeof pid, "number");
    const mine = await untilExit(seen, pid);

    const exit = mine.at(-1);
    assert.deepEqual(exit, { event: "processExit", pid, exitCode: 0 });
    const outputs = mine.slice(0, -1);
    assert.ok(outputs.every((e) => e.event === "processOutput"));
    assert.deepEqual(
      outputs.map((e) => e.seq),
      outputs.map((_, i) => i + 1),
      "seq counts chunks from 1 in arrival order",
    );
    assert.ok(outputs.every((e) => e.data instanceof Uint8Array), "event data is a Uint8Array");
    assert.equal(text(outputs, "stdout"), "out1\nout2\nout3\n");
    assert.equal(text(outputs, "stderr"), "err1\nerr2\nerr3\n");

    // A client that missed everything replays it all, equal to the events.
    const all = await conn.readProcessOutput(pid);
    assert.equal(all.missed, 0);
    assert.equal(all.lastSeq, outputs.length);
    assert.deepEqual(
      all.chunks.map((c) => [c.seq, c.stream, Buffer.from(c.data).toString()]),
      outputs.map((e) => [e.seq, e.stream, Buffer.from(e.data).toString()]),
    );
    // A client that has seq 1 gets the rest.
    const rest = await conn.readProcessOutput(pid, 1);
    assert.deepEqual(
      rest.chunks.map((c) => c.seq),
      outputs.slice(1).map((e) => e.seq),
    );
    assert.equal(await conn.waitProcess(pid), 0);
  } finally {
    await conn.dispose();
  }
});

test("stdin written right after spawn reaches cat in order; bad pids are named", { timeout: 240_000 }, async () => {
  const client = createClient({ endpoint, poolName: "default" });
  const conn = client.agentOS.getOrCreate([uniqueKey("ts-proc-stdin")]).connect();
  try {
    const seen = collect(conn);
    const { pid } = await conn.spawn("cat", [], { stdin: "a\n" });
    await conn.writeProcessStdin(pid, "b\n");
    await conn.writeProcessStdin(pid, new TextEncoder().encode("c\n"));
    await conn.closeProcessStdin(pid);
    assert.equal(await conn.waitProcess(pid), 0);
    const mine = await untilExit(seen, pid);
    assert.equal(text(mine.filter((e) => e.event === "processOutput"), "stdout"), "a\nb\nc\n");
    const replay = await conn.readProcessOutput(pid);
    assert.equal(text(replay.chunks, "stdout"), "a\nb\nc\n");

    const listed = await conn.listProcesses();
    assert.ok(listed.some((p) => p.pid === pid && p.command === "cat" && p.running === false && p.exitCode === 0));
    const error = await conn.readProcessOutput(4242).then(
      () => assert.fail("expected not_found"),
      (e) => e,
    );
    assert.equal(error.group, "user");
    assert.equal(error.code, "not_found");
    assert.ok(error.message.includes("4242"), error.message);
  } finally {
    await conn.dispose();
  }
});
