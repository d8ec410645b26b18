// A cron job that wakes a sleeping actor, through the official RivetKit
// TypeScript client (rivetkit@2.3.19). Run in two phases by its Rust driver
// (crates/agentos/tests/cron.rs) on its own engine + host: `schedule`, then
// the driver waits until the engine reports the actor asleep, restarts the
// host, and waits until the alarm (no client) woke it and it slept again;
// then `check`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { client, required, text, show } from "./support.mjs";

const phase = required("AGENTOS_TEST_PHASE");
const key = required("AGENTOS_TEST_ACTOR_KEY");
const actor = () => client().agentOS.getOrCreate([key]);

if (phase === "schedule") {
  test("schedules a job that appends to a log every 20 s", { timeout: 120_000 }, async () => {
    const os = actor();
    const scheduled = await os.scheduleCron({
      id: "wake",
      schedule: "*/20 * * * * *",
      action: { type: "exec", command: "sh", args: ["-c", "date +%s >> /workspace/wake.log"] },
    });
    assert.deepEqual(scheduled, { id: "wake" });
    const [job, ...others] = await os.listCronJobs();
    assert.deepEqual(others, []);
    assert.equal(job.id, "wake");
    assert.equal(job.schedule, "*/20 * * * * *");
    assert.equal(job.overlap, "allow");
    assert.ok(job.nextRun > Date.now() - 1_000 && job.nextRun <= Date.now() + 21_000, `nextRun ${job.nextRun}`);
  });
} else if (phase === "check") {
  test("the job ran while the actor slept and no client was there", { timeout: 120_000 }, async () => {
    const os = actor();
    const [job] = await os.listCronJobs();
    assert.equal(job.id, "wake");
    assert.ok(job.runCount >= 1, show(job));
    assert.equal(job.lastError, null, show(job));
    assert.ok(job.lastRun > 0 && job.nextRun > job.lastRun, show(job));
    const lines = text(await os.readFile("/workspace/wake.log")).trim().split("\n");
    assert.ok(lines.length >= 1 && lines.every((l) => /^\d{10}$/.test(l)), `wake.log: ${lines}`);
  });
} else {
  throw new Error(`unknown AGENTOS_TEST_PHASE ${phase}`);
}
