import { compileModule } from 'svelte/compiler';
import type { Plugin } from 'vite';
import { defineConfig } from 'vitest/config';

/**
 * The renderer's state classes live in runes modules (*.svelte.ts). Unit tests import them as the
 * app does: TypeScript stripped by Vite, then compiled by Svelte for the browser, so $state and
 * $derived are live (the server output would make them plain fields).
 */
function svelteRunes(): Plugin {
  return {
    name: 'quadra:svelte-runes',
    enforce: 'post',
    transform(code, id) {
      if (!/\.svelte\.ts$/.test(id.split('?')[0]!)) return null;
      const { js } = compileModule(code, { filename: id, generate: 'client' });
      return { code: js.code, map: js.map };
    },
  };
}

// Unit and integration tests first, in parallel; then the browser end-to-end tests, one file at a
// time, so Chromium, servers and workers do not compete with the engine tests for the 2 cores.
export default defineConfig({
  test: {
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      { extends: true, plugins: [svelteRunes()], test: { name: 'unit', include: ['tests/**/*.test.ts'], sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'e2e', include: ['e2e/**/*.test.ts'], fileParallelism: false, sequence: { groupOrder: 1 } } },
    ],
  },
});
