/** Shared by the integration tests: run the real CLI, make sandboxes, read kernel state. */
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import {existsSync, mkdirSync, readdirSync} from 'node:fs'
import {join} from 'node:path'
import {expect} from 'vitest'
import {PROJECT_ROOT} from '../../src/lib/build.js'
import {ExecaRunner} from '../../src/lib/exec.js'
import {cgroup2Mount} from '../../src/lib/host.js'
import * as ip from '../../src/lib/tools/ip.js'
import {forgetVerdict} from '../../src/lib/teardown.js'
import {Sandbox} from '../../src/lib/sandbox.js'
import {multiarchInclude} from '../../src/lib/tools/clang.js'
import {expectedSha} from '../fixtures/transfer.mjs'
import {TEST_PREFIX} from './prefix.js'

export {TEST_PREFIX}

export const runner = new ExecaRunner()
/** How long one CLI run or transfer may take: longer inside the kernel matrix's emulated VMs. */
const SLOW_MS = Number(process.env.SKFP_TEST_SLOW_MS ?? 0)
export const FIXTURE = join(PROJECT_ROOT, 'test', 'fixtures', 'transfer.mjs')

/** For afterAll of a file whose runs pin the self-test's verdict (doctor, or `up` with the default
 * --fastpath auto): the verdict lasts the boot, the test leaves the host as it found it. */
export const removeVerdict = forgetVerdict

/** Integration tests need root; in CI (and anywhere) they fail rather than skip when they cannot run. */
export function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new Error('integration tests need root: run `npm test` as root')
}

export interface CliResult {
  exitCode: number
  stdout: string
  stderr: string
  json: any
}

/** Runs the real CLI; wrapper is an argv prefix (setpriv, unshare …) to run it under. */
export async function skfp(args: string[], env: Record<string, string> = {}, wrapper: string[] = []): Promise<CliResult> {
  const argv = [...wrapper, process.execPath, join(PROJECT_ROOT, 'bin', 'run.js'), ...args]
  const r = await execa(argv[0], argv.slice(1), {reject: false, env: {NODE_ENV: 'production', ...env}, timeout: 170_000 + SLOW_MS})
  let json: unknown
  try {
    json = JSON.parse(String(r.stdout))
  } catch {
    json = undefined
  }
  return {exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), json}
}

/** A fresh sandbox name: TEST_PREFIX + what + a short random suffix. */
export const sandboxName = (what: string) => `${TEST_PREFIX}${what}-${randomBytes(2).toString('hex')}`

export async function withSandbox<T>(what: string, body: (sb: Sandbox) => Promise<T>): Promise<T> {
  requireRoot()
  const sb = await Sandbox.create(runner, sandboxName(what))
  try {
    return await body(sb)
  } finally {
    await sb.destroy()
  }
}

export async function transfer(sb: Sandbox, netns: string, args: string[]): Promise<any> {
  const r = await sb.run(netns, [process.execPath, FIXTURE, ...args], {timeoutMs: 150_000 + SLOW_MS})
  return JSON.parse(r.stdout.trim().split('\n').pop()!)
}

export async function status(instance: string): Promise<any> {
  const r = await skfp(['status', '--instance', instance, '--json'])
  expect(r.exitCode, r.stderr).toBe(0)
  return r.json.instances[0]
}

export function upArgs(sb: Sandbox, netns: string, extra: string[] = []): string[] {
  return ['up', '--instance', sb.name, '--netns', netns, '--cgroup', sb.cgroup, '--fastpath', 'all', '--json', ...extra]
}

/** What is left of an instance: pins, and skfp programs attached to its cgroup. */
export async function leftovers(sb: Sandbox): Promise<string[]> {
  const left: string[] = []
  const dir = `/sys/fs/bpf/skfp/${sb.name}`
  if (existsSync(dir)) left.push(`pins: ${readdirSync(dir).join(',')}`)
  if (existsSync(sb.cgroup)) {
    const r = await runner.run({tool: 'bpftool', args: ['-j', 'cgroup', 'show', sb.cgroup]})
    const attached = JSON.parse(r.stdout || '[]')
    if (attached.length) left.push(`cgroup attachments: ${JSON.stringify(attached)}`)
  }
  return left
}

