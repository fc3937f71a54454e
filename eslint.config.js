// Import layers of DESIGN.md §2, enforced here rather than by hope (like VS Code's code-layering rule).
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

const NODE_BUILTINS = [...builtinModules, ...builtinModules.map((name) => `node:${name}`)];

// Matches relative imports that pass through one of our folders, e.g. '../cli/args' or '../../src-main/x'.
const ourFolder = (folders) => `^\\.\\.?/(.*/)?(${folders.join('|')})(/|$)`;

/** One no-restricted-imports config per layer: what that layer may not import, and why. */
const layer = (files, { paths = [], regexes = [], ignores = [] }) => ({
  files,
  ignores,
  rules: {
    'no-restricted-imports': [
      'error',
      {
        paths: paths.map(({ name, message }) => ({ name, message })),
        patterns: regexes.map(({ regex, message }) => ({ regex, message })),
      },
    ],
  },
});

const NO_ELECTRON = { name: 'electron', message: "Only src-main/electron may import 'electron' (DESIGN.md §2)." };

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', 'out/**', 'release/**', 'tests/fixtures/**', '.scratch/**', 'src-main/engine/simd/assembly/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  layer(['src-shared/**'], {
    paths: [
      NO_ELECTRON,
      ...NODE_BUILTINS.map((name) => ({ name, message: 'src-shared is pure TypeScript: no Node built-ins.' })),
    ],
    // src-shared is one flat folder, so any import that climbs out of it ('../…') leaves it.
    regexes: [{ regex: '^\\.\\./', message: 'src-shared imports nothing of ours outside src-shared.' }],
  }),
  // The renderer's build config runs in Node, not in the sandboxed page.
  layer(['src-renderer/**'], {
    ignores: ['src-renderer/vite.config.ts'],
    paths: [
      NO_ELECTRON,
      ...NODE_BUILTINS.map((name) => ({ name, message: 'The renderer is sandboxed: no Node built-ins.' })),
    ],
    regexes: [{ regex: ourFolder(['src-main']), message: 'src-renderer imports only src-shared and its own files.' }],
  }),
  layer(['src-main/**'], {
    paths: [NO_ELECTRON],
    regexes: [{ regex: ourFolder(['src-renderer']), message: 'src-main never imports the renderer.' }],
  }),
  layer(['src-main/{engine,data,store,hardware,bench,training}/**'], {
    paths: [NO_ELECTRON],
    regexes: [
      { regex: ourFolder(['src-renderer']), message: 'src-main never imports the renderer.' },
      { regex: ourFolder(['services', 'server', 'cli', 'electron']), message: 'engine/data/store/hardware/bench/training never import services, server, cli or electron (DESIGN.md §2).' },
    ],
  }),
  // Last, so it wins over the src-main/** block: the one folder allowed to import electron.
  layer(['src-main/electron/**'], {
    regexes: [{ regex: ourFolder(['src-renderer']), message: 'src-main never imports the renderer.' }],
  }),
);
