import { defineConfig } from "vite";

// The built workspace lands inside the Python package, which serves it at "/" (routes_web.py)
// and ships it in the wheel.
export default defineConfig({
  root: ".",
  base: "/",
  build: {
    outDir: "../src/hearth/static",
    emptyOutDir: true,
    assetsDir: "assets",
    chunkSizeWarningLimit: 1024,
  },
  server: {
    proxy: {
      "/api": { target: "http://127.0.0.1:8765", ws: true },
    },
  },
});
