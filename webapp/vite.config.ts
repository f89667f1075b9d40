import { defineConfig } from "vitest/config";

// Everything is bundled (no CDN); the orchestrator serves dist/ at "/".
export default defineConfig({
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  server: {
    proxy: { "/v1": { target: "http://127.0.0.1:8080", ws: true }, "/healthz": "http://127.0.0.1:8080" },
  },
  test: { environment: "node", include: ["tests/**/*.test.ts"] },
});
