import { svelte } from '@sveltejs/vite-plugin-svelte';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';
// With its extension, as Vite's native config loader (Node) will need.
import { CONTENT_SECURITY_POLICY_META } from '../src-shared/content-security-policy.ts';

/**
 * Puts the one Content-Security-Policy (src-shared) into index.html as a <meta>, first in <head> so
 * it governs everything after it: Electron loads the page from disk, where no header carries it.
 */
function contentSecurityPolicyMeta(): Plugin {
  return {
    name: 'quadra:content-security-policy',
    transformIndexHtml: () => [{ tag: 'meta', attrs: { 'http-equiv': 'Content-Security-Policy', content: CONTENT_SECURITY_POLICY_META }, injectTo: 'head-prepend' }],
  };
}

// The renderer builds to dist/renderer: Electron loads it from disk, `quadra serve` serves it.
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: './',
  plugins: [svelte(), contentSecurityPolicyMeta()],
  build: {
    outDir: fileURLToPath(new URL('../dist/renderer', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
  },
});
