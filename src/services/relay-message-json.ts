/**
 * RelayService.Relay's messages as protobuf JSON, written straight from the call's parts
 * (relay-service.ts RelayPart) for the Connect fast lane (src/services/relay-fast-lane.ts):
 * building each message with protobuf-es's reflective `create` (a head's every header a message
 * of its own) and writing it with `toJsonString` was several µs of the lane's work per call
 * (issue 22). Byte for byte what protobuf-es writes for `relayMessage(part)` (proto3 JSON: a
 * field at its default left out, int64 as decimal strings, bytes as base64, strings as
 * JSON.stringify writes them); relay-message-json.test.ts compares the two on generated parts.
 */
import { toJsonString } from "@bufbuild/protobuf";
import { OutcomeSchema } from "../../gen/relayapi/v1/common_pb.js";
import { RelayResponseSchema } from "../../gen/relayapi/v1/relay_service_pb.js";
import { type EndPart, type RelayPart, relayMessage } from "./relay-service.js";

const CHUNK_EMPTY = '{"chunk":{}}';

/** The part's message as protobuf JSON text. */
export function partJson(part: RelayPart): string {
  switch (part.case) {
    case "head":
      return headJson(part.status, part.headers);
    case "chunk":
      return part.data.byteLength === 0 ? CHUNK_EMPTY : `{"chunk":{"data":"${base64Of(part.data)}"}}`;
    case "end":
      return endJson(part.end) ?? toJsonString(RelayResponseSchema, relayMessage(part));
    case "text":
      return toJsonString(RelayResponseSchema, relayMessage(part));
  }
}

/** A head: `status`, then `headers` as `{name, value}` objects, a repeated header once per value. */
function headJson(status: number, headers: Record<string, string | string[]>): string {
  let s = '{"head":{';
  if (status !== 0) s += `"status":${status}`;
  let first = true;
  for (const name in headers) {
    const v = headers[name]!;
    if (typeof v === "string") {
      s += headerJson(first, status, name, v);
      first = false;
    } else
      for (const value of v) {
        s += headerJson(first, status, name, value);
        first = false;
      }
  }
  if (!first) s += "]";
  return `${s}}}`;
}

function headerJson(first: boolean, status: number, name: string, value: string): string {
  let s = first ? (status !== 0 ? ',"headers":[{' : '"headers":[{') : ",{";
  if (name !== "") s += `"name":${JSON.stringify(name)}`;
  if (value !== "") s += name !== "" ? `,"value":${JSON.stringify(value)}` : `"value":${JSON.stringify(value)}`;
  return `${s}}`;
}

/** The outcome's name in protobuf JSON, from the enum's descriptor. */
const OUTCOME_NAMES: Readonly<Record<number, string>> = Object.fromEntries(OutcomeSchema.values.map((v) => [v.number, v.name]));

/**
 * An end: the usage's three counts as relayMessage sets them (int64: BigInt, so a count that is
 * no integer fails here as it does there), `calls_left` when set, even at zero (it has presence).
 * Undefined for an outcome the enum does not name: protobuf-es writes that one.
 */
function endJson(end: EndPart): string | undefined {
  let s = '{"end":{';
  let sep = "";
  if (end.outcome !== 0) {
    const name = OUTCOME_NAMES[end.outcome];
    if (name === undefined) return undefined;
    s += `"outcome":"${name}"`;
    sep = ",";
  }
  const u = end.usage;
  if (u !== undefined) {
    const counts: string[] = [];
    const prompt = BigInt(u.promptTokens);
    const completion = BigInt(u.completionTokens);
    const total = BigInt(u.totalTokens);
    if (prompt !== 0n) counts.push(`"promptTokens":"${prompt}"`);
    if (completion !== 0n) counts.push(`"completionTokens":"${completion}"`);
    if (total !== 0n) counts.push(`"totalTokens":"${total}"`);
    s += `${sep}"usage":{${counts.join(",")}}`;
    sep = ",";
  }
  if (end.callsLeft !== null) {
    s += `${sep}"callsLeft":"${BigInt(end.callsLeft)}"`;
    sep = ",";
  }
  if (end.error !== "") s += `${sep}"error":${JSON.stringify(end.error)}`;
  return `${s}}}`;
}

function base64Of(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64");
}
