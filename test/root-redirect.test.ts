// Issue 21.10: a browser opening the relay's root lands on the console, not on a JSON 404.
import { expect, it } from "vitest";
import { useRelay } from "./support/use-relay.js";

const { relay } = useRelay({ mock: false });

it("GET / redirects (302) to /console; other paths keep their 404", async () => {
  const res = await fetch(`${relay.url}/`, { redirect: "manual" });
  expect([res.status, res.headers.get("location")]).toEqual([302, "/console"]);
  expect((await fetch(`${relay.url}/nowhere`, { redirect: "manual" })).status).toBe(404);
  expect((await fetch(`${relay.url}/`, { method: "POST", redirect: "manual" })).status).not.toBe(302);
});
