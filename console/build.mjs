// Builds the console into the Python package that serves it (api/console/static/), which is
// committed: the service runs, and CI tests, without Node. Run: npm ci && npm run build.
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'api', 'console', 'static');
const modules = join(here, 'node_modules');

await rm(out, { recursive: true, force: true });
await mkdir(join(out, 'swagger'), { recursive: true });

await build({
  entryPoints: [join(here, 'src', 'main.js')],
  bundle: true,
  format: 'esm',
  minify: true,
  target: 'es2022',
  legalComments: 'eof',
  outfile: join(out, 'console.js'),
  logLevel: 'warning',
});

// MapLibre's stylesheet first, ours after it.
const css = [
  await readFile(join(modules, 'maplibre-gl', 'dist', 'maplibre-gl.css'), 'utf8'),
  await readFile(join(here, 'src', 'console.css'), 'utf8'),
].join('\n');
await writeFile(join(out, 'console.css'), css);

const copies = [
  // MapLibre's worker, loaded by URL (setWorkerUrl), from the same origin.
  ['maplibre-gl/dist/maplibre-gl-worker.mjs', 'maplibre-gl-worker.mjs'],
  ['maplibre-gl/LICENSE.txt', 'LICENSE.maplibre-gl.txt'],
  // Swagger UI for /docs, so that it needs no CDN either.
  ['swagger-ui-dist/swagger-ui-bundle.js', 'swagger/swagger-ui-bundle.js'],
  ['swagger-ui-dist/swagger-ui.css', 'swagger/swagger-ui.css'],
  ['swagger-ui-dist/LICENSE', 'swagger/LICENSE'],
];
for (const [from, to] of copies) {
  if (to.endsWith('.js') || to.endsWith('.mjs')) {
    // Source maps are not shipped: drop the comment that would make devtools ask for one.
    const code = await readFile(join(modules, from), 'utf8');
    await writeFile(join(out, to), code.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n'));
  } else {
    await copyFile(join(modules, from), join(out, to));
  }
}
await copyFile(join(here, 'src', 'index.html'), join(out, 'index.html'));
console.log('built into api/console/static/');
