/**
 * The parts of the page a download uses. Typed here because the Node-side type check (tests reach
 * this file through the WebSocket client) has no DOM library.
 */
interface DownloadPage {
  document: {
    createElement(tag: 'a'): { href: string; download: string; hidden: boolean; click(): void; remove(): void };
    body: { append(node: unknown): void };
  };
  URL: { createObjectURL(blob: Blob): string; revokeObjectURL(url: string): void };
}

/**
 * Hands bytes the page built to the browser as a download: a Blob behind a temporary link. Serve
 * mode saves exports this way (ApiClient.saveFile); the desktop app writes them through its save
 * dialog instead.
 */
export function downloadFile(fileName: string, contents: string | Uint8Array<ArrayBuffer>, type: string): void {
  const { document, URL } = globalThis as unknown as DownloadPage;
  const url = URL.createObjectURL(new Blob([contents], { type }));
  const link = document.createElement('a');
  link.href = url;
  link.download = fileName;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The download has started by now; the URL only has to outlive the click.
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}
