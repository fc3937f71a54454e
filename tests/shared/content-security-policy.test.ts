import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { loadConfigFromFile, type Plugin } from 'vite';
import { describe, expect, it } from 'vitest';
import { CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_META } from '../../src-shared/content-security-policy';

const ROOT = path.resolve(__dirname, '../..');

/** Every file under `dir` (relative to the repository), recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir)).flatMap((name) => {
    const relative = path.join(dir, name);
    return statSync(path.join(ROOT, relative)).isDirectory() ? filesUnder(relative) : [relative];
  });
}

const directives = (policy: string) => new Map(policy.split('; ').map((d) => [d.split(' ')[0]!, d.split(' ').slice(1).join(' ')]));

describe('the Content-Security-Policy', () => {
  it('is the page policy, and as a header also refuses every frame', () => {
    expect(CONTENT_SECURITY_POLICY).toBe(`${CONTENT_SECURITY_POLICY_META}; frame-ancestors 'none'`);
    // Browsers ignore frame-ancestors in a <meta>, and Chromium logs an error for it.
    expect(CONTENT_SECURITY_POLICY_META).not.toContain('frame-ancestors');
    const page = directives(CONTENT_SECURITY_POLICY_META);
    expect(page.get('default-src')).toBe("'self'");
    // The page compiles no WebAssembly and evaluates no strings.
    expect(page.get('script-src')).toBe("'self'");
    expect(page.get('object-src')).toBe("'none'");
    expect(page.get('base-uri')).toBe("'none'");
    expect(page.get('form-action')).toBe("'none'");
    expect(page.get('connect-src')).toBe("'self'");
  });

  it("goes into the built index.html first in <head>: the renderer's vite config injects it", async () => {
    const loaded = await loadConfigFromFile({ command: 'build', mode: 'production' }, path.join(ROOT, 'src-renderer/vite.config.ts'), ROOT, 'silent');
    const plugin = (loaded?.config.plugins ?? []).flat().find((p): p is Plugin => !!p && typeof p === 'object' && 'name' in p && p.name === 'quadra:content-security-policy');
    const transform = plugin?.transformIndexHtml as (() => unknown) | undefined;
    expect(transform?.()).toEqual([{ tag: 'meta', attrs: { 'http-equiv': 'Content-Security-Policy', content: CONTENT_SECURITY_POLICY_META }, injectTo: 'head-prepend' }]);
  });

  it('is spelled nowhere else: serve mode, Electron and the page source all take it from src-shared', () => {
    // The webgpu worker page keeps its own narrower policy.
    const own = new Set([path.join('src-main', 'electron', 'gpu-worker.html')]);
    const spelled = [...filesUnder('src-main'), ...filesUnder('src-renderer')].filter(
      (file) => !own.has(file) && /\.(ts|mts|mjs|js|svelte|html)$/.test(file) && /default-src|http-equiv="Content-Security-Policy"/i.test(readFileSync(path.join(ROOT, file), 'utf8')),
    );
    expect(spelled).toEqual([]);
    for (const file of ['src-main/server/serve.ts', 'src-main/electron/main.ts']) {
      expect(readFileSync(path.join(ROOT, file), 'utf8'), file).toMatch(/\bCONTENT_SECURITY_POLICY\b.*from '\.\.\/\.\.\/src-shared\/content-security-policy'/);
    }
  });
});
