/**
 * The compressions the Connect routes accept and answer with, the same for connect-node's
 * adapter (rpc-handler.ts) and the fast lanes, so their answers stay byte for byte alike.
 *
 * connect-node's brotli compresses at zlib's default quality, 11: ~2.3 s of CPU per MB, over
 * 100 times gzip. Any client asking for `br` made every answer of 1 KiB or more cost that, on
 * the libuv threadpool that DNS lookups, file reads and request decoding share: one
 * unauthenticated reflection stream of 200 requests (6 KB sent) took ~10 s of it
 * (test/probe-input.test.ts). Quality 5 costs about what gzip does and still compresses
 * better. Decompressing a request is connect-node's own (bounded by readMaxBytes).
 */
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { Compression } from "@connectrpc/connect/protocol";
import { promisify } from "node:util";
import { brotliCompress, constants } from "node:zlib";

const BROTLI_QUALITY = 5;
const brotli = promisify(brotliCompress);

export const compressionBrotliQuick: Compression = {
  name: "br",
  async compress(bytes) {
    const out = await brotli(bytes, {
      params: { [constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY, [constants.BROTLI_PARAM_SIZE_HINT]: bytes.byteLength },
    });
    return new Uint8Array(out.buffer as ArrayBuffer, out.byteOffset, out.byteLength);
  },
  decompress: compressionBrotli.decompress,
};

/** In connect-node's default order (gzip first). */
export const ACCEPT_COMPRESSION: Compression[] = [compressionGzip, compressionBrotliQuick];
