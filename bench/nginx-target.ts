/**
 * nginx as the C ceiling of a pass-through (issue 22), when `nginx` is installed (Debian:
 * `apt-get install nginx-light`). A config generated into a temp dir: one worker, a keep-alive
 * upstream pool, response and request buffering off (chunks go out as they come, as the relay
 * sends them), no access log; it swaps Authorization for the upstream key as the reference
 * does. Its CPU is the master's and the worker's, read from /proc; its RSS is the worker's
 * plus the master's.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { childrenOf, treeCpuMs } from "./proc-cpu.js";
import type { SampleMessage } from "./target-process.js";
import type { TargetHandle } from "./targets.js";

export function nginxBinary(): string | undefined {
  for (const bin of ["nginx", "/usr/sbin/nginx"]) {
    try {
      execFileSync(bin, ["-v"], { stdio: "ignore" });
      return bin;
    } catch {
      // not this one
    }
  }
  return undefined;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function config(dir: string, port: number, upstream: URL, upstreamKey: string): string {
  const root = process.getuid?.() === 0 ? "user root;\n" : "";
  return `${root}daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  upstream mock { server ${upstream.host}; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:${port};
    tcp_nodelay on;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer ${upstreamKey}";
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
}
`;
}

function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Starts nginx in front of `upstream`; undefined (with the reason logged) when it cannot. */
export async function startNginx(upstream: string, upstreamKey: string, log: (s: string) => void): Promise<TargetHandle | undefined> {
  const bin = nginxBinary();
  if (!bin) return undefined;
  const dir = mkdtempSync(join(tmpdir(), "relayapi-bench-nginx-"));
  const port = await freePort();
  const conf = join(dir, "nginx.conf");
  writeFileSync(conf, config(dir, port, new URL(upstream), upstreamKey));
  const child: ChildProcess = spawn(bin, ["-p", dir, "-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  // SIGQUIT to the master stops its worker too; a SIGKILLed master would leave the worker running.
  const onExit = (): void => void child.kill("SIGQUIT");
  process.once("exit", onExit);
  const url = `http://127.0.0.1:${port}`;
  // Ready when the port answers.
  const deadline = Date.now() + 5000;
  for (;;) {
    try {
      const res = await fetch(`${url}/health-probe`, { method: "GET" });
      await res.arrayBuffer();
      break;
    } catch {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill("SIGKILL");
        rmSync(dir, { recursive: true, force: true });
        log(`nginx did not start (${stderr.trim().slice(0, 200) || "no answer"}): nginx skipped`);
        return undefined;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const pid = child.pid!;
  const treeRss = (): number => rssBytes(pid) + childrenOf(pid).reduce((n, c) => n + rssBytes(c), 0);
  let peak = treeRss();
  let maxRss = peak;
  const poll = setInterval(() => {
    const rss = treeRss();
    if (rss > peak) peak = rss;
    if (rss > maxRss) maxRss = rss;
  }, 50);
  poll.unref();
  const unsupported = (what: string) => () => Promise.reject(new Error(`nginx: ${what} is not supported`));
  return {
    name: "nginx",
    url,
    adminKey: undefined,
    unaryUrl: undefined,
    pid,
    cpuMs: () => treeCpuMs(pid),
    sample: async (): Promise<SampleMessage> => {
      const rss = treeRss();
      const msg: SampleMessage = {
        type: "sample",
        id: 0,
        cpuUs: treeCpuMs(pid) * 1000,
        rss,
        peakRss: Math.max(peak, rss),
        maxRss,
        loopDelayP99Ms: NaN,
        loopDelayMaxMs: NaN,
      };
      peak = rss;
      return msg;
    },
    startProfile: unsupported("profiling"),
    stopProfile: unsupported("profiling"),
    seedTokens: unsupported("seeding tokens"),
    async stop() {
      clearInterval(poll);
      process.off("exit", onExit);
      if (child.exitCode === null) {
        child.kill("SIGQUIT"); // graceful: the master waits for its worker
        const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
