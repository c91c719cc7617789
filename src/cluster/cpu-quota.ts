/**
 * How many workers `serve --workers auto` starts: one per core the process may use, where a
 * cgroup CPU quota (a container's `--cpus`, a Kubernetes CPU limit, systemd's CPUQuota) counts
 * too. Node 20's os.availableParallelism() (libuv 1.46) sees only the CPU affinity, so a pod
 * limited to 2 CPUs on a 64-core node forked 64 workers: 64 relays' memory in a pod sized for
 * two, and each throttled. The quota is read as Go's automaxprocs reads it: cgroup v2 `cpu.max`,
 * or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, the smallest along the process's cgroup path,
 * rounded down, at least 1.
 */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";

function read(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return undefined;
  }
}

/** `/a/b` -> [`/a/b`, `/a`, `/`]: a limit on any ancestor applies. */
function ancestors(path: string): string[] {
  const out: string[] = [];
  let p = path.replace(/\/+$/, "") || "/";
  for (;;) {
    out.push(p);
    if (p === "/") return out;
    p = p.slice(0, p.lastIndexOf("/")) || "/";
  }
}

/** The CPU quota of this process's cgroup in cores (fractional), or undefined when none. `root`: tests. */
export function cgroupCpuQuota(root = "/"): number | undefined {
  const lines = read(join(root, "proc/self/cgroup"))?.split("\n") ?? [];
  let quota: number | undefined;
  const take = (cores: number): void => {
    if (Number.isFinite(cores) && cores > 0) quota = quota === undefined ? cores : Math.min(quota, cores);
  };
  for (const line of lines) {
    const [, controllers, path] = line.split(":", 3) as [string, string | undefined, string | undefined];
    if (controllers === undefined || path === undefined) continue;
    if (controllers === "") {
      // cgroup v2: "0::/path"; inside a container the namespace's root is the mount itself.
      const base = join(root, "sys/fs/cgroup");
      for (const p of [...ancestors(path), "/"]) {
        const [max, period] = (read(join(base, p, "cpu.max")) ?? "").split(/\s+/);
        if (max !== undefined && max !== "" && max !== "max") take(Number(max) / Number(period || 100_000));
      }
    } else if (controllers.split(",").includes("cpu")) {
      for (const mount of ["sys/fs/cgroup/cpu", "sys/fs/cgroup/cpu,cpuacct", "sys/fs/cgroup/cpuacct,cpu"]) {
        for (const p of [...ancestors(path), "/"]) {
          const q = Number(read(join(root, mount, p, "cpu.cfs_quota_us")));
          const period = Number(read(join(root, mount, p, "cpu.cfs_period_us")));
          if (q > 0 && period > 0) take(q / period);
        }
      }
    }
  }
  return quota;
}

/** `--workers auto`: the cores the process may use, bounded by its cgroup CPU quota (at least 1). */
export function autoWorkers(cores = availableParallelism(), quota = cgroupCpuQuota()): number {
  return Math.max(1, Math.min(cores, quota === undefined ? cores : Math.floor(quota)));
}
