/**
 * RelayService.Relay's head and end messages as protobuf JSON, written directly for the Connect
 * fast lane (src/services/relay-fast-lane.ts): protobuf-es's reflective toJsonString was a few
 * µs of the lane's work per call (issue 22). Byte for byte what it writes (proto3 JSON: a field
 * at its default left out, int64 as decimal strings, strings as JSON.stringify writes them);
 * relay-message-json.test.ts compares the two on generated messages.
 */
import { create, toJsonString } from "@bufbuild/protobuf";
import { OutcomeSchema } from "../../gen/relayapi/v1/common_pb.js";
import { type End, RelayResponseSchema } from "../../gen/relayapi/v1/relay_service_pb.js";

/** A head message: `status`, then `headers` as `{name, value}` objects. */
export function headJson(head: { status: number; headers: readonly { name: string; value: string }[] }): Buffer {
  let s = '{"head":{';
  if (head.status !== 0) s += `"status":${head.status}`;
  if (head.headers.length > 0) {
    s += head.status !== 0 ? ',"headers":[' : '"headers":[';
    for (let i = 0; i < head.headers.length; i++) {
      const { name, value } = head.headers[i]!;
      s += i === 0 ? "{" : ",{";
      if (name !== "") s += `"name":${JSON.stringify(name)}`;
      if (value !== "") s += name !== "" ? `,"value":${JSON.stringify(value)}` : `"value":${JSON.stringify(value)}`;
      s += "}";
    }
    s += "]";
  }
  return Buffer.from(`${s}}}`);
}

/** The outcome's name in protobuf JSON, from the enum's descriptor. */
const OUTCOME_NAMES: Readonly<Record<number, string>> = Object.fromEntries(OutcomeSchema.values.map((v) => [v.number, v.name]));

/**
 * An end message: `calls_left` and `cost_micro_usd` have presence, so they are written when set,
 * even at zero. An outcome the enum does not name goes through protobuf-es.
 */
export function endJson(end: End): Uint8Array {
  const parts: string[] = [];
  if (end.outcome !== 0) {
    const name = OUTCOME_NAMES[end.outcome];
    if (name === undefined) return protobufJson(end);
    parts.push(`"outcome":"${name}"`);
  }
  const u = end.usage;
  if (u !== undefined) {
    const f: string[] = [];
    if (u.promptTokens !== 0n) f.push(`"promptTokens":"${u.promptTokens}"`);
    if (u.completionTokens !== 0n) f.push(`"completionTokens":"${u.completionTokens}"`);
    if (u.totalTokens !== 0n) f.push(`"totalTokens":"${u.totalTokens}"`);
    if (u.cachedTokens !== 0n) f.push(`"cachedTokens":"${u.cachedTokens}"`);
    if (u.reasoningTokens !== 0n) f.push(`"reasoningTokens":"${u.reasoningTokens}"`);
    if (u.costMicroUsd !== undefined) f.push(`"costMicroUsd":"${u.costMicroUsd}"`);
    parts.push(`"usage":{${f.join(",")}}`);
  }
  if (end.callsLeft !== undefined) parts.push(`"callsLeft":"${end.callsLeft}"`);
  if (end.error !== "") parts.push(`"error":${JSON.stringify(end.error)}`);
  return Buffer.from(`{"end":{${parts.join(",")}}}`);
}

function protobufJson(end: End): Uint8Array {
  return Buffer.from(toJsonString(RelayResponseSchema, create(RelayResponseSchema, { part: { case: "end", value: end } })));
}
