/**
 * `skfp build`: compiles bpf/*.bpf.c into build/<target>[-debug]/, probes/*.c into build/bin/ and,
 * where Go is installed, probes/NAME/main.go into build/bin/NAME (the bench's and the tests' Go relay),
 * skipping outputs whose inputs (all sources and headers, and the argv) hash the same as last time.
 */
import {createHash} from 'node:crypto'
import {existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync, rmSync} from 'node:fs'
import {basename, dirname, join} from 'node:path'
import {environmentError} from './errors.js'
import {isInstalled, type Cmd, type Runner} from './exec.js'
import {compileBpf, compileProgram, multiarchInclude, type BpfTarget} from './tools/clang.js'
import {goBuild} from './tools/go.js'
import {FASTPATH_VARIANTS, INTERCEPT_OBJECT, READERS_VARIANTS, type ReadersVariantName, type VariantName} from './datapath.js'
import {PROJECT_ROOT, programPath} from './root.js'

export {PROJECT_ROOT, programPath} from './root.js'

export interface BuildOptions {
  target: BpfTarget
  debug: boolean
  root?: string
}

export interface BuildOutput {
  source: string
  output: string
  rebuilt: boolean
}

export interface BuildResult {
  objects: BuildOutput[]
  programs: BuildOutput[]
  /** Programs not built, and why (Go not installed). */
  skipped: {source: string; reason: string}[]
}

export function objectDir(opts: BuildOptions): string {
  return join(opts.root ?? PROJECT_ROOT, 'build', `${opts.target}${opts.debug ? '-debug' : ''}`)
}

/** The datapath objects: bpf/intercept.bpf.c once, bpf/fastpath.bpf.c and bpf/readers.bpf.c once per variant. */
export const OBJECTS: {source: string; file: string; defines: string[]}[] = [
  {source: 'intercept.bpf.c', file: INTERCEPT_OBJECT, defines: []},
  ...FASTPATH_VARIANTS.map((v) => ({source: 'fastpath.bpf.c', file: v.file, defines: v.defines})),
  ...READERS_VARIANTS.map((v) => ({source: 'readers.bpf.c', file: v.file, defines: v.defines})),
]
export const interceptObject = (opts: BuildOptions) => join(objectDir(opts), INTERCEPT_OBJECT)
export const fastpathObject = (opts: BuildOptions, variant: VariantName) => join(objectDir(opts), FASTPATH_VARIANTS.find((v) => v.name === variant)!.file)
export const readersObject = (opts: BuildOptions, variant: ReadersVariantName) => join(objectDir(opts), READERS_VARIANTS.find((v) => v.name === variant)!.file)

function filesUnder(dir: string, match: (name: string) => boolean): string[] {
  if (!existsSync(dir)) return []
  return readdirSync(dir, {recursive: true, withFileTypes: true})
    .filter((e) => e.isFile() && match(e.name))
    .map((e) => join(e.parentPath ?? (e as unknown as {path: string}).path, e.name))
    .sort()
}

function inputsHash(files: string[], cmd: Cmd): string {
  const h = createHash('sha256')
  h.update(JSON.stringify(cmd.args))
  for (const f of files) h.update(f).update(readFileSync(f))
  return h.digest('hex')
}

/** Header checks up front, so a missing package is named instead of a compiler error. */
export function checkHeaders(): void {
  const needs: [string, string][] = [
    [`${multiarchInclude()}/asm/types.h`, 'linux-libc-dev'],
    ['/usr/include/bpf/bpf_helpers.h', 'libbpf-dev'],
    ['/usr/include/linux/bpf.h', 'linux-libc-dev'],
  ]
  for (const [file, pkg] of needs) if (!existsSync(file)) throw environmentError(`${file} is missing`, `install it: apt-get install ${pkg}`)
}

