import { describe, expect, it } from "vitest";
import { idFinderFor, JsonStringFinder, MAX_SCAN_BYTES } from "./object-id-finder.js";

/** Feeds `text` cut at `cuts`; the id found, if any. */
function find(path: string[], text: string, cuts: number[] = [], type = "application/json"): string | undefined {
  const finder = idFinderFor(type, path, ["response", "id"])!;
  const bytes = Buffer.from(text);
  let found: string | undefined;
  const at = [0, ...cuts, bytes.length];
  for (let i = 1; i < at.length; i++) found ??= finder.feed(bytes.subarray(at[i - 1], at[i]));
  return found;
}

describe("JsonStringFinder", () => {
  const answer = JSON.stringify({ id: "resp_é1", object: "response", output: [{ id: "msg_1", content: [{ text: 'a "}] id' }] }] });

  it("finds a top-level id however the bytes are cut", () => {
    for (let cut = 0; cut <= Buffer.byteLength(answer); cut++) expect(find(["id"], answer, [cut]), `cut ${cut}`).toBe("resp_é1");
  });

  it("finds a nested id past other objects' ids, strings with brackets and escapes", () => {
    const upload = JSON.stringify({
      meta: { id: "no", list: [1, true, null, { id: "no" }] },
      note: 'x\\"}{',
      id: "upload_1",
      file: { object: "file", id: "file-9" },
    });
    expect(find(["file", "id"], upload)).toBe("file-9");
    expect(find(["id"], upload)).toBe("upload_1");
    expect(find(["id"], ' { "id" : "a\\u0062c" }')).toBe("abc");
  });

  it("finds nothing in what is not an object naming a string there", () => {
    expect(find(["id"], '[{"id":"x"}]')).toBeUndefined();
    expect(find(["id"], '{"id":42,"x":{"id":"y"}}')).toBeUndefined();
    expect(find(["id"], '{"id":""}')).toBeUndefined();
    expect(find(["file", "id"], '{"file":null,"id":"x"}')).toBeUndefined();
    expect(find(["id"], "not json")).toBeUndefined();
  });

  it("stops reading past the scan bound", () => {
    const finder = new JsonStringFinder(["id"]);
    expect(finder.feed(Buffer.from(`{"pad":"${"x".repeat(MAX_SCAN_BYTES)}","id":"late"}`))).toBeUndefined();
  });
});

describe("event streams", () => {
  const events = [
    'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_7","status":"in_progress"}}\n\n',
    'event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_other"}}\n\n',
  ].join("");

  it("takes the first event naming an id, however the bytes are cut", () => {
    for (let cut = 0; cut <= events.length; cut += 7) expect(find(["id"], events, [cut], "text/event-stream")).toBe("resp_7");
  });

  it("has no finder for other answers", () => {
    expect(idFinderFor("application/octet-stream", ["id"], undefined)).toBeUndefined();
    expect(idFinderFor("text/event-stream", ["id"], undefined)).toBeUndefined();
  });
});
