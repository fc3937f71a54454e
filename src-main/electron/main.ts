import { app, BrowserWindow, dialog, session, webContents } from 'electron';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CONTENT_SECURITY_POLICY } from '../../src-shared/content-security-policy';
import { createWorkstation } from '../services/create-workstation';
import { withBackendTransports } from '../training/transport';
import { WINDOW_ICON_PATH } from './icon';
import { broadcast, registerApi, registerSaveFile } from './ipc';
import { isWorkerWindow, rendererTransport } from './renderer-transport';
import { utilityTransport } from './utility-transport';

/**
 * The desktop app's main process: owns the store, the training coordinator, the GPU monitor and the
 * benchmark runner (through WorkstationService); training steps run in utility processes (webgpu
 * in hidden windows), never here. This file is the thin shell; everything it composes is tested
 * in plain Node.
 */
const here = path.dirname(fileURLToPath(import.meta.url));
const RENDERER = path.join(here, '../renderer/index.html');
const rendererUrl = pathToFileURL(RENDERER).href;

// Chromium on Linux offers WebGPU (the webgpu workers' windows) only behind these switches.
if (process.platform === 'linux') {
  app.commandLine.appendSwitch('enable-unsafe-webgpu');
  app.commandLine.appendSwitch('enable-features', 'Vulkan');
}

/** The app's own windows: hidden training workers are windows too, but not the user's. */
const appWindows = () => BrowserWindow.getAllWindows().filter((window) => !isWorkerWindow(window));

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  app.on('second-instance', () => {
    const [window] = appWindows();
    if (window) {
      if (window.isMinimized()) window.restore();
      window.focus();
    }
  });
  void app.whenReady().then(start);
}

async function start(): Promise<void> {
  const { service, close } = createWorkstation({
    // build.mjs bundles the training worker and the webgpu worker's page next to this file. webgpu
    // trains in hidden windows: Electron's V8 memory cage blocks dawn.node's readback.
    transport: withBackendTransports(utilityTransport(path.join(here, 'worker-main.mjs')), { webgpu: rendererTransport(path.join(here, 'gpu-worker.html')) }),
    emit: (event, payload) => broadcast(webContents.getAllWebContents(), event, payload),
  });
  const isOurFrame = (url: string) => url.startsWith(rendererUrl);
  registerApi(service, isOurFrame);
  // Exports are saved where the user chooses in the native dialog; the page never names a path.
  registerSaveFile(isOurFrame, () => app.getPath('downloads'));

  // No remote content: every request the page makes must be to a file of ours.
  session.defaultSession.webRequest.onBeforeRequest((details, callback) => {
    callback({ cancel: !(details.url.startsWith('file://') || details.url.startsWith('devtools://')) });
  });
  session.defaultSession.setPermissionRequestHandler((_contents, _permission, callback) => callback(false));
  // The page's own <meta> policy, also as a header wherever responses carry headers.
  session.defaultSession.webRequest.onHeadersReceived((details, callback) => {
    callback({ responseHeaders: { ...details.responseHeaders, 'Content-Security-Policy': [CONTENT_SECURITY_POLICY] } });
  });

  createWindow();
  app.on('activate', () => {
    if (appWindows().length === 0) createWindow();
  });
  // Listening keeps Electron from quitting by itself; the UI window's 'closed' decides (createWindow).
  app.on('window-all-closed', () => undefined);
  let stopping = false;
  app.on('before-quit', (event) => {
    if (stopping) return;
    event.preventDefault();
    stopping = true;
    // Running trainings stop after their current step and keep a checkpoint; then the offload
    // thread ends and the database closes.
    void close().finally(() => app.quit());
  });
}

function createWindow(): void {
  const window = new BrowserWindow({
    width: 1400,
    height: 900,
    minWidth: 900,
    minHeight: 600,
    title: 'Quadra Matrix Workstation',
    icon: WINDOW_ICON_PATH,
    backgroundColor: '#0f1216',
    webPreferences: {
      preload: path.join(here, 'preload.cjs'),
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webSecurity: true,
      spellcheck: false,
      // A middle-click must not open links in new windows.
      disableBlinkFeatures: 'Auxclick',
    },
  });
  window.webContents.on('will-navigate', (event, url) => {
    if (!url.startsWith(rendererUrl)) event.preventDefault();
  });
  window.webContents.setWindowOpenHandler(() => ({ action: 'deny' }));
  // Not 'window-all-closed': it would wait for the hidden worker windows of a webgpu run too.
  window.once('closed', () => {
    if (process.platform !== 'darwin' && appWindows().every((other) => other === window)) app.quit();
  });
  window.webContents.on('render-process-gone', (_event, details) => {
    void dialog.showMessageBox({ type: 'error', message: `The window stopped (${details.reason}). Training runs go on; reopen the window to watch them.` });
  });
  void window.loadFile(RENDERER);
}
