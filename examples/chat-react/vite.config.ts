import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
  },
  server: {
    // A port of its own: the backend (`runtime serve`) keeps 3210, and the page reaches it
    // across origins, which the backend allows.
    port: 5173,
    strictPort: true,
  },
});