/** test/fixtures/foreign.bpf.c compiled: programs "someone else" attaches (sock_ops and tc). */
export async function foreignObject(): Promise<string> {
  const dir = join(PROJECT_ROOT, 'build', 'test')
  mkdirSync(dir, {recursive: true})
  const obj = join(dir, 'foreign.bpf.o')
  await runner.run({tool: 'clang', args: ['-O2', '-g', '-target', 'bpf', `-I${multiarchInclude()}`, '-c', join(PROJECT_ROOT, 'test', 'fixtures', 'foreign.bpf.c'), '-o', obj]})
  return obj
}

/** Sockets leave the sockhash as they close: waits (up to 5 s) for it to be empty; returns what is left. */
export async function socketsDrainTo0(instance: string): Promise<number> {
  let sockets = -1
  for (let i = 0; i < 50 && sockets !== 0; i++) {
    sockets = (await status(instance)).fastpath.sockets
    if (sockets !== 0) await new Promise((r) => setTimeout(r, 100))
  }
  return sockets
}

/** A pair transfer arrived intact both ways (transfer.mjs's seeded patterns). */
export function expectIntact(r: {serverReceivedSha: string; clientReceivedSha: string}, seed: string, bytes: number): void {
  expect(r.serverReceivedSha, `${seed} up`).toBe(expectedSha(`${seed}-up`, bytes))
  expect(r.clientReceivedSha, `${seed} down`).toBe(expectedSha(`${seed}-down`, bytes))
}

/** The instance put exactly `sockets` sockets into the sockhash and redirected bytes between them. */
export async function expectRedirected(instance: string, sockets: number): Promise<void> {
  const s = await status(instance)
  expect(s.counters.socketsAdded).toBe(sockets)
  expect(s.counters.bytesRedirected).toBeGreaterThan(0)
}

/** The CLI with args, running: its stdout and stderr as they come, and a wait for a line there. */
export function startCli(args: string[], timeoutMs = 120_000) {
  const child = execa(process.execPath, [join(PROJECT_ROOT, 'bin', 'run.js'), ...args], {reject: false, all: true, env: {NODE_ENV: 'production'}, timeout: timeoutMs})
  let all = ''
  const waiters = new Set<() => void>()
  child.all!.on('data', (d) => {
    all += String(d)
    for (const w of waiters) w()
  })
  child.on('exit', () => {
    for (const w of waiters) w()
  })
  /** Resolves once re matches the output so far; rejects if the CLI exits first. */
  const waitFor = (re: RegExp) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (re.test(all)) resolve()
        else if (child.exitCode !== null || child.signalCode !== null) reject(new Error(`exited before ${re}: ${all}`))
        else return
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })
  return {child, waitFor, output: () => all}
}

/** The CLI with args, sent `signal` once `line` shows on its stdout or stderr (a step it says it
 * is at); its exit code and both outputs. */
export async function interruptedAt(args: string[], line: RegExp, signal: NodeJS.Signals) {
  const {child, waitFor} = startCli(args)
  await waitFor(line)
  child.kill(signal)
  const r = await child
  return {exitCode: r.exitCode ?? -1, all: String(r.all)}
}

/** What a run of skfp's own sandbox NAME (doctor's skfp-doctor, bench's skfp-bench) could leave:
 * its namespaces, its cgroup, its instance's pins. */
export async function namedLeftovers(name: string): Promise<string[]> {
  const cg = cgroup2Mount()
  return [
    ...(await ip.netnsList(runner)).filter((n) => n.startsWith(name)).map((n) => `netns ${n}`),
    ...(cg ? readdirSync(cg).filter((n) => n.startsWith(name)).map((n) => `cgroup ${n}`) : []),
    ...(existsSync(`/sys/fs/bpf/skfp/${name}`) ? [`pins /sys/fs/bpf/skfp/${name}`] : []),
  ]
}
