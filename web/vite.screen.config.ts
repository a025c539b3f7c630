import { defineConfig } from "vite";

// The screen model (screen/model.js) is bundled with its emulator into one file inside the
// Python package, which the session host runs with Node.js (src/hearth/terminals/screen.py).
export default defineConfig({
  ssr: { noExternal: true, target: "node" },
  build: {
    ssr: "screen/model.js",
    outDir: "../src/hearth/terminals",
    emptyOutDir: false,
    minify: false,
    rollupOptions: { output: { entryFileNames: "screen-model.mjs", format: "es" } },
  },
});
