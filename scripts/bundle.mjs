// Bundles src/cli.ts and its dependencies into dist/cli.js (see src/cli.ts for why). tsc checks the
// types (npm run build:ts runs it first, without emitting); this only strips them and joins the files.
import {build} from 'esbuild'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
await build({
  entryPoints: [join(root, 'src', 'cli.ts')],
  outfile: join(root, 'dist', 'cli.js'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: 'linked',
  // oclif reads a tsconfig with TypeScript only for a CLI run from its .ts sources, never here
  external: ['typescript'],
  // the CommonJS dependencies call require(), which an ES module does not have
  banner: {js: "import {createRequire as skfpCreateRequire} from 'node:module'; const require = skfpCreateRequire(import.meta.url);"},
  logLevel: 'warning',
})
