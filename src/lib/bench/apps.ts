/**
 * Real applications with their own clients, from Debian's packages, each measured three ways side by
 * side in one run: plain (no skfp), skfp's defaults (`up` with no --fastpath flag: auto, which follows
 * the kernel self-test) and `--fastpath on`. redis-server under redis-benchmark (GET at one connection,
 * then 16 pipelined); nginx serving a small response and a large file (sendfile) under wrk at 1 and 8
 * connections. Client and server share a namespace of the bench's cgroup: a service and its client on
 * one host. The gorelay-* ones put a Go transparent relay (build/bin/skfp-gorelay: io.Copy, splice)
 * between wrk and nginx, behind skfp's interception (plain: the interception without the fastpath),
 * nginx a local container in the cgroup: the relay's own sockets splice and stay on TCP, what it
 * splices toward wrk and nginx is redirected.
 */
import {existsSync, mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {isInstalled, resolveTool, TOOLS, type Tool} from '../exec.js'
import {programPath} from '../root.js'
import {upInstance} from '../lifecycle.js'
import type {Sandbox} from '../sandbox.js'
import {VERDICT_PIN} from '../pins.js'
import {sandboxSettings} from '../settings.js'
import {forgetVerdict} from '../teardown.js'
import {down, fastpathOn, upInterception, type InstanceContext} from './instance.js'
import {lowerMedianBy} from './measure.js'
import {PROXY_MARK, PROXY_PORT, proxyTopology, REMOTE_ADDR} from './topology.js'
import type {AppMode, AppScenarioName, AppScenarioResult} from './types.js'

const REDIS_PORT = 6390
const NGINX_PORT = 8090
const LARGE_BYTES = 4 * 1024 * 1024
const SMALL_BYTES = 128

export interface AppContext extends InstanceContext {
  sb: Sandbox
  seconds: number
  /** Rounds of plain → defaults → on; each figure is the median of its rounds (these VMs are noisy). */
  runs: number
  workDir: string
  signal: AbortSignal
}

interface AppDef {
  name: AppScenarioName
  tools: Tool[]
  /** Through the Go relay behind the interception, instead of client and server side by side. */
  relayed?: boolean
  /** Requests per second, and the client's own error count. */
  measure(ctx: AppContext, ns: string): Promise<{perSec: number; errors: number}>
}

/** redis-benchmark's --csv line for GET: "GET","rps",… */
export function parseRedisBenchmark(csv: string): number {
  const line = csv.split('\n').find((l) => l.startsWith('"GET"'))
  const rps = line ? Number(JSON.parse(`[${line}]`)[1]) : NaN
  if (!Number.isFinite(rps)) throw new Error(`redis-benchmark printed no GET rate: ${csv.slice(0, 200)}`)
  return rps
}

/** wrk's "Requests/sec:" and its error lines (socket errors, non-2xx responses). */
export function parseWrk(text: string): {perSec: number; errors: number} {
  const rate = /Requests\/sec:\s+([\d.]+)/.exec(text)
  if (!rate) throw new Error(`wrk printed no rate: ${text.slice(0, 200)}`)
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text)
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text)
  const errors = (socket ? socket.slice(1).reduce((a, n) => a + Number(n), 0) : 0) + (non2xx ? Number(non2xx[1]) : 0)
  return {perSec: Number(rate[1]), errors}
}

async function redisBenchmark(ctx: AppContext, ns: string, pipeline: number): Promise<{perSec: number; errors: number}> {
  // a request count sized to take about the bench's duration at the rates seen on these VMs
  const requests = Math.max(10_000, ctx.seconds * (pipeline > 1 ? 150_000 : 25_000))
  const r = await ctx.sb.run(ns, [resolveTool('redis-benchmark'), '-h', '127.0.0.1', '-p', String(REDIS_PORT), '-c', '1', '-P', String(pipeline), '-n', String(requests), '-t', 'get', '--csv'], {timeoutMs: 120_000 + ctx.seconds * 20_000})
  return {perSec: parseRedisBenchmark(r.stdout), errors: 0}
}

async function wrk(ctx: AppContext, ns: string, path: string, connections: number, addr = '127.0.0.1'): Promise<{perSec: number; errors: number}> {
  const threads = Math.min(connections, 2)
  const r = await ctx.sb.run(ns, [resolveTool('wrk'), '-t', String(threads), '-c', String(connections), '-d', `${ctx.seconds}s`, `http://${addr}:${NGINX_PORT}/${path}`], {timeoutMs: 60_000 + ctx.seconds * 2000})
  return parseWrk(r.stdout)
}

