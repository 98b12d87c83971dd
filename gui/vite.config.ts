import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

// `npm run dev` serves the app with hot reload and proxies every API path to a
// running broker: JUNCTION_URL (default http://127.0.0.1:8080).
declare const process: { env: Record<string, string | undefined> };
const broker = process.env.JUNCTION_URL ?? 'http://127.0.0.1:8080';
const api = ['/v1', '/varz', '/connz', '/healthz', '/readyz', '/metrics'];

export default defineConfig({
  plugins: [preact()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    chunkSizeWarningLimit: 600,
  },
  server: {
    host: '127.0.0.1',
    port: 5173,
    proxy: Object.fromEntries(
      api.map((p) => [p, { target: broker, changeOrigin: true, ws: p === '/v1' }]),
    ),
  },
});
