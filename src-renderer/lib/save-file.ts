/**
 * Saves bytes the page built as a download: a Blob behind a temporary link. Works the same in
 * serve mode and in Electron, where the main process shows the save dialog for the download.
 */
export function saveFile(fileName: string, contents: string | Uint8Array<ArrayBuffer>, type: string): void {
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
