// Host tools through the official RivetKit TypeScript client
// (rivetkit@2.3.19): a guest's `agentos-<toolkit> <tool>` becomes a
// `toolCall` event on the connection, which answers with `respondToolCall`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { client, expectError, uniqueKey, show } from "./support.mjs";

test("a guest tool call round-trips through a connected client", { timeout: 300_000 }, async () => {
  const handle = client().agentOS.getOrCreate([uniqueKey("ts-tools")]);
  // Registered before the VM's first boot, so that boot offers it.
  const registered = await handle.registerToolKit({
    name: "math",
    description: "Arithmetic.",
    tools: [
      {
        name: "add",
        description: "Adds a and b.",
        inputSchema: { type: "object", properties: { a: { type: "number" }, b: { type: "number" } } },
      },
      { name: "fail" },
      { name: "slow", timeoutMs: 1500 },
    ],
  });
  assert.equal(registered, null);

  const conn = handle.connect();
  try {
    const calls = [];
    const answered = [];
    conn.on("toolCall", (call) => {
      calls.push(call);
      // Answer `add` and `fail`; leave `slow` unanswered so it times out.
      if (call.tool === "add") {
        answered.push(conn.respondToolCall(call.callId, { result: { sum: call.input.a + call.input.b } }));
      } else if (call.tool === "fail") {
        answered.push(conn.respondToolCall(call.callId, { error: "boom from the client" }));
      }
    });
    // The connection must be subscribed before the guest calls.
    assert.deepEqual((await conn.listToolKits()).map((k) => k.name), ["math"]);

    const add = await handle.exec("agentos-math add --a 2 --b 40");
    const fail = await handle.exec("agentos-math fail");
    const slow = await handle.exec("agentos-math slow");
    const output = (r) => r.stdout + r.stderr;
    assert.equal(add.exitCode, 0, show(add));
    assert.ok(output(add).includes("42"), show(add));
    assert.notEqual(fail.exitCode, 0, show(fail));
    assert.ok(output(fail).includes("boom from the client"), show(fail));
    assert.notEqual(slow.exitCode, 0, show(slow));
    assert.ok(output(slow).includes("no client answered within 1500 ms"), show(slow));

    assert.deepEqual(await Promise.all(answered), [null, null]);
    assert.deepEqual(
      calls.map((c) => [c.toolkit, c.tool]),
      [
        ["math", "add"],
        ["math", "fail"],
        ["math", "slow"],
      ],
    );
    const addCall = calls[0];
    assert.equal(typeof addCall.callId, "string");
    assert.deepEqual(addCall.input, { a: 2, b: 40 });
    assert.equal(calls[2].timeoutMs, 1500);

    // A second answer finds nobody waiting.
    await expectError(conn.respondToolCall(addCall.callId, { result: 1 }), {
      code: "not_found",
      messageIncludes: [addCall.callId, "is waiting"],
    });
    await expectError(conn.respondToolCall("x", { result: 1, error: "y" }), {
      code: "invalid_argument",
      messageIncludes: "not both",
    });

    const [kit] = await conn.listToolKits();
    assert.equal(kit.source, "registered");
    assert.equal(kit.live, true);
    assert.deepEqual(kit.tools.map((t) => t.name), ["add", "fail", "slow"]);
    assert.equal(await conn.removeToolKit("math"), null);
    assert.deepEqual(await conn.listToolKits(), []);
  } finally {
    await conn.dispose();
  }
});
