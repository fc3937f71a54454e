/**
 * The renderer's Content-Security-Policy, once for every way the page is delivered: serve mode
 * sends it as a header (src-main/server/serve.ts), the Electron app as a header on its session
 * (src-main/electron/main.ts), and the built index.html carries it as a <meta>, injected by
 * src-renderer/vite.config.ts, which is what governs the page Electron loads from file://.
 * (The hidden webgpu worker page, src-main/electron/gpu-worker.html, has its own narrower one.)
 */
const PAGE_DIRECTIVES: ReadonlyArray<readonly [string, string]> = [
  ['default-src', "'self'"],
  // No 'wasm-unsafe-eval': the page compiles no WebAssembly (the simd kernel runs in Node workers).
  ['script-src', "'self'"],
  // Svelte's style: directives; the icon's SVG has its own <style>.
  ['style-src', "'self' 'unsafe-inline'"],
  ['img-src', "'self' data:"],
  // Serve mode's WebSocket and uploads go to the page's own origin.
  ['connect-src', "'self'"],
  ['object-src', "'none'"],
  ['base-uri', "'none'"],
  ['form-action', "'none'"],
];

const policy = (directives: ReadonlyArray<readonly [string, string]>) => directives.map(([name, value]) => `${name} ${value}`).join('; ');

/** As a <meta>: browsers ignore frame-ancestors there, and Chromium logs an error for it. */
export const CONTENT_SECURITY_POLICY_META = policy(PAGE_DIRECTIVES);

/** As a response header: the page's policy, and no site may frame the page. */
export const CONTENT_SECURITY_POLICY = policy([...PAGE_DIRECTIVES, ['frame-ancestors', "'none'"]]);
