// Load: 10 000 fastpath connections held open at once, a full sockhash, 50 000 short connections.
// Real sockets in a sandbox netns + child cgroup; build/bin/skfp-hold holds both ends of every
// connection (so every connection puts two sockets into the sockhash).
import {existsSync, mkdirSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {interceptObject, PROJECT_ROOT, programPath} from '../../src/lib/build.js'
import {FASTPATH_VARIANTS} from '../../src/lib/datapath.js'
import {bootId} from '../../src/lib/host.js'
import {instancePins, PIN_ROOT} from '../../src/lib/pins.js'
import {Executor, runPlan} from '../../src/lib/plan.js'
import type {Sandbox} from '../../src/lib/sandbox.js'
import {DEFAULT_FASTPATH_QUEUE} from '../../src/lib/settings.js'
import {compileBpf} from '../../src/lib/tools/clang.js'
import {planUp} from '../../src/lib/up.js'
import {holdMark} from '../../src/lib/holder.js'
import {leftovers, runner, skfp, status, upArgs, withSandbox, socketsDrainTo0} from './helpers.js'

const HOLD = programPath('skfp-hold')
const PINGPONG = programPath('skfp-pingpong')

/** Runs skfp-hold; `whileOpen` runs once every connection is open and has moved its first payload. */
async function hold(sb: Sandbox, ns: string, args: string[], whileOpen: (open: any) => Promise<void>): Promise<{open: any; done: any}> {
  const child = sb.start(ns, [HOLD, ...args, '--hold-ms', '120000'])
  const open = await new Promise<any>((resolve, reject) => {
    let text = ''
    child.stdout!.on('data', (d: Buffer) => {
      text += d
      if (text.includes('\n')) resolve(JSON.parse(text.split('\n')[0]))
    })
    child.once('exit', () => reject(new Error(`skfp-hold ended before all were open: ${text}`)))
  })
  try {
    await whileOpen(open)
  } finally {
    child.kill('SIGUSR1') // ends the hold: round 2 on every connection, then close
  }
  const r = await child
  expect(r.exitCode, String(r.stderr)).toBe(0)
  return {open, done: JSON.parse(String(r.stdout).trim().split('\n').pop()!)}
}

/** The sockhash drains by itself as sockets close. */
describe('load', () => {
  it('10 000 concurrent connections over 127.0.0.1 and ::1: 20 000 sockets in the sockhash, data intact, back to 0', async () => {
    await withSandbox('ld', async (sb) => {
      const ns = await sb.addNetns('a')
      const up = await skfp(upArgs(sb, ns))
      expect(up.exitCode, up.stderr).toBe(0)
      let added = 0
      let redirected = 0
      for (const addr of ['127.0.0.1', '::1']) {
        const started = Date.now()
        const {open, done} = await hold(sb, ns, ['--addr', addr, '--count', '10000'], async (o) => {
          expect(o, addr).toMatchObject({open: 10000, sockets: 20000, errors: 0})
          const s = await status(sb.name)
          expect(s.fastpath.sockets, addr).toBe(20000)
          expect(s.counters.socketsAdded - added, addr).toBe(20000)
          expect(s.counters.socketInsertFailures, addr).toBe(0)
          // round 1: one message each way on every connection, all through the fastpath
          expect(s.counters.messagesRedirected - redirected, addr).toBe(20000)
          expect(s.counters.messagesFallback, addr).toBe(0)
          added = s.counters.socketsAdded
        })
        expect(done, `${addr}: ${done.firstError}`).toMatchObject({connections: 10000, errors: 0})
        expect(await socketsDrainTo0(sb.name), addr).toBe(0)
        const s = await status(sb.name)
        expect(s.counters.messagesRedirected - redirected, `${addr}: rounds 1 and 2`).toBe(40000)
        redirected = s.counters.messagesRedirected
        process.stderr.write(`load: ${addr}: 10000 connections (20000 sockets) open in ${open.openMs} ms over ${open.procs} processes; whole case ${Date.now() - started} ms\n`)
      }
      expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
      expect(await leftovers(sb)).toEqual([])
    })
  })

  it('a full sockhash: the extra sockets stay on plain TCP with their data intact, and are counted', async () => {
    // `up` loads build/bpfel/fastpath.bpf.o (65 536 entries); this case loads, through up's own plan,
    // the same object built with a 64-entry sockhash, so 50 connections (100 sockets) overflow it
    const MAX = 64
    const object = join(PROJECT_ROOT, 'build', 'test', `fastpath-socks${MAX}.bpf.o`)
    const variant = FASTPATH_VARIANTS[0]
    mkdirSync(dirname(object), {recursive: true})
    await runner.run(compileBpf(join(PROJECT_ROOT, 'bpf', 'fastpath.bpf.c'), object, 'bpfel', false, [...variant.defines, `-DSKFP_SOCKS_MAX=${MAX}`]), {timeoutMs: 180_000})
    await withSandbox('mx', async (sb) => {
      const ns = await sb.addNetns('a')
      const settings = {instance: sb.name, cgroup: sb.cgroup, netns: ns, proxyMark: 0, fastpath: 'on' as const, fastpathQueue: DEFAULT_FASTPATH_QUEUE, intercept: null}
      const objects = {intercept: interceptObject({target: 'bpfel', debug: false}), fastpath: object}
      const steps = planUp(settings, {pins: instancePins(sb.name), objects, fastpathVariant: variant.name, bootId: bootId(), bpffsMounted: true, pinRootExists: existsSync(PIN_ROOT), fastpath: true, hold: holdMark()})
      await runPlan(steps, new Executor(runner), {renderer: 'silent', log: () => {}})
      const info = JSON.parse((await runner.run({tool: 'bpftool', args: ['-j', 'map', 'show', 'pinned', instancePins(sb.name).map.socks]})).stdout)
      expect(info.max_entries).toBe(MAX)
      expect((await status(sb.name)).state).toBe('up')

      const {done} = await hold(sb, ns, ['--addr', '127.0.0.1', '--count', '50', '--size', '4096'], async (o) => {
        expect(o).toMatchObject({open: 50, errors: 0})
        const s = await status(sb.name)
        expect(s.fastpath.sockets).toBe(MAX)
        expect(s.counters.socketsAdded).toBe(MAX)
        expect(s.counters.socketInsertFailures).toBe(100 - MAX)
      })
      // both rounds on all 50 connections, checked byte by byte: accelerated or not, nothing is lost
      expect(done, done.firstError).toMatchObject({connections: 50, errors: 0})
      const s = await status(sb.name)
      // only the 32 connections whose two ends are both in the map were redirected (2 rounds, 2 ways)
      expect(s.counters.messagesRedirected).toBe((MAX / 2) * 4)
      expect(await socketsDrainTo0(sb.name)).toBe(0)

      // room again once they closed: new connections are accelerated
      const again = await hold(sb, ns, ['--addr', '::1', '--count', '10'], async () => {
        expect((await status(sb.name)).fastpath.sockets).toBe(20)
      })
      expect(again.done).toMatchObject({connections: 10, errors: 0})
      const s2 = await status(sb.name)
      expect(s2.counters.socketsAdded).toBe(MAX + 20)
      expect(s2.counters.socketInsertFailures).toBe(100 - MAX)

      expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
      expect(await leftovers(sb)).toEqual([])
    })
  })

  it('50 000 short connections through the fastpath: 0 errors, the sockhash back to 0', async () => {
    await withSandbox('sc', async (sb) => {
      const ns = await sb.addNetns('a')
      expect((await skfp(upArgs(sb, ns))).exitCode).toBe(0)
      const server = sb.start(ns, [PINGPONG, 'server', '--listen', '127.0.0.1:7300'])
      await new Promise<void>((resolve) => server.stdout!.once('data', () => resolve()))
      let connections = 0
      let errors = 0
      const firstErrors: string[] = []
      const started = Date.now()
      for (let i = 0; i < 20 && connections < 50_000; i++) {
        const r = JSON.parse((await sb.run(ns, [PINGPONG, 'connrate', '--connect', '127.0.0.1:7300', '--duration-ms', '2000', '--parallel', '2'])).stdout)
        connections += r.connections
        errors += r.errors
        if (r.firstError) firstErrors.push(r.firstError)
      }
      const seconds = (Date.now() - started) / 1000
      expect(connections).toBeGreaterThanOrEqual(50_000)
      expect(errors, firstErrors.join('; ')).toBe(0)
      server.kill('SIGTERM')
      await server
      expect(await socketsDrainTo0(sb.name)).toBe(0)
      const s = await status(sb.name)
      expect(s.counters.socketsAdded).toBe(2 * connections) // both ends of every connection
      expect(s.counters.socketInsertFailures).toBe(0)
      expect(s.counters.messagesRedirected).toBeGreaterThan(0)
      process.stderr.write(`load: ${connections} short connections in ${seconds.toFixed(1)} s (${Math.round(connections / seconds)}/s), ${s.counters.messagesRedirected} messages redirected\n`)
      expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
      expect(await leftovers(sb)).toEqual([])
    })
  })
})