async function compileIfStale(runner: Runner, cmd: Cmd, inputs: string[], source: string, output: string): Promise<BuildOutput> {
  const stamp = `${output}.sha256`
  const hash = inputsHash(inputs, cmd)
  if (existsSync(output) && existsSync(stamp) && readFileSync(stamp, 'utf8') === hash) return {source, output, rebuilt: false}
  mkdirSync(dirname(output), {recursive: true})
  rmSync(stamp, {force: true})
  await runner.run(cmd, {timeoutMs: 180_000})
  writeFileSync(stamp, hash)
  return {source, output, rebuilt: true}
}

const bpfInputs = (bpfDir: string) => filesUnder(bpfDir, (n) => n.endsWith('.c') || n.endsWith('.h'))

/** One more object of bpf/SOURCE with extra defines (the bench's unguarded baseline), compiled only
 * when it is missing or bpf/ or the command changed, like those of build(). */
export async function buildBpfVariant(runner: Runner, source: string, output: string, defines: string[]): Promise<void> {
  const bpfDir = join(PROJECT_ROOT, 'bpf')
  const src = join(bpfDir, source)
  await compileIfStale(runner, compileBpf(src, output, 'bpfel', false, defines), bpfInputs(bpfDir), src, output)
}

/** Plans only: every compile command, for freshness checks without running anything. */
function bpfJobs(opts: BuildOptions) {
  const root = opts.root ?? PROJECT_ROOT
  const bpfDir = join(root, 'bpf')
  const inputs = bpfInputs(bpfDir)
  return OBJECTS.map((o) => {
    const source = join(bpfDir, o.source)
    const output = join(objectDir(opts), o.file)
    return {source, output, inputs, cmd: compileBpf(source, output, opts.target, opts.debug, o.defines)}
  })
}

/** Libraries a program of probes/ links against. */
const LINKED_LIBS: Record<string, string[]> = {'skfp-attach': ['-lbpf']}

function programJobs(root: string) {
  const dir = join(root, 'probes')
  const headers = filesUnder(dir, (n) => n.endsWith('.h'))
  return filesUnder(dir, (n) => n.endsWith('.c')).map((source) => {
    const output = programPath(basename(source, '.c'), root)
    return {source, output, inputs: [source, ...headers], cmd: compileProgram(source, output, LINKED_LIBS[basename(source, '.c')])}
  })
}

/** probes/NAME/main.go: one job each, when the Go compiler is installed. */
function goJobs(root: string) {
  const dir = join(root, 'probes')
  const sources = filesUnder(dir, (n) => n === 'main.go')
  return sources.map((source) => {
    const output = programPath(basename(dirname(source)), root)
    return {source, output, inputs: [source], cmd: goBuild(source, output, join(root, 'build', 'go'))}
  })
}

/** Whether every output exists and is current (the Go programs only where Go is installed). */
export function isBuilt(opts: BuildOptions): boolean {
  const root = opts.root ?? PROJECT_ROOT
  return [...bpfJobs(opts), ...programJobs(root), ...(isInstalled('go') ? goJobs(root) : [])].every(
    (j) => existsSync(j.output) && existsSync(`${j.output}.sha256`) && readFileSync(`${j.output}.sha256`, 'utf8') === inputsHash(j.inputs, j.cmd),
  )
}

export async function build(runner: Runner, opts: BuildOptions): Promise<BuildResult> {
  checkHeaders()
  const root = opts.root ?? PROJECT_ROOT
  const objects: BuildOutput[] = []
  for (const j of bpfJobs(opts)) objects.push(await compileIfStale(runner, j.cmd, j.inputs, j.source, j.output))
  const programs: BuildOutput[] = []
  for (const j of programJobs(root)) programs.push(await compileIfStale(runner, j.cmd, j.inputs, j.source, j.output))
  const skipped: BuildResult['skipped'] = []
  const go = isInstalled('go')
  for (const j of goJobs(root)) {
    if (go) programs.push(await compileIfStale(runner, j.cmd, j.inputs, j.source, j.output))
    else skipped.push({source: j.source, reason: 'go not installed (apt-get install golang-go)'})
  }
  return {objects, programs, skipped}
}
