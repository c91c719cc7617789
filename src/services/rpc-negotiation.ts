/**
 * Requests to a Connect route that no protocol takes: connect-node answers them 405 or 415 with
 * an empty body, no content type and no hint (Rules of the house 5: a clear error in JSON).
 * The same checks connect-node makes (its protocol negotiation, and the Connect and gRPC-Web
 * handlers' own refusals) are made first here, on the adapter's path only (the fast lanes never
 * see these), and refused with a message that names what the method takes.
 */
import { contentTypeStreamRegExp, contentTypeUnaryRegExp } from "@connectrpc/connect/protocol-connect";
import { contentTypeRegExp as grpcType } from "@connectrpc/connect/protocol-grpc";
import { parseContentType as parseGrpcWebType } from "@connectrpc/connect/protocol-grpc-web";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import { RelayError } from "../errors.js";

const GRPC_TYPES = "application/grpc[+proto|+json]; application/grpc-web[+proto|+json] (not -text)";

/** Why connect-node would refuse `method` with `contentType` on `handler`; undefined when it would not. */
export function negotiationError(handler: UniversalHandler, method: string, contentType: string): RelayError | undefined {
  const allowed = handler.allowedMethods;
  if (!allowed.includes(method)) {
    const takes = allowed.includes("GET") ? "POST, or GET for Connect's GET form" : "POST";
    return new RelayError("method_not_allowed", `method ${shown(method)} not allowed: ${handler.requestPath} takes ${takes}`, {
      headers: { allow: allowed.join(", ") },
    });
  }
  // Connect GET: the encoding is named in the query, not by a content type.
  if (method === "GET") return undefined;
  const streaming = handler.method.methodKind !== "unary";
  const connect = streaming ? contentTypeStreamRegExp : contentTypeUnaryRegExp;
  if (connect.test(contentType) || grpcType.test(contentType) || parseGrpcWebType(contentType)?.text === false) return undefined;
  const connectTypes = streaming ? "application/connect+json or application/connect+proto" : "application/json or application/proto";
  const what = contentType === "" ? "no content type" : `content type ${JSON.stringify(shown(contentType))}`;
  return new RelayError("unsupported_media_type", `${what}: ${handler.requestPath} takes Connect (${connectTypes}), gRPC or gRPC-Web (${GRPC_TYPES})`);
}

/** Client text in a message: bounded. */
function shown(text: string): string {
  return text.length > 80 ? `${text.slice(0, 80)}...` : text;
}
