/**
 * `skfp bench`: its own sandbox (skfp-bench: namespaces, child cgroup, instance), the scenarios one
 * after another (TCP and UDP in rounds: scenarios.ts), everything removed at the end, also on failure and on Ctrl-C.
 */
import {interruptSignal} from '../interrupt.js'
import {existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {build, isBuilt} from '../build.js'
import {usageError} from '../errors.js'
import {resolveTool, type Runner} from '../exec.js'
import {cgroup2Mount, requireRoot} from '../host.js'
import {PIN_ROOT} from '../pins.js'
import {removeLeftovers, Sandbox} from '../sandbox.js'
import * as ip from '../tools/ip.js'
import {renderChart} from './chart.js'
import {describeMachine} from './machine.js'
import {checkTargets, udpWithRatios, withRatios} from './report.js'
import {runTcpScenarios, runUdpScenarios, type BenchContext} from './scenarios.js'
import {runApps} from './apps.js'
import {APP_SCENARIOS, SCENARIOS, UDP_SCENARIOS, type AppScenarioName, type BenchResult, type ScenarioName, type UdpScenarioName} from './types.js'

/** Every scenario name --scenarios takes: the TCP ones, the UDP ones, the applications. */
export const ALL_SCENARIOS = [...SCENARIOS, ...UDP_SCENARIOS, ...APP_SCENARIOS]
export type AnyScenarioName = ScenarioName | UdpScenarioName | AppScenarioName

export const BENCH_NAME = 'skfp-bench'

export interface BenchOptions {
  seconds: number
  /** Unpinned throughput runs per scenario (the median counts). */
  runs: number
  scenarios: AnyScenarioName[]
  /** Progress lines (stderr). */
  say: (line: string) => void
}

export async function runBench(runner: Runner, opts: BenchOptions): Promise<BenchResult> {
  await prepareBench(runner)
  const all = await inBenchSandbox(runner, opts.say, async ({sb, workDir, signal}) => {
    const ctx: BenchContext = {runner, sb, name: sb.name, cgroup: sb.cgroup, seconds: opts.seconds, runs: opts.runs, workDir, signal, topology: {}}
    const tcp = await runTcpScenarios(ctx, opts.scenarios, opts.say)
    const udp = await runUdpScenarios(ctx, opts.scenarios, opts.say)
    const appNames = APP_SCENARIOS.filter((n) => opts.scenarios.includes(n))
    const apps = appNames.length ? await runApps(ctx, appNames, (line) => opts.say(`  ${line}`)) : []
    return {tcp, udp, apps}
  })
  const scenarios = withRatios(all.tcp)
  const udp = udpWithRatios(all.udp)
  return {machine: describeMachine(), durationS: opts.seconds, runs: opts.runs, scenarios, udp, apps: all.apps, targets: checkTargets(scenarios, udp, all.apps), clean: await isClean(runner)}
}

/** What every benchmark needs before its sandbox: root, iperf3, the built datapath and probes. */
export async function prepareBench(runner: Runner): Promise<void> {
  requireRoot()
  resolveTool('iperf3')
  const target = {target: 'bpfel' as const, debug: false}
  if (!isBuilt(target)) await build(runner, target)
}


export interface BenchSandbox {
  sb: Sandbox
  /** A private directory for generated files, removed with the sandbox. */
  workDir: string
  /** Aborted on Ctrl-C, after every process in the sandbox's cgroup was killed. */
  signal: AbortSignal
}

/**
 * Runs body in a fresh skfp-bench sandbox (a crashed run's leftovers swept first) and removes it
 * afterwards, also on failure and Ctrl-C.
 */
export async function inBenchSandbox<T>(runner: Runner, say: (line: string) => void, body: (bench: BenchSandbox) => Promise<T>): Promise<T> {
  await removeLeftovers(runner, BENCH_NAME)
  const sb = await Sandbox.create(runner, BENCH_NAME)
  const workDir = mkdtempSync(join(tmpdir(), `${BENCH_NAME}-`))
  // Ctrl-C (src/lib/interrupt.ts): kill everything in the sandbox's cgroup now; the body stops at
  // its next step and the finally below removes the sandbox
  const onSignal = () => killCgroupProcesses(sb.cgroup)
  interruptSignal.addEventListener('abort', onSignal, {once: true})
  try {
    return await body({sb, workDir, signal: interruptSignal})
  } finally {
    interruptSignal.removeEventListener('abort', onSignal)
    await sb.destroy()
    rmSync(workDir, {recursive: true, force: true})
  }
}

function killCgroupProcesses(cgroup: string): void {
  try {
    writeFileSync(join(cgroup, 'cgroup.kill'), '1')
  } catch {
    // gone already, or a kernel without cgroup.kill (< 5.14): destroy() kills what it started
  }
}

/** Nothing named skfp-bench is left: namespaces, cgroup, pins. */
export async function isClean(runner: Runner): Promise<boolean> {
  const netns = (await ip.netnsList(runner)).some((n) => n.startsWith(BENCH_NAME))
  const root = cgroup2Mount()
  const cgroup = !!root && readdirSync(root).some((n) => n.startsWith(BENCH_NAME))
  return !netns && !cgroup && !existsSync(join(PIN_ROOT, BENCH_NAME))
}

/** --scenarios a,b,c → known names, in the fixed order they run. */
export function parseScenarioList(text: string | undefined): AnyScenarioName[] {
  if (!text) return [...ALL_SCENARIOS]
  const wanted = text.split(',').map((s) => s.trim()).filter(Boolean)
  const unknown = wanted.filter((w) => !(ALL_SCENARIOS as readonly string[]).includes(w))
  if (unknown.length > 0 || wanted.length === 0) throw usageError(`unknown scenario ${unknown.join(', ') || '(none given)'}`, `choose from ${ALL_SCENARIOS.join(', ')}`)
  return ALL_SCENARIOS.filter((s) => wanted.includes(s))
}

/** --out DIR: NAME.json (the same document as --json) and NAME.svg (its chart). */
export function writeOut(dir: string, name: string, result: unknown, svg: string): string[] {
  mkdirSync(dir, {recursive: true})
  const files = [join(dir, `${name}.json`), join(dir, `${name}.svg`)]
  writeFileSync(files[0], `${JSON.stringify(result, null, 2)}\n`)
  writeFileSync(files[1], svg)
  return files
}

export const saveRun = (dir: string, result: BenchResult): string[] => writeOut(dir, 'bench', result, renderChart(result))
