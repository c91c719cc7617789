/**
 * The `grpc-message` header in the gRPC spec's own percent-encoding (PROTOCOL-HTTP2.md,
 * "Percent-Encoded"): only bytes outside 0x20-0x7E, and `%`, are encoded. connect-es encodes the
 * message with encodeURIComponent, which also encodes `,` `:` `/` `;` `=` `?` `@` `&` `+` `$` `#`;
 * @grpc/grpc-js decodes it with decodeURI, which leaves exactly those encoded, so a Node gRPC
 * client showed "invalid%2C expired or revoked token". The spec's form reads the same through
 * decodeURI, decodeURIComponent and grpc-go alike.
 */

const GRPC_MESSAGE = "grpc-message";

/** `raw` as the spec encodes it: UTF-8 bytes outside 0x20-0x7E and `%` as `%XX`. */
export function encodeGrpcMessage(raw: string): string {
  let out = "";
  for (const byte of Buffer.from(raw, "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** Re-encodes the `grpc-message` of `h` (connect-es's encodeURIComponent form) in the spec's form. */
export function respecGrpcMessage(h: Headers | undefined): void {
  const v = h?.get(GRPC_MESSAGE);
  if (v == null || v === "") return;
  let raw: string;
  try {
    raw = decodeURIComponent(v);
  } catch {
    return;
  }
  h!.set(GRPC_MESSAGE, encodeGrpcMessage(raw));
}
