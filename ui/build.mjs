// Builds the UI into web/dist (embedded by ui.go), or with --tests the unit
// tests into test-out/ for `node --test`.
import * as esbuild from 'esbuild';
import { mkdirSync, readdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const tests = process.argv.includes('--tests');

if (tests) {
  rmSync('test-out', { recursive: true, force: true });
  const entryPoints = readdirSync('test').filter((f) => f.endsWith('.test.ts')).map((f) => `test/${f}`);
  await esbuild.build({
    entryPoints, bundle: true, platform: 'node', format: 'esm', outdir: 'test-out',
    outExtension: { '.js': '.mjs' }, logLevel: 'warning', target: 'node20',
  });
} else {
  rmSync('web/dist', { recursive: true, force: true });
  mkdirSync('web/dist', { recursive: true });
  const result = await esbuild.build({
    entryPoints: ['src/main.tsx'], bundle: true, minify: true, sourcemap: false,
    format: 'esm', target: ['chrome110', 'firefox110', 'safari16'],
    jsx: 'automatic', jsxImportSource: 'preact',
    outdir: 'web/dist', entryNames: 'app-[hash]', metafile: true, logLevel: 'warning',
  });
  // index.html names the bundles by their content hash, so they can be
  // cached for good; each is stored gzipped beside itself for the server.
  let html = readFileSync('src/index.html', 'utf8');
  let raw = 0, gz = 0;
  for (const f of Object.keys(result.metafile.outputs)) {
    const b = readFileSync(f);
    const z = gzipSync(b, { level: 9 });
    writeFileSync(`${f}.gz`, z);
    raw += b.length;
    gz += z.length;
    const name = f.slice('web/dist/'.length);
    html = html.replace(name.endsWith('.css') ? 'app.css' : 'app.js', name);
  }
  writeFileSync('web/dist/index.html', html);
  writeFileSync('web/dist/.keep', '');
  console.log(`ui: web/dist built, ${(raw / 1024).toFixed(1)} KiB, ${(gz / 1024).toFixed(1)} KiB gzipped`);
}
