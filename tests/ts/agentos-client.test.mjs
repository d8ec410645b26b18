// The agentOS actor driven by the official RivetKit TypeScript client
// (rivetkit@2.3.19) against the real engine + host started by ./scripts/test.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "rivetkit/client";

const endpoint = process.env.AGENTOS_TEST_ENDPOINT;
if (!endpoint || !endpoint.startsWith("http://127.0.0.1:")) {
  throw new Error("AGENTOS_TEST_ENDPOINT (a 127.0.0.1 URL) is required: run ./scripts/test");
}

const uniqueKey = (prefix) => `${prefix}-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
const text = (bytes) => new TextDecoder().decode(bytes);

/** Resolves with the first payload of `event`, or rejects after `ms`. */
function nextEvent(conn, event, ms = 60_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} event within ${ms} ms`)), ms);
    conn.on(event, (payload) => {
      clearTimeout(timer);
      resolve(payload);
    });
  });
}

/** Asserts that `promise` rejects with a public structured error. */
async function expectError(promise, { group = "user", code, messageIncludes }) {
  const error = await promise.then(
    () => assert.fail(`expected error ${code}`),
    (e) => e,
  );
  assert.equal(error.group, group, `group of ${error}`);
  assert.equal(error.code, code, `code of ${error}`);
  for (const part of [messageIncludes].flat().filter(Boolean)) {
    assert.ok(error.message.includes(part), `message "${error.message}" should include "${part}"`);
  }
  return error;
}

test("filesystem, exec and vmBooted over a connection", { timeout: 180_000 }, async () => {
  const client = createClient({ endpoint, poolName: "default" });
  const handle = client.agentOS.getOrCreate([uniqueKey("ts-conn")]);
  const conn = handle.connect();
  try {
    const booted = nextEvent(conn, "vmBooted");
    // The first VM action boots the VM; the event reaches the subscribed connection.
    await conn.writeFile("/tmp/hello.txt", "hello from ts");
    assert.deepEqual(await booted, {});
    assert.equal(text(await conn.readFile("/tmp/hello.txt")), "hello from ts");

    const bytes = new Uint8Array([0, 1, 2, 253, 254, 255, 0x80]);
    await conn.writeFile("/tmp/bytes.bin", bytes);
    assert.deepEqual(new Uint8Array(await conn.readFile("/tmp/bytes.bin")), bytes);

    await conn.mkdir("/tmp/tree/a/b");
    await conn.writeFile("/tmp/tree/a/file.txt", "x");
    assert.deepEqual((await conn.readdir("/tmp/tree/a")).sort(), ["b", "file.txt"]);
    const entries = await conn.readdirEntries("/tmp/tree/a");
    assert.deepEqual(
      entries.sort((x, y) => x.name.localeCompare(y.name)),
      [
        { name: "b", isDirectory: true, isSymbolicLink: false },
        { name: "file.txt", isDirectory: false, isSymbolicLink: false },
      ],
    );
    assert.equal(await conn.readdirEntries("/tmp/tree/nope"), null);

    const stat = await conn.stat("/tmp/bytes.bin");
    assert.equal(stat.size, bytes.length);
    assert.equal(stat.isDirectory, false);
    assert.equal((await conn.stat("/tmp/tree")).isDirectory, true);

    assert.equal(await conn.exists("/tmp/hello.txt"), true);
    await conn.move("/tmp/hello.txt", "/tmp/tree/moved.txt");
    assert.equal(await conn.exists("/tmp/hello.txt"), false);
    assert.equal(text(await conn.readFile("/tmp/tree/moved.txt")), "hello from ts");

    await expectError(conn.deleteFile("/tmp/tree"), { code: "ENOTEMPTY", messageIncludes: "/tmp/tree" }).catch(
      // Some kernels report EISDIR for unlink of a directory; both name the path.
      async () => expectError(conn.deleteFile("/tmp/tree"), { code: "EISDIR", messageIncludes: "/tmp/tree" }),
    );
    await conn.deleteFile("/tmp/tree", { recursive: true });
    assert.equal(await conn.exists("/tmp/tree"), false);

    const echo = await conn.exec("echo hi");
    assert.deepEqual(echo, { exitCode: 0, stdout: "hi\n", stderr: "" });
    const pipeline = await conn.exec("printf 'a\\nb\\n' | wc -l", { env: { X: "1" }, cwd: "/tmp" });
    assert.equal(pipeline.stdout.trim(), "2");
  } finally {
    await conn.dispose();
  }
});

for (const encoding of ["bare", "cbor", "json"]) {
  test(`structured public errors (${encoding})`, { timeout: 120_000 }, async () => {
    const client = createClient({ endpoint, poolName: "default", encoding });
    const handle = client.agentOS.getOrCreate([uniqueKey(`ts-err-${encoding}`)]);

    // Over HTTP (no connection).
    const missing = await expectError(handle.readFile("/missing/file.txt"), {
      code: "ENOENT",
      messageIncludes: "/missing/file.txt",
    });
    assert.equal(missing.metadata?.path, "/missing/file.txt");
    await expectError(handle.noSuchAction(), { code: "action_not_found", messageIncludes: "noSuchAction" });
    const bad = await expectError(handle.readFile(42), { code: "invalid_argument", messageIncludes: "`path`" });
    assert.equal(bad.metadata?.argument, "path");
    await expectError(handle.writeFile("/tmp/x"), { code: "invalid_argument", messageIncludes: "`content`" });
    await expectError(handle.mkdir("/tmp/x", { recurse: true }), {
      code: "invalid_argument",
      messageIncludes: "options.recurse",
    });
    await expectError(handle.exists("/a", "/b"), { code: "invalid_argument", messageIncludes: "too many arguments" });

    // And over a connection.
    const conn = handle.connect();
    try {
      await expectError(conn.readFile("/nope.txt"), { code: "ENOENT", messageIncludes: "/nope.txt" });
      await expectError(conn.stat(["not", "a", "path"]), { code: "invalid_argument", messageIncludes: "`path`" });
      // The connection survives errors.
      assert.equal(await conn.exists("/tmp"), true);
    } finally {
      await conn.dispose();
    }
  });
}
