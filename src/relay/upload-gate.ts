/**
 * The request policy of a streamed body (issue 25; src/relay/upload-body.ts), checked before
 * the call is counted, as checkPolicy is for a body read whole: provider, paths and origin;
 * the size limit (the declared length at once, the rest as the bytes stream); for a form, its
 * leading text fields (src/relay/upload-policy.ts), with a watch on the parts behind them.
 * A pin with no model to read refuses (403) before anything reaches the provider. JSON in
 * disguise is not streamed but read whole (readIfJson; DESIGN 3.4: a JSON body under another
 * content type is never forwarded unread).
 */
import { Readable } from "node:stream";
import { RelayError } from "../errors.js";
import { modelLocationOf, type ProviderSpec } from "../providers/types.js";
import type { TokenMeta } from "../tokens/token-meta.js";
import { boundaryOf, leadingFields, PartWatcher, type Leading } from "./multipart-model.js";
import { policyAt } from "../policy/shape-policy.js";
import { checkAccess, type Checked } from "./token-policy.js";
import { bodyKind } from "./request-body.js";
import type { HeaderInput } from "./headers.js";
import { tooLarge, UPLOAD_HEAD_BYTES, UploadBody, type UploadKind } from "./upload-body.js";
import { checkUploadFields, lateFieldCheck } from "./upload-policy.js";

/** Bytes of a body read to tell it from JSON (bodyKind looks this far at most). */
const SNIFF_BYTES = 8 * 1024;

const EMPTY = Buffer.alloc(0);

export interface UploadRequest {
  path: string;
  origin: string | undefined;
}

/** Checks a streamed body against the token; throws RelayError (nothing was counted yet). */
export async function checkUpload(token: TokenMeta, provider: ProviderSpec, req: UploadRequest, upload: UploadBody, limit: number): Promise<Checked> {
  checkAccess(token, provider, req);
  if (upload.length !== undefined && upload.length > limit) throw tooLarge();
  upload.limit(limit);
  const where = modelLocationOf(provider);
  const pathModel = where.inPath?.(req.path);
  const checked = (model: string | undefined): Checked => ({ body: EMPTY, model, json: false, outputCap: undefined, choices: 1 });
  if (upload.kind === "multipart") {
    const boundary = boundaryOf(upload.contentType);
    const leading = await readLeading(upload, boundary);
    const rules = checkUploadFields(token, policyAt(provider.shape.policy, req.path), where, leading, pathModel);
    const check = lateFieldCheck(rules.watched);
    if (check) {
      const watcher = new PartWatcher(boundary, leading.fields.length, check);
      upload.watch((chunk) => watcher.feed(chunk));
    }
    return checked(rules.model);
  }
  // Opaque bytes name no model: only the path can satisfy a pin.
  if (token.models.size > 0 && (pathModel === undefined || !token.models.has(pathModel))) {
    throw new RelayError("permission_denied", "model not allowed for this token");
  }
  return checked(pathModel);
}

/** config.ts's default (maxUploadBytes), for an engine built without it. */
export const DEFAULT_MAX_UPLOAD_BYTES = 100 * 1024 * 1024;

/**
 * The body the engine checks, for a request whose headers make it an upload (`kind`): an
 * UploadBody that streams, or a Buffer when it is JSON in disguise (readIfJson). A body that
 * came whole (RelayService) is read as an upload too, so a form's model pin holds on both
 * entry points.
 */
export function uploadOf(
  body: Buffer | UploadBody,
  kind: UploadKind | undefined,
  headers: HeaderInput,
  maxBodyBytes: number,
  hold?: (bytes: number) => void,
): Buffer | UploadBody | Promise<Buffer | UploadBody> {
  // Not an upload (most calls): the body as it is, with no promise (issue 22).
  if (kind === undefined) return body;
  return openUpload(body, kind, headers, maxBodyBytes, hold);
}

async function openUpload(
  body: Buffer | UploadBody,
  kind: UploadKind,
  headers: HeaderInput,
  maxBodyBytes: number,
  hold?: (bytes: number) => void,
): Promise<Buffer | UploadBody> {
  let upload = body;
  if (Buffer.isBuffer(upload)) {
    const type = headers["content-type"];
    upload = new UploadBody(Readable.from(upload.length > 0 ? [upload] : []), upload.length, kind, typeof type === "string" ? type : "");
  }
  const whole = await readIfJson(upload, maxBodyBytes, hold).catch(upload.fail);
  return whole === undefined ? upload : upload.release(whole);
}

/**
 * A form or binary body that is JSON in disguise (its first significant byte opens an object,
 * DESIGN 3.4) is read whole within `maxBodyBytes` and returned, for the policy of JSON bodies;
 * undefined for any other body, which streams. `hold` charges the bytes held beyond the
 * upload's head to the body budget. The bytes of a resumable upload are stored, never read as
 * a request, and stream whatever they are.
 */
export async function readIfJson(upload: UploadBody, maxBodyBytes: number, hold?: (bytes: number) => void): Promise<Buffer | undefined> {
  if (upload.kind === "resumable") return undefined;
  while (upload.head.length < SNIFF_BYTES && (await upload.readMore()));
  if (bodyKind(upload.head) === "other") return undefined;
  if (upload.length !== undefined && upload.length > maxBodyBytes) throw tooLarge();
  upload.limit(maxBodyBytes);
  while (await upload.readMore());
  const whole = upload.head;
  if (whole.length > UPLOAD_HEAD_BYTES) hold?.(whole.length - UPLOAD_HEAD_BYTES);
  return whole;
}

async function readLeading(upload: UploadBody, boundary: string): Promise<Leading> {
  for (;;) {
    const leading = leadingFields(upload.head, boundary, upload.ended, UPLOAD_HEAD_BYTES);
    if (leading !== undefined) return leading;
    await upload.readMore();
  }
}
