// `npm start`: build, then launch the desktop app — or, when the Electron runtime cannot be had
// (e.g. its download host is unreachable), say so plainly and start serve mode instead.
import { execFileSync, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const require = createRequire(import.meta.url);
execFileSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' });

let electron = null;
let why = '';
try {
  // In Node, the electron package exports the path of its binary, or throws when it is missing.
  electron = require('electron');
} catch (error) {
  why = String(error.message).split('\n')[0];
}

const child = electron
  ? spawn(electron, [root], { stdio: 'inherit' })
  : (console.log(`Electron runtime not available (${why}).\nStarting the workstation in serve mode instead — open the URL below in a browser:`),
    spawn(process.execPath, [fileURLToPath(new URL('./quadra.mjs', import.meta.url)), 'serve'], { stdio: 'inherit' }));
child.on('exit', (code) => process.exit(code ?? 0));
process.on('SIGINT', () => child.kill('SIGINT'));
