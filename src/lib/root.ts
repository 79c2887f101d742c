/**
 * The package root (holds bpf/, probes/, templates/, build/): the nearest directory above this module
 * with a package.json. This module runs as src/lib/root.ts (tests) and inside dist/cli.js (the
 * bundled CLI), at different depths.
 */
import {existsSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

export const PROJECT_ROOT = packageRoot(dirname(fileURLToPath(import.meta.url)))

function packageRoot(dir: string): string {
  for (let d = dir; ; d = dirname(d)) {
    if (existsSync(join(d, 'package.json'))) return d
    if (dirname(d) === d) throw new Error(`no package.json above ${dir}`)
  }
}

/** Where `skfp build` puts the programs it makes from probes/. */
export const OWN_BIN_DIR = join(PROJECT_ROOT, 'build', 'bin')
export const programPath = (name: string, root = PROJECT_ROOT) => join(root, 'build', 'bin', name)
