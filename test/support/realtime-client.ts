/**
 * A test client for relayed WebSocket sessions, on the real `ws` client: `openSession` opens one
 * and collects its JSON events (waiters by type or predicate, the close code and when it came);
 * `refusedUpgrade` reads an HTTP answer given instead of the 101.
 */
import WebSocket from "ws";

export type Event = Record<string, unknown>;

export interface Session {
  ws: WebSocket;
  events: Event[];
  send(event: unknown): void;
  /** The next (or an already received, not yet taken) event of this type. */
  next(type: string, timeoutMs?: number): Promise<Event>;
  nextWhere(match: (e: Event) => boolean, timeoutMs?: number): Promise<Event>;
  closed: Promise<{ code: number; reason: string }>;
}

export function wsUrl(httpUrl: string, path: string): string {
  return httpUrl.replace(/^http/, "ws") + path;
}

export function openSession(url: string, protocols: string[] = [], headers: Record<string, string> = {}): Promise<Session> {
  const ws = new WebSocket(url, protocols, { headers });
  const events: Event[] = [];
  let taken = 0;
  const waiters = new Set<() => void>();
  ws.on("message", (data: Buffer) => {
    events.push(JSON.parse(data.toString("utf8")) as Event);
    for (const w of waiters) w();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  const nextWhere = (match: (e: Event) => boolean, timeoutMs = 5000): Promise<Event> =>
    new Promise((resolve, reject) => {
      const look = (): boolean => {
        for (let i = taken; i < events.length; i++) {
          if (match(events[i]!)) {
            taken = i + 1;
            resolve(events[i]!);
            return true;
          }
        }
        return false;
      };
      if (look()) return;
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no matching event within ${timeoutMs} ms; got ${JSON.stringify(events).slice(0, 500)}`));
      }, timeoutMs);
      const check = (): void => {
        if (!look()) return;
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
    });
  return new Promise((resolve, reject) => {
    ws.once("open", () =>
      resolve({
        ws,
        events,
        send: (event) => ws.send(JSON.stringify(event)),
        next: (type, timeoutMs) => nextWhere((e) => e.type === type, timeoutMs),
        nextWhere,
        closed,
      }),
    );
    ws.once("error", reject);
  });
}

export interface Refused {
  status: number;
  contentType: string | undefined;
  body: string;
}

/** Opens a WebSocket that the server is expected to refuse: its HTTP status and body. */
export function refusedUpgrade(url: string, protocols: string[] = [], headers: Record<string, string> = {}): Promise<Refused> {
  const ws = new WebSocket(url, protocols, { headers });
  return new Promise((resolve, reject) => {
    ws.on("unexpected-response", (req, res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        resolve({ status: res.statusCode ?? 0, contentType: res.headers["content-type"], body: Buffer.concat(chunks).toString("utf8") });
        req.destroy();
      });
    });
    ws.on("open", () => {
      ws.terminate();
      reject(new Error("the upgrade was accepted"));
    });
    ws.on("error", (e) => reject(e));
  });
}
