/**
 * `serve --workers auto` under a cgroup CPU quota (a container's `--cpus`, a Kubernetes CPU
 * limit): Node 20's availableParallelism() sees only the affinity, so a pod limited to 2 CPUs on
 * a 64-core node forked 64 workers. `auto` now stops at the quota (src/cluster/cpu-quota.ts).
 * The end-to-end case puts a real relay in a cgroup of its own (root and cgroup v1 only; skipped
 * elsewhere); the reader is also checked on v1 and v2 layouts written to a temporary root.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { autoWorkers, cgroupCpuQuota } from "../src/cluster/cpu-quota.js";
import { parseWorkers } from "../src/config.js";
import { buildRelayBundle, cleanEnv, logLineIn, spawnRelay } from "./support/spawn-relay.js";
import { waitFor } from "./support/wait.js";

const V1_CPU = "/sys/fs/cgroup/cpu";
const group = join(V1_CPU, `relayapi-probe-${process.pid}`);
let canCgroup = false;
try {
  canCgroup = process.getuid?.() === 0 && existsSync(join(V1_CPU, "cpu.cfs_quota_us"));
  if (canCgroup) {
    mkdirSync(group);
    writeFileSync(join(group, "cpu.cfs_quota_us"), "50000"); // half a CPU
  }
} catch {
  canCgroup = false;
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  if (canCgroup) {
    try {
      rmdirSync(group);
    } catch {
      // a process still in it (killed below); the kernel drops an empty group with the next boot
    }
  }
});

describe.skipIf(!canCgroup || availableParallelism() < 2)("serve --workers auto in a cgroup limited to half a CPU", () => {
  let bundle: string;
  beforeAll(async () => {
    bundle = await buildRelayBundle();
  });

  it("runs one relay process, not one worker per host core", { timeout: 60_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "relayapi-probe-auto-"));
    dirs.push(dataDir);
    const child = spawn("sh", ["-c", `echo $$ > ${group}/cgroup.procs && exec "${process.execPath}" "${bundle}" serve`], {
      env: cleanEnv({
        RELAYAPI_PORT: "0",
        RELAYAPI_HOST: "127.0.0.1",
        RELAYAPI_DATA_DIR: dataDir,
        RELAYAPI_WORKERS: "auto",
        RELAYAPI_ADMIN_KEY: "rak_probe-auto-admin-key-0123456789",
      }),
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdout.on("data", () => {});
    const exited = new Promise((r) => child.on("exit", r));
    try {
      await waitFor(() => logLineIn(stderr, "relay listening") ?? (child.exitCode !== null && new Error(stderr)), 45_000, "relay listening");
      // Without --workers the relay is the one process: no primary, no workers.
      expect(logLineIn(stderr, "primary started")).toBeUndefined();
      expect(logLineIn(stderr, "relay listening")?.workers).toBeUndefined();
    } finally {
      child.kill("SIGKILL");
      await exited;
    }
  });
});

describe("the cgroup CPU quota reader", () => {
  const fake = (files: Record<string, string>): string => {
    const root = mkdtempSync(join(tmpdir(), "relayapi-cgroup-"));
    dirs.push(root);
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(join(root, path, ".."), { recursive: true });
      writeFileSync(join(root, path), text);
    }
    return root;
  };

  it("reads cgroup v2 cpu.max, the smallest along the path; 'max' is no limit", () => {
    const root = fake({
      "proc/self/cgroup": "0::/kubepods/pod1/ctr\n",
      "sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "max 100000\n",
      "sys/fs/cgroup/kubepods/pod1/cpu.max": "250000 100000\n",
      "sys/fs/cgroup/kubepods/cpu.max": "max 100000\n",
    });
    expect(cgroupCpuQuota(root)).toBe(2.5);
    expect(cgroupCpuQuota(fake({ "proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "max 100000\n" }))).toBeUndefined();
  });

  it("reads cgroup v1 cfs quota and period; -1 is no limit; a container's root mount counts", () => {
    const v1 = fake({
      "proc/self/cgroup": "4:memory:/docker/abc\n1:cpu,cpuacct:/docker/abc\n",
      "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "150000\n",
      "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    });
    expect(cgroupCpuQuota(v1)).toBe(1.5);
    const none = fake({
      "proc/self/cgroup": "1:cpu:/\n",
      "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
      "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
    });
    expect(cgroupCpuQuota(none)).toBeUndefined();
    expect(cgroupCpuQuota(fake({}))).toBeUndefined();
  });

  it("auto: the cores, bounded by the quota rounded down, at least 1", () => {
    expect(autoWorkers(64, 2)).toBe(2);
    expect(autoWorkers(64, 2.5)).toBe(2);
    expect(autoWorkers(64, 0.5)).toBe(1);
    expect(autoWorkers(4, 16)).toBe(4);
    expect(autoWorkers(8, undefined)).toBe(8);
    expect(parseWorkers("auto", "RELAYAPI_WORKERS")).toBe(autoWorkers());
  });
});

describe("serve --workers above the cores", () => {
  it("starts, and says in its log that the workers outnumber the cores", { timeout: 60_000 }, async () => {
    const workers = autoWorkers() + 1;
    const relay = await spawnRelay(
      { RELAYAPI_WORKERS: String(workers), RELAYAPI_ADMIN_KEY: "rak_probe-many-admin-key-0123456789" },
      { label: "probe-many", bundle: await buildRelayBundle(), timeoutMs: 45_000 },
    );
    try {
      expect(relay.logLine("more workers than cores")).toMatchObject({ level: "warn", workers, cores: autoWorkers() });
    } finally {
      await relay.stop(30_000);
      relay.cleanup();
    }
  });
});
