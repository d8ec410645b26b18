// A `host_dir` mount and a preview URL that survive the actor's sleep,
// through the official RivetKit TypeScript client (rivetkit@2.3.19). Run in
// two phases by its Rust driver (crates/agentos/tests/vm_surface.rs) on its
// own engine + host allowing `host_dir` under a test directory: `mount`,
// then the driver waits until the engine reports the actor asleep; then
// `woken`, whose first action wakes it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { client, required, text, show } from "./support.mjs";

const phase = required("AGENTOS_TEST_PHASE");
const key = required("AGENTOS_TEST_ACTOR_KEY");
// A host directory (mode 0777, holding `from-host.txt`) under the host's allowed roots.
const hostDir = required("AGENTOS_TEST_HOST_DIR");
const actor = () => client().agentOS.getOrCreate([key]);

if (phase === "mount") {
  test("mountFs host_dir shares files both ways; a preview URL is made", { timeout: 180_000 }, async () => {
    const os = actor();
    assert.equal(await os.mountFs("/mnt/host", { id: "host_dir", config: { hostPath: hostDir } }), null);
    const out = await os.exec("cat /mnt/host/from-host.txt; echo guest > /mnt/host/from-guest.txt");
    assert.equal(out.stdout, "host file", show(out));
    assert.equal(readFileSync(join(hostDir, "from-guest.txt"), "utf8"), "guest\n");
    const mounts = await os.listMounts();
    assert.ok(
      mounts.some((m) => m.path === "/mnt/host" && m.persisted === true && m.readOnly === false),
      show(mounts),
    );
    const preview = await os.createSignedPreviewUrl(8080);
    // Kept in the actor's own filesystem for the next phase.
    await os.writeFile("/workspace/preview-token", preview.token);
  });
} else if (phase === "woken") {
  test("after sleep the mount is back before the guest runs and the preview token still works", { timeout: 180_000 }, async () => {
    const os = actor();
    // The first action wakes the actor: the mount must already be in place.
    assert.equal(text(await os.readFile("/mnt/host/from-host.txt")), "host file");
    assert.equal(text(await os.readFile("/mnt/host/from-guest.txt")), "guest\n");
    const mounts = await os.listMounts();
    assert.ok(mounts.some((m) => m.path === "/mnt/host" && m.persisted === true), show(mounts));
    const out = await os.exec("echo again >> /mnt/host/from-guest.txt");
    assert.equal(out.exitCode, 0, show(out));
    assert.equal(readFileSync(join(hostDir, "from-guest.txt"), "utf8"), "guest\nagain\n");

    // A valid token with no guest server behind it is a 502, an unknown one a 404.
    const token = text(await os.readFile("/workspace/preview-token"));
    assert.equal((await os.fetch(`preview/${token}/`)).status, 502);
    assert.equal((await os.fetch(`preview/x${token}/`)).status, 404);
  });
} else {
  throw new Error(`unknown AGENTOS_TEST_PHASE ${phase}`);
}
