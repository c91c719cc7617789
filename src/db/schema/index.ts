/** Every table of the relay's state. drizzle-kit reads this file to generate drizzle/. */
export * from "./tokens.js";
export * from "./providers.js";
export * from "./issuers.js";
export * from "./pools.js";
export * from "./usage.js";
export * from "./settings.js";
export * from "./plans.js";
export * from "./logins.js";
