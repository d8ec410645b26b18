// Helpers shared by the suites that drive agentOS with the official RivetKit
// TypeScript client. Not a test file: `node --test <file>` runs only the
// suite it is given.
import assert from "node:assert/strict";
import { createClient } from "rivetkit/client";

/** The engine endpoint the Rust driver passes in (shared host or an own stack). */
export const endpoint = process.env.AGENTOS_TEST_ENDPOINT;
if (!endpoint || !endpoint.startsWith("http://127.0.0.1:")) {
  throw new Error("AGENTOS_TEST_ENDPOINT (a 127.0.0.1 URL) is required: run ./scripts/test");
}

/** An environment variable the Rust driver must set (phase, actor key, paths). */
export function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required: this suite is run by its Rust driver`);
  return value;
}

export const client = () => createClient({ endpoint, poolName: "default" });
export const uniqueKey = (prefix) => `${prefix}-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
export const text = (bytes) => new TextDecoder().decode(bytes);

/** Asserts that `promise` rejects with a public structured error. */
export async function expectError(promise, { group = "user", code, messageIncludes }) {
  const error = await promise.then(
    () => assert.fail(`expected error ${code}`),
    (e) => e,
  );
  assert.equal(error.group, group, `group of ${error}`);
  assert.equal(error.code, code, `code of ${error}: ${error.message}`);
  for (const part of [messageIncludes].flat().filter(Boolean)) {
    assert.ok(error.message.includes(part), `message "${error.message}" should include "${part}"`);
  }
  return error;
}

/** Polls `check` every 100 ms until it returns a value other than undefined, for at most `ms`. */
export async function eventually(what, check, ms = 30_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last}` : ""}`);
}

/**
 * Starts a guest HTTP server on `port` that echoes method, URL and body as
 * JSON (header `x-echo: yes`); `GET /quit` answers and exits. Returns
 * `{ exited }`, the pending `exec` of the server (its ExecResult), wrapped
 * so that returning it from this async function does not await it.
 */
export async function startEchoServer(handle, port) {
  const script = `require('http').createServer((req, res) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => {
      res.setHeader('x-echo', 'yes');
      res.end(JSON.stringify({ method: req.method, url: req.url, body: Buffer.concat(parts).toString('base64') }));
      if (req.url === '/quit') setTimeout(() => process.exit(0), 50);
    });
  }).listen(${port});
  setTimeout(() => process.exit(3), 120000);`;
  await handle.writeFile("/tmp/echo.js", script);
  const exited = handle.exec("node /tmp/echo.js");
  // A failing server must fail the test, not leave an unhandled rejection.
  exited.catch(() => {});
  await eventually("the guest server to answer", async () => {
    const response = await handle.vmFetch(port, "/ready");
    return response.status === 200 ? response : undefined;
  });
  return { exited };
}

/** Stops the echo server through its `/quit` route and checks it exited 0. */
export async function stopEchoServer(handle, server, port) {
  await handle.vmFetch(port, "/quit");
  const exit = await server.exited;
  assert.equal(exit.exitCode, 0, `echo server: ${show(exit)}`);
}

/** JSON for assertion messages; the client decodes large integers as BigInt. */
export const show = (value) => JSON.stringify(value, (_, v) => (typeof v === "bigint" ? `${v}n` : v));

/** The echo server's view of a request: method, url and the body's bytes. */
export function echoed(body) {
  const seen = JSON.parse(typeof body === "string" ? body : text(body));
  return { ...seen, body: new Uint8Array(Buffer.from(seen.body, "base64")) };
}
