// Run first by `npm run package`: says plainly when this Node cannot package the app, before a
// long build ends in an obscure error. electron-builder 26 rebuilds better-sqlite3 for Electron's
// ABI with @electron/rebuild 4, which runs node-gyp 12 and declares Node >= 22.12. On Node 20.20
// electron-builder 26.17 and @electron/rebuild 4.2.1 load and run the rebuild (tried up to
// node-gyp's download of Electron's headers), so Node 20 gets a warning rather than a refusal;
// below node-gyp 12's own range nothing is tried.
// `--node-version X` checks X instead of this process's version (for the tests).

/** node-gyp 12's engines: ^20.17.0 || >=22.9.0. */
const NODE_GYP_MINIMUM = { 20: [20, 17, 0], 22: [22, 9, 0] };
/** @electron/rebuild 4's engines: >=22.12.0. */
const REBUILD_DECLARED = [22, 12, 0];

function parse(version) {
  const match = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version);
  return match ? match.slice(1, 4).map(Number) : null;
}

function atLeast(version, minimum) {
  for (let i = 0; i < 3; i++) if (version[i] !== minimum[i]) return version[i] > minimum[i];
  return true;
}

/** 'ok', 'warn' (runs, but @electron/rebuild does not support it) or 'fail'. */
function packagingSupport(version) {
  const [major] = version;
  const nodeGyp = major === 20 ? atLeast(version, NODE_GYP_MINIMUM[20]) : major >= 22 && atLeast(version, NODE_GYP_MINIMUM[22]);
  if (!nodeGyp) return 'fail';
  return atLeast(version, REBUILD_DECLARED) ? 'ok' : 'warn';
}

function main() {
  const flag = process.argv.indexOf('--node-version');
  const given = flag >= 0 ? (process.argv[flag + 1] ?? '') : process.version;
  const version = parse(given);
  if (!version) {
    console.error(`check-package-node: cannot read a Node version from "${given}"`);
    return 2;
  }
  const shown = `v${version.join('.')}`;
  const support = packagingSupport(version);
  if (support === 'fail') {
    console.error(`packaging needs Node ≥ 22.12 (electron-builder's @electron/rebuild 4.x declares it; Node 20.17+ and 22.9+ also work, unsupported); you have ${shown}.`);
    return 1;
  }
  if (support === 'warn') {
    console.warn(
      `note: packaging on Node ${shown}, which electron-builder's @electron/rebuild 4.x does not support (it declares Node ≥ 22.12). ` +
        'It works on Node 20.20; if rebuilding the native modules for Electron fails, use Node 22.12+.',
    );
  }
  return 0;
}

process.exitCode = main();
