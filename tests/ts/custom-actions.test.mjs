// Custom actions of a deployment config (`customActions`), called through
// the official RivetKit TypeScript client (rivetkit@2.3.19) like any other
// action. Run by its Rust driver (crates/agentos/tests/system.rs) on its own
// engine + host loaded with that config: `greet` (node reading its JSON
// input from stdin), `fails` (exits 4), `plain` (prints text), `whereAmI`
// (cwd /tmp).
import { test } from "node:test";
import assert from "node:assert/strict";
import { client, expectError, uniqueKey, show } from "./support.mjs";

test("custom actions run their command with the input and reply with its output", { timeout: 180_000 }, async () => {
  const os = client().agentOS.getOrCreate([uniqueKey("ts-custom")]);
  assert.deepEqual(await os.greet({ name: "ada" }), { hello: "ada", action: "greet", same: true });
  assert.equal(await os.plain(), "just text\n");
  assert.equal(await os.whereAmI(), "/tmp\n");
  const failed = await expectError(os.fails(), { code: "command_failed", messageIncludes: ["exited with 4", "nope"] });
  assert.equal(failed.metadata?.exitCode, 4, show(failed.metadata));
  await expectError(os.greet(1, 2), { code: "invalid_argument", messageIncludes: "too many arguments" });
  // Over a connection too, and the built-ins are untouched.
  const conn = os.connect();
  try {
    assert.deepEqual(await conn.greet({ name: "lin" }), { hello: "lin", action: "greet", same: true });
    assert.equal(await conn.exists("/tmp"), true);
  } finally {
    await conn.dispose();
  }
});
