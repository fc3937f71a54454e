/** IPC channel names shared by the Electron preload and the main process (kept apart so the preload stays tiny). */
export const IPC_INVOKE = 'quadra:invoke';
export const IPC_EVENT = 'quadra:event';
/** The desktop app's save dialog: the renderer hands over a file's name and bytes, the main process asks where and writes it. */
export const IPC_SAVE_FILE = 'quadra:save-file';
