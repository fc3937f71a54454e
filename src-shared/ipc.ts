/** IPC channel names shared by the Electron preload and the main process (kept apart so the preload stays tiny). */
export const IPC_INVOKE = 'quadra:invoke';
export const IPC_EVENT = 'quadra:event';
