// vmFetch with request bodies, signed preview URLs proxied through the
// gateway, and root filesystem snapshots restored into a new actor, through
// the official RivetKit TypeScript client (rivetkit@2.3.19) against the
// shared engine + host started by ./scripts/test.
import { test } from "node:test";
import assert from "node:assert/strict";
import { client, echoed, expectError, show, startEchoServer, stopEchoServer, text, uniqueKey } from "./support.mjs";

test("vmFetch sends string and Uint8Array bodies to a guest server that echoes them", { timeout: 240_000 }, async () => {
  const os = client().agentOS.getOrCreate([uniqueKey("ts-vmfetch")]);
  const server = await startEchoServer(os, 8080);

  const response = await os.vmFetch(8080, "/submit?x=1", {
    method: "post",
    headers: { "content-type": "text/plain" },
    body: "hello body",
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers["x-echo"], "yes");
  assert.ok(response.body instanceof Uint8Array, "the reply body is a Uint8Array");
  const seen = echoed(response.body);
  assert.equal(seen.method, "POST");
  assert.equal(seen.url, "/submit?x=1");
  assert.equal(text(seen.body), "hello body");

  // A Uint8Array body arrives byte for byte; a full URL is sent to its path.
  // (Only UTF-8 bodies: agentos-client 0.2.21 sends the request body to
  // the sidecar as a string, via `String::from_utf8_lossy`.)
  const bytes = new Uint8Array([0, 1, 2, ...new TextEncoder().encode("héllo ✓")]);
  const binary = echoed((await os.vmFetch(8080, "http://localhost:8080/b", { method: "PUT", body: bytes })).body);
  assert.equal(binary.method, "PUT");
  assert.equal(binary.url, "/b");
  assert.deepEqual(binary.body, bytes);

  await expectError(os.vmFetch(8080, "/", { body: 5 }), { code: "invalid_argument", messageIncludes: "`options.body`" });
  await expectError(os.vmFetch(8080, "no-slash"), { code: "invalid_argument", messageIncludes: "`url`" });
  // Bytes that are not UTF-8 would arrive altered: refused, naming the byte.
  await expectError(os.vmFetch(8080, "/", { body: new Uint8Array([0x61, 0x80, 0xfe]) }), {
    code: "invalid_argument",
    messageIncludes: "byte 1 is not",
  });
  await stopEchoServer(os, server, 8080);
});

test("a signed preview URL proxies through the gateway with the query until it is expired", { timeout: 240_000 }, async () => {
  const os = client().agentOS.getOrCreate([uniqueKey("ts-preview")]);
  const server = await startEchoServer(os, 8080);

  const before = Date.now();
  const preview = await os.createSignedPreviewUrl(8080, 600);
  assert.ok(preview.token.length >= 32, preview.token);
  assert.equal(preview.path, `/request/preview/${preview.token}`);
  assert.equal(preview.port, 8080);
  assert.ok(preview.expiresAt >= before + 590_000 && preview.expiresAt <= Date.now() + 610_000, `${preview.expiresAt}`);

  // A plain HTTP GET on the gateway URL + the returned path, as a browser would.
  const gateway = await os.getGatewayUrl();
  const [base, query = ""] = gateway.split("?");
  const previewUrl = (rest) => `${base.replace(/\/$/, "")}${preview.path}${rest}${query ? `&${query}` : ""}`;
  const got = await fetch(previewUrl("/app/page?q=1&r=two"));
  assert.equal(got.status, 200);
  assert.equal(got.headers.get("x-echo"), "yes");
  const seen = echoed(await got.text());
  assert.equal(seen.method, "GET");
  assert.ok(seen.url.startsWith("/app/page?"), seen.url);
  const params = new URLSearchParams(seen.url.split("?")[1]);
  assert.equal(params.get("q"), "1");
  assert.equal(params.get("r"), "two");

  // The client's raw HTTP route (`/request/...`) reaches the same proxy, with a body.
  const posted = await os.fetch(`preview/${preview.token}/form?z=9`, { method: "POST", body: "proxied body" });
  assert.equal(posted.status, 200);
  const form = echoed(await posted.text());
  assert.equal(form.method, "POST");
  assert.ok(form.url.startsWith("/form?") && form.url.includes("z=9"), form.url);
  assert.equal(text(form.body), "proxied body");

  assert.equal((await os.fetch("preview/not-a-token/x")).status, 404);
  assert.equal(await os.expireSignedPreviewUrl(preview.token), null);
  assert.equal((await fetch(previewUrl("/app/page?q=1"))).status, 404);
  assert.equal((await os.fetch(`preview/${preview.token}/app`)).status, 404);

  await expectError(os.createSignedPreviewUrl(8080, 86_401), { code: "invalid_argument", messageIncludes: "`ttlSeconds`" });
  await stopEchoServer(os, server, 8080);
});

test("a root filesystem snapshot restores into a new actor with the same bytes, modes and links", { timeout: 240_000 }, async () => {
  const source = client().agentOS.getOrCreate([uniqueKey("ts-snap-src")]);
  const binary = new Uint8Array(70_000).map((_, i) => i % 256);
  await source.mkdir("/workspace/s");
  await source.writeFile("/workspace/s/data.bin", binary);
  const made = await source.exec(
    "cd /workspace/s && echo text > a.txt && node -e \"require('fs').chmodSync('/workspace/s/a.txt', 0o640)\" " +
      "&& ln -s a.txt link && node -e \"require('fs').linkSync('/workspace/s/data.bin', '/workspace/s/hard.bin')\" && mkdir -p d/e",
  );
  assert.equal(made.exitCode, 0, show(made));

  const snapshot = await source.snapshotRootFilesystem();
  assert.equal(snapshot.format, "agentos-root-v1");
  const entry = (path) => snapshot.entries.find((e) => e.path === path) ?? assert.fail(`${path} missing from the snapshot`);
  assert.equal(entry("/workspace/s/link").type, "symlink");
  assert.equal(entry("/workspace/s/link").target, "a.txt");
  assert.equal(entry("/workspace/s/a.txt").mode & 0o777, 0o640);
  assert.equal(entry("/workspace/s/d/e").type, "directory");
  const linked = [entry("/workspace/s/data.bin"), entry("/workspace/s/hard.bin")];
  const hardlink = linked.find((e) => e.type === "hardlink") ?? assert.fail(`no hardlink entry: ${show(linked)}`);
  const file = linked.find((e) => e.type === "file");
  assert.equal(hardlink.linkTo, file.path);
  assert.ok(file.content instanceof Uint8Array, "file content is a Uint8Array");
  assert.deepEqual(new Uint8Array(file.content), binary);

  const copy = client().agentOS.getOrCreate([uniqueKey("ts-snap-copy")]);
  const restored = await copy.restoreRootFilesystem(snapshot);
  assert.ok(restored.entries > 10, show(restored));
  assert.ok(restored.bytes >= binary.length, show(restored));
  assert.deepEqual(new Uint8Array(await copy.readFile("/workspace/s/hard.bin")), binary);
  assert.equal(text(await copy.readFile("/workspace/s/a.txt")), "text\n");
  for (const path of ["/workspace/s/a.txt", "/workspace/s/data.bin", "/workspace/s/d"]) {
    const [a, b] = [await source.stat(path), await copy.stat(path)];
    for (const field of ["mode", "uid", "gid", "size", "nlink", "mtimeMs"]) {
      assert.equal(b[field], a[field], `${path} ${field}`);
    }
  }
  assert.equal((await copy.stat("/workspace/s/a.txt")).mode & 0o777, 0o640);
  const out = await copy.exec("cd /workspace/s && readlink link && cat link");
  assert.equal(out.stdout, "a.txt\ntext\n");
  const check = await copy.checkRootFilesystem();
  assert.equal(check.clean, true, show(check.problems));

  // The copy's VM runs now: a restore would write under it.
  await expectError(copy.restoreRootFilesystem(snapshot), { code: "vm_running", messageIncludes: "stopped VM" });
  await expectError(copy.restoreRootFilesystem({ format: "tar", entries: [] }), {
    code: "invalid_argument",
    messageIncludes: "`snapshot.format`",
  });
});
