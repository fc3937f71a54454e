import os from 'node:os';
import path from 'node:path';

/** Electron's app.getPath('userData') folder name: the productName of electron-builder.yml. */
export const PRODUCT_NAME = 'Quadra Matrix Workstation';
export const DATABASE_FILE_NAME = 'quadra.sqlite';

/**
 * Where the database lives: $QUADRA_DB if set, else quadra.sqlite in the folder Electron uses
 * for userData, so the CLI and the app share one file without Electron here.
 * Linux: $XDG_CONFIG_HOME or ~/.config; macOS: ~/Library/Application Support; Windows: %APPDATA%.
 */
export function defaultDatabasePath(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  const override = env.QUADRA_DB;
  if (override !== undefined && override !== '') return override;
  if (platform === 'win32') {
    const home = env.USERPROFILE || os.homedir();
    const appData = env.APPDATA || path.win32.join(home, 'AppData', 'Roaming');
    return path.win32.join(appData, PRODUCT_NAME, DATABASE_FILE_NAME);
  }
  const home = env.HOME || os.homedir();
  const appData =
    platform === 'darwin' ? path.posix.join(home, 'Library', 'Application Support') : env.XDG_CONFIG_HOME || path.posix.join(home, '.config');
  return path.posix.join(appData, PRODUCT_NAME, DATABASE_FILE_NAME);
}
