import { fileURLToPath } from 'node:url';

/**
 * The window's icon (BrowserWindow `icon`), which Linux and Windows show in the title bar and task
 * switcher; macOS ignores it and uses the bundle's .icns. Both this source file and its bundle,
 * dist/electron/main.mjs, sit two folders below the app root, and electron-builder.yml packs the
 * file into the asar (Electron reads images from there).
 */
export const WINDOW_ICON_PATH = fileURLToPath(new URL('../../resources/icons/png/256x256.png', import.meta.url));
