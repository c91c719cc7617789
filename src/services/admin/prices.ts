/**
 * AdminService price rpcs (issue 24): SetPrice and DeletePrice change the admin's overrides
 * (every instance applies them within a second, src/pricing/price-book.ts), ListPrices shows
 * the prices in force, shipped and overridden. Each change is audited with the numbers set.
 */
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  AdminService,
  DeletePriceResponseSchema,
  ListPricesResponseSchema,
  PriceSchema,
  SetPriceResponseSchema,
  type Price,
} from "../../../gen/relayapi/v1/admin_service_pb.js";
import type { AuditLog } from "../../audit/audit-log.js";
import { RelayError } from "../../errors.js";
import type { ListedPrice, PriceBook } from "../../pricing/price-book.js";
import type { ModelPrice } from "../../pricing/types.js";
import type { ProviderRegistry } from "../../providers/registry.js";

export interface PriceRpcDeps {
  prices: PriceBook;
  providers: ProviderRegistry;
  audit: AuditLog;
}

type Rpcs = Pick<ServiceImpl<typeof AdminService>, "setPrice" | "listPrices" | "deletePrice">;

export function priceRpcs(deps: PriceRpcDeps): Rpcs {
  const { prices, providers, audit } = deps;
  return {
    async setPrice(req) {
      const p = req.price;
      if (!p) throw new RelayError("bad_request", "price is required");
      // A price for a provider that does not exist would never apply: refused, as a typo.
      if (providers.get(p.provider) === undefined) throw new RelayError("not_found", "unknown provider");
      const stored = await prices.set(p.provider, p.model, fromProto(p));
      await audit.record({ actor: "admin", action: "SetPrice", target: `${stored.provider}/${stored.model}`, detail: describe(stored.price) });
      return create(SetPriceResponseSchema, { price: toProto(stored) });
    },

    listPrices(req) {
      return create(ListPricesResponseSchema, { prices: prices.list(req.provider).map(toProto) });
    },

    async deletePrice(req) {
      if (!(await prices.delete(req.provider, req.model))) throw new RelayError("not_found", "no admin price for that provider and model");
      await audit.record({ actor: "admin", action: "DeletePrice", target: `${req.provider}/${req.model}` });
      return create(DeletePriceResponseSchema, {});
    },
  };
}

/** int64 fields to numbers; one beyond a safe integer is refused by the price book's check. */
function fromProto(p: Price): ModelPrice {
  const n = (v: bigint): number => (v > BigInt(Number.MAX_SAFE_INTEGER) || v < 0n ? -1 : Number(v));
  const m: ModelPrice = { input: n(p.input), output: n(p.output) };
  if (p.cachedInput !== undefined) m.cachedInput = n(p.cachedInput);
  if (p.cacheWrite !== undefined) m.cacheWrite = n(p.cacheWrite);
  if (p.audioInput !== undefined) m.audioInput = n(p.audioInput);
  if (p.audioOutput !== undefined) m.audioOutput = n(p.audioOutput);
  return m;
}

function toProto(e: ListedPrice): Price {
  const opt = (v: number | undefined): bigint | undefined => (v === undefined ? undefined : BigInt(v));
  return create(PriceSchema, {
    provider: e.provider,
    model: e.model,
    input: BigInt(e.price.input),
    cachedInput: opt(e.price.cachedInput),
    cacheWrite: opt(e.price.cacheWrite),
    output: BigInt(e.price.output),
    audioInput: opt(e.price.audioInput),
    audioOutput: opt(e.price.audioOutput),
    source: e.source,
    asOf: e.asOf,
  });
}

/** `input=2500000 output=10000000 cached_input=1250000` (micro-dollars per million tokens). */
function describe(p: ModelPrice): string {
  const parts = [`input=${p.input}`, `output=${p.output}`];
  if (p.cachedInput !== undefined) parts.push(`cached_input=${p.cachedInput}`);
  if (p.cacheWrite !== undefined) parts.push(`cache_write=${p.cacheWrite}`);
  if (p.audioInput !== undefined) parts.push(`audio_input=${p.audioInput}`);
  if (p.audioOutput !== undefined) parts.push(`audio_output=${p.audioOutput}`);
  return parts.join(" ");
}
