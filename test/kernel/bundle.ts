// Bundles the matrix's focused suite (test/kernel/inside.test.ts, its helpers and the src/lib it
// uses) into build/kernel/inside.mjs, with `vitest` replaced by test/kernel/harness.ts: each VM then
// starts one node process on one file instead of vitest (see harness.ts). The fixture that is also a
// program (test/fixtures/transfer.mjs: it runs main() when it is the process's own file) stays a
// module of its own, imported by its absolute path.
import {build, type PluginBuild} from 'esbuild'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const BUNDLE = join(root, 'build', 'kernel', 'inside.mjs')

export async function bundleSuite(): Promise<string> {
  await build({
    entryPoints: [join(root, 'test', 'kernel', 'run-inside.ts')],
    outfile: BUNDLE,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    alias: {vitest: join(root, 'test', 'kernel', 'harness.ts')},
    external: ['typescript'],
    plugins: [
      {
        name: 'programs-stay-apart',
        setup(b: PluginBuild) {
          b.onResolve({filter: /fixtures\/transfer\.mjs$/}, (args) => ({path: join(args.resolveDir, args.path), external: true}))
        },
      },
    ],
    banner: {js: "import {createRequire as skfpCreateRequire} from 'node:module'; const require = skfpCreateRequire(import.meta.url);"},
    logLevel: 'warning',
  })
  return BUNDLE
}

