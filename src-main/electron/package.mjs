// `npm run package`: electron-builder, then the Node build of the native modules back in place.
//
// electron-builder's npmRebuild rebuilds better-sqlite3 (and tfjs-node when installed) in this
// project's own node_modules for Electron's ABI, and node-gyp deletes the module's build/ folder
// first: afterwards (or after a rebuild that failed half-way, e.g. offline) the tests and the CLI,
// which run on Node, could not open the store. So the Node build is rebuilt here whatever
// electron-builder's outcome, and electron-builder's exit status is passed on.
import { spawnSync } from 'node:child_process';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx';
const NATIVE = ['better-sqlite3'];

const built = spawnSync(npx, ['electron-builder', '--config', 'electron-builder.yml', ...process.argv.slice(2)], { stdio: 'inherit', shell: process.platform === 'win32' });
console.log(`\nRestoring the Node build of ${NATIVE.join(', ')} for the tests and the CLI (npm rebuild)…`);
const restored = spawnSync(npm, ['rebuild', ...NATIVE], { stdio: 'inherit', shell: process.platform === 'win32' });
if (restored.status !== 0) {
  console.error(`npm rebuild ${NATIVE.join(' ')} failed (exit ${restored.status ?? restored.signal}); run it yourself before \`npm test\` or the CLI.`);
}
process.exit(built.status ?? 1);