export const APP_DEFS: AppDef[] = [
  {name: 'redis-get', tools: ['redis-server', 'redis-benchmark'], measure: (ctx, ns) => redisBenchmark(ctx, ns, 1)},
  {name: 'redis-get-pipelined', tools: ['redis-server', 'redis-benchmark'], measure: (ctx, ns) => redisBenchmark(ctx, ns, 16)},
  {name: 'nginx-small-c1', tools: ['nginx', 'wrk'], measure: (ctx, ns) => wrk(ctx, ns, 'small', 1)},
  {name: 'nginx-small-c8', tools: ['nginx', 'wrk'], measure: (ctx, ns) => wrk(ctx, ns, 'small', 8)},
  {name: 'nginx-large-c1', tools: ['nginx', 'wrk'], measure: (ctx, ns) => wrk(ctx, ns, 'large', 1)},
  {name: 'nginx-large-c8', tools: ['nginx', 'wrk'], measure: (ctx, ns) => wrk(ctx, ns, 'large', 8)},
  {name: 'gorelay-nginx-small-c1', tools: ['nginx', 'wrk'], relayed: true, measure: (ctx, ns) => wrk(ctx, ns, 'small', 1, REMOTE_ADDR)},
  {name: 'gorelay-nginx-large-c1', tools: ['nginx', 'wrk'], relayed: true, measure: (ctx, ns) => wrk(ctx, ns, 'large', 1, REMOTE_ADDR)},
]

/** Why a scenario cannot run here (a tool missing), or undefined. */
export function appUnavailable(def: AppDef): string | undefined {
  const missing = def.tools.find((t) => !isInstalled(t))
  if (missing) return `${missing} not installed (apt-get install ${TOOLS[missing]})`
  if (def.relayed && !existsSync(programPath('skfp-gorelay'))) return 'build/bin/skfp-gorelay not built (skfp build, with golang-go installed)'
  return undefined
}

/** nginx's configuration: one worker, everything under dir, sendfile on, no logs. */
function nginxConfig(dir: string, addr: string): string {
  mkdirSync(join(dir, 'www'), {recursive: true})
  writeFileSync(join(dir, 'www', 'small'), 'x'.repeat(SMALL_BYTES))
  writeFileSync(join(dir, 'www', 'large'), Buffer.alloc(LARGE_BYTES, 7))
  const conf = join(dir, 'nginx.conf')
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `${t}_temp_path ${join(dir, t)};`).join(' ')
  writeFileSync(
    conf,
    `daemon off; master_process off; worker_processes 1; pid ${join(dir, 'nginx.pid')}; error_log stderr warn;
events { worker_connections 1024; }
http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000000; default_type application/octet-stream; ${temp}
  server { listen ${addr}:${NGINX_PORT}; root ${join(dir, 'www')}; } }
`,
  )
  return conf
}

