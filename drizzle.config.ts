import { defineConfig } from "drizzle-kit";

// `npx drizzle-kit generate` turns src/db/schema into SQL migrations under drizzle/ (offline).
export default defineConfig({
  dialect: "postgresql",
  schema: "./src/db/schema/index.ts",
  out: "./drizzle",
});
