import type { UploadState } from './ws-client';

/**
 * The page's uploads in flight, for the components that show a progress bar: an upload may start
 * inside the API client (a call that carried a file's bytes), far from the component that asked.
 */
export class Uploads {
  #inFlight = $state.raw<UploadState[]>([]);

  get inFlight(): UploadState[] {
    return this.#inFlight;
  }

  /** The newest unfinished upload of a file of this name, if any. */
  of(fileName: string | null | undefined): UploadState | null {
    if (!fileName) return null;
    return this.#inFlight.findLast((upload) => upload.fileName === fileName) ?? null;
  }

  report(state: UploadState): void {
    const others = this.#inFlight.filter((upload) => upload.fileName !== state.fileName);
    this.#inFlight = state.done ? others : [...others, state];
  }
}

export const uploads = new Uploads();