/** Until something in ns listens on TCP port (the servers say so only in their logs). */
async function waitForListen(ctx: AppContext, ns: string, port: number): Promise<void> {
  for (let i = 0; i < 1500; i++) {
    const r = await ctx.runner.run({tool: 'ss', args: ['-Hltn', 'sport', '=', `:${port}`], netns: ns})
    if (r.stdout.trim()) return
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  throw new Error(`nothing listens on TCP port ${port} after 30 s`)
}

/** The servers a set of scenarios needs, started in ns (in the cgroup); returns their stop. */
async function startServers(ctx: AppContext, ns: string, defs: AppDef[], addr = '127.0.0.1'): Promise<() => Promise<void>> {
  const children: ReturnType<Sandbox['start']>[] = []
  if (defs.some((d) => d.tools.includes('redis-server'))) {
    const redis = ctx.sb.start(ns, [resolveTool('redis-server'), '--port', String(REDIS_PORT), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', ctx.workDir])
    children.push(redis)
    await waitForListen(ctx, ns, REDIS_PORT)
    await ctx.sb.run(ns, [resolveTool('redis-cli'), '-p', String(REDIS_PORT), 'set', 'key:__rand_int__', 'x'.repeat(64)])
  }
  if (defs.some((d) => d.tools.includes('nginx'))) {
    const dir = join(ctx.workDir, 'nginx')
    const nginx = ctx.sb.start(ns, [resolveTool('nginx'), '-e', 'stderr', '-p', dir, '-c', nginxConfig(dir, addr)])
    children.push(nginx)
    await waitForListen(ctx, ns, NGINX_PORT)
  }
  return async () => {
    for (const c of children) {
      c.kill('SIGTERM')
      await c.catch(() => {})
    }
  }
}

const MODES: AppMode[] = ['plain', 'defaults', 'fastpathOn']

const median = (xs: number[]) => lowerMedianBy(xs, (x) => x)

type Figures = Record<AppMode, number[]> & {errors: number; defaultsFastpath?: boolean; failed?: string}

/** Where a group of scenarios runs: the client's namespace, how a mode is brought up (returning
 * whether the fastpath is on), and how it all is removed. */
interface Stage {
  ns: string
  up(mode: AppMode): Promise<boolean>
  down(mode: AppMode): Promise<void>
  stop(): Promise<void>
}

/** Client and server side by side in one namespace of the cgroup; plain is no skfp at all. */
async function sideBySide(ctx: AppContext, defs: AppDef[]): Promise<Stage> {
  const ns = await ctx.sb.addNetns('app')
  const stop = await startServers(ctx, ns, defs)
  return {
    ns,
    up: async (mode) => mode !== 'plain' && (await upInstance(sandboxSettings(ctx.name, ctx.cgroup, ns, mode === 'defaults' ? {fastpath: 'auto'} : {}), {renderer: 'silent', log: () => {}}, ctx.runner)).fastpath,
    down: async (mode) => {
      if (mode !== 'plain') await down(ctx)
    },
    stop: async () => {
      await stop()
      await ctx.sb.removeNetns(ns)
    },
  }
}

/** wrk in the host namespace, the Go relay behind skfp's interception, nginx in the remote one (in
 * the cgroup: a local container). Plain is the interception without the fastpath. */
async function throughGoRelay(ctx: AppContext, defs: AppDef[]): Promise<Stage> {
  const topo = await proxyTopology(ctx.sb, 'gorelay')
  const stopServers = await startServers(ctx, topo.remote, defs, REMOTE_ADDR)
  let relay: ReturnType<Sandbox['start']> | undefined
  return {
    ns: topo.host,
    up: async (mode) => {
      await upInterception(ctx, topo.host, mode === 'plain' ? 'off' : mode === 'defaults' ? 'auto' : 'on')
      relay = ctx.sb.start(topo.host, [programPath('skfp-gorelay'), '--listen', `127.0.0.1:${PROXY_PORT}`, '--mark', String(PROXY_MARK)])
      await waitForListen(ctx, topo.host, PROXY_PORT)
      return fastpathOn(ctx)
    },
    down: async () => {
      relay?.kill('SIGTERM')
      await relay?.catch(() => {})
      await down(ctx)
    },
    stop: async () => {
      await stopServers()
      for (const ns of [topo.host, topo.remote]) await ctx.sb.removeNetns(ns)
    },
  }
}

/** ctx.runs rounds of one stage, each taking every mode in turn (plain, defaults, on, the order
 * rotated each round) over all its scenarios, so that the three are measured side by side. */
async function runStage(ctx: AppContext, defs: AppDef[], stage: Stage, figures: Map<AppScenarioName, Figures>, say: (line: string) => void): Promise<void> {
  try {
    // the order rotates from round to round: no mode always runs first, on a machine that warms up
    for (const mode of Array.from({length: ctx.runs}, (_, r) => [...MODES.slice(r % MODES.length), ...MODES.slice(0, r % MODES.length)]).flat()) {
      ctx.signal.throwIfAborted()
      const fastpath = await stage.up(mode)
      try {
        for (const def of defs) {
          const f = figures.get(def.name)!
          if (f.failed) continue
          ctx.signal.throwIfAborted()
          try {
            const m = await def.measure(ctx, stage.ns)
            f[mode].push(m.perSec)
            f.errors += m.errors
            if (mode === 'defaults') f.defaultsFastpath = fastpath
            say(`${def.name} ${mode}: ${m.perSec.toFixed(0)} requests/s, ${m.errors} errors`)
          } catch (error) {
            if (ctx.signal.aborted) throw error
            f.failed = `${mode}: ${(error as Error).message}`
            say(`${def.name}: failed (${f.failed})`)
          }
        }
      } finally {
        await stage.down(mode)
      }
    }
  } finally {
    await stage.stop()
  }
}

/** Every chosen app scenario, by stage: side by side, then through the Go relay. */
export async function runApps(ctx: AppContext, names: AppScenarioName[], say: (line: string) => void): Promise<(AppScenarioResult | {name: AppScenarioName; skipped: string} | {name: AppScenarioName; failed: string})[]> {
  const chosen = APP_DEFS.filter((d) => names.includes(d.name))
  const skipped = new Map(chosen.map((d) => [d.name, appUnavailable(d)] as const).filter(([, why]) => why))
  const runnable = chosen.filter((d) => !skipped.has(d.name))
  const figures = new Map<AppScenarioName, Figures>(runnable.map((d) => [d.name, {plain: [], defaults: [], fastpathOn: [], errors: 0}]))
  // the defaults (--fastpath auto) run the self-test when this boot has no verdict, and pin it; a
  // verdict the bench made goes with it, like the rest of its sandbox
  const hadVerdict = existsSync(VERDICT_PIN)
  try {
    for (const [defs, stage] of [[runnable.filter((d) => !d.relayed), sideBySide], [runnable.filter((d) => d.relayed), throughGoRelay]] as const)
      if (defs.length) await runStage(ctx, defs, await stage(ctx, defs), figures, say)
  } finally {
    if (!hadVerdict) forgetVerdict()
  }
  return chosen.map((d) => {
    const why = skipped.get(d.name)
    if (why) return {name: d.name, skipped: why}
    const f = figures.get(d.name)!
    if (f.failed) return {name: d.name, failed: f.failed}
    const [plain, defaults, fastpathOn] = MODES.map((m) => median(f[m]))
    const ratio = (x: number) => (plain ? Math.round((x / plain) * 100) / 100 : null)
    return {name: d.name, plain, defaults, fastpathOn, defaultsFastpath: !!f.defaultsFastpath, ratioDefaults: ratio(defaults), ratioOn: ratio(fastpathOn), errors: f.errors}
  })
}
