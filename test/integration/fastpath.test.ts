// up → real traffic through the fastpath → status counters → down, inside netns + child cgroup.
import {describe, expect, it} from 'vitest'
import {join} from 'node:path'
import {PROJECT_ROOT} from '../../src/lib/build.js'
import {resolveTool} from '../../src/lib/exec.js'
import type {Sandbox} from '../../src/lib/sandbox.js'
import {waitForOutput} from '../../src/lib/iperf.js'
import {expectedSha} from '../fixtures/transfer.mjs'
import {expectIntact, expectRedirected, FIXTURE, leftovers, requireRoot, runner, skfp, status, transfer, upArgs, withSandbox} from './helpers.js'

const MiB = 1024 * 1024

/** Two namespaces of the sandbox joined by a veth: a at 198.18.0.1 / fd00:18::1, b at .2 / ::2. */
async function linkedPair(sb: Sandbox, tag: string): Promise<{a: string; b: string}> {
  const a = await sb.addNetns(`a${tag}`)
  const b = await sb.addNetns(`b${tag}`)
  await sb.link({netns: a, dev: 'veth-a', addrs: ['198.18.0.1/30', 'fd00:18::1/64']}, {netns: b, dev: 'veth-b', addrs: ['198.18.0.2/30', 'fd00:18::2/64']})
  return {a, b}
}
const BIG = 256 * MiB

/** What a round of connections changed in the counters. */
interface RoundCounters {
  paired: number
  added: number
  ambiguous: number
  redirected: number
  counters: Record<string, number>
}
const countersSince = (before: Record<string, number>, after: Record<string, number>): RoundCounters => {
  const delta = (k: string) => after[k] - before[k]
  return {paired: delta('connectionsPaired'), added: delta('socketsAdded'), ambiguous: delta('handshakesAmbiguous'), redirected: delta('bytesRedirected'), counters: after}
}

/** Two clients started together may draw the same initial sequence number (its clock ticks every
 * 64 ns; here about 1 run in 15): then neither pairs, and the counter says so. Runs round again
 * while it collided (up to 3 more times) and returns the first round that did not. */
async function unlessCollided(round: () => Promise<RoundCounters>): Promise<RoundCounters> {
  let r = await round()
  for (let retry = 0; r.ambiguous > 0 && retry < 3; retry++) {
    expect([r.paired, r.added], JSON.stringify(r.counters)).toEqual([0, 0])
    r = await round()
  }
  expect(r.ambiguous, JSON.stringify(r.counters)).toBe(0)
  return r
}

describe('fastpath lifecycle', () => {
  it('carries 256 MiB each way over 127.0.0.1 and ::1 with sha256 intact, part of it redirected (the guard holds back a writer that outruns its reader), then down leaves nothing', async () => {
    await withSandbox('fp', async (sb) => {
      const ns = await sb.addNetns('a')
      const up = await skfp(upArgs(sb, ns))
      expect(up.exitCode, up.stderr).toBe(0)
      expect(up.json.action).toBe('created')
      const s0 = await status(sb.name)
      expect(s0.state).toBe('up')
      expect(s0.programs.sockops.attached).toBe(true)
      expect(s0.programs.finHold.attached).toBe(true)

      for (const [addr, seed] of [['127.0.0.1', 'v4'], ['::1', 'v6']]) {
        const r = await transfer(sb, ns, ['pair', '--addr', addr, '--port', '0', '--bytes', String(BIG), '--seed', seed])
        expect(r.serverReceived).toBe(BIG)
        expect(r.serverReceivedSha).toBe(expectedSha(`${seed}-up`, BIG))
        expect(r.clientReceivedSha).toBe(expectedSha(`${seed}-down`, BIG))
      }
      const s1 = await status(sb.name)
      expect(s1.counters.socketsAdded).toBe(4) // two connections, both ends each
      expect(s1.counters.socketInsertFailures).toBe(0)
      // every byte went one way or the other; a writer that outruns its reader is held back on
      // plain TCP by the memory guard, so only part of a saturating stream is redirected
      expect(s1.counters.bytesRedirected + s1.counters.bytesFallback).toBeGreaterThanOrEqual(4 * BIG)
      expect(s1.counters.bytesRedirected).toBeGreaterThanOrEqual(4 * 1024 * 1024)
      expect(s1.fastpath.sockets).toBe(0) // closed sockets leave the sockhash by themselves

      const down = await skfp(['down', '--instance', sb.name, '--json'])
      expect(down.exitCode, down.stderr).toBe(0)
      expect(await leftovers(sb)).toEqual([])
      expect((await status(sb.name)).state).toBe('down')
    })
  })

  it('pairs a dual-stack :: listener with an IPv4 client (v4-mapped keys)', async () => {
    await withSandbox('ds', async (sb) => {
      const ns = await sb.addNetns('a')
      expect((await skfp(upArgs(sb, ns))).exitCode).toBe(0)
      const r = await transfer(sb, ns, ['pair', '--listen', '::', '--addr', '127.0.0.1', '--port', '0', '--bytes', String(16 * MiB), '--seed', 'ds'])
      expectIntact(r, 'ds', 16 * MiB)
      await expectRedirected(sb.name, 2)
    })
  })

  it('keeps identical tuples in two namespaces apart', async () => {
    await withSandbox('tw', async (sb) => {
      const a = await sb.addNetns('a')
      const b = await sb.addNetns('b')
      expect((await skfp(upArgs(sb, a))).exitCode).toBe(0)
      let port = 7001
      const round = async () => {
        const before = (await status(sb.name)).counters
        const same = ['--addr', '127.0.0.1', '--port', String(port), '--client-port', String(port + 1), '--bytes', String(32 * MiB)]
        port += 2
        const [ra, rb] = await Promise.all([transfer(sb, a, ['pair', ...same, '--seed', 'A']), transfer(sb, b, ['pair', ...same, '--seed', 'B'])])
        expectIntact(ra, 'A', 32 * MiB)
        expectIntact(rb, 'B', 32 * MiB)
        return countersSince(before, (await status(sb.name)).counters)
      }
      const r = await unlessCollided(round)
      expect([r.paired, r.added], JSON.stringify(r.counters)).toEqual([2, 4])
      await expectRedirected(sb.name, 4)
    })
  })

  it('accelerates connections between namespaces of the cgroup, never crossing identical tuples', async () => {
    await withSandbox('xn', async (sb) => {
      // Two client/server namespace pairs with the same addresses and ports: the same tuple twice.
      const pairs: {a: string; b: string; seed: string}[] = []
      for (const tag of ['1', '2']) {
        const {a, b} = await linkedPair(sb, tag)
        pairs.push({a, b, seed: `n${tag}`})
      }
      expect((await skfp(upArgs(sb, pairs[0].a))).exitCode).toBe(0)
      let clientPort = 7101
      /** Both pairs at once, the same tuple in each; returns the counters' changes. */
      const round = async (addr: string) => {
        const before = (await status(sb.name)).counters
        const servers: ReturnType<typeof sb.start>[] = pairs.map(({b, seed}) => sb.start(b, [process.execPath, FIXTURE, 'server', '--addr', addr, '--port', '7100', '--bytes', String(32 * MiB), '--seed', seed]))
        await Promise.all(servers.map((srv) => waitForOutput(srv, /./)))
        const same = ['--addr', addr, '--port', '7100', '--client-port', String(clientPort++), '--bytes', String(32 * MiB)]
        const clients: any[] = await Promise.all(pairs.map(({a, seed}) => transfer(sb, a, ['client', ...same, '--seed', seed])))
        const got: any[] = await Promise.all(servers.map(async (srv) => JSON.parse(String((await srv).stdout).trim().split('\n').pop()!)))
        const after = (await status(sb.name)).counters
        const why = (dir: string, seed: string, bytes: number) => `${addr} ${seed} ${dir} (${bytes} bytes); ${JSON.stringify(after)}`
        for (const [i, {seed}] of pairs.entries()) {
          if (got[i].serverReceivedSha !== expectedSha(`${seed}-up`, 32 * MiB)) expect.fail(why('up', seed, got[i].serverReceived))
          if (clients[i].clientReceivedSha !== expectedSha(`${seed}-down`, 32 * MiB)) expect.fail(why('down', seed, clients[i].clientReceived))
        }
        return countersSince(before, after)
      }
      for (const addr of ['198.18.0.2', 'fd00:18::2']) {
        const r = await unlessCollided(() => round(addr))
        expect([r.paired, r.added], JSON.stringify(r.counters)).toEqual([2, 4])
        expect(r.redirected).toBeGreaterThan(0) // how much depends on the readers' pace (the guard)
      }
    })
  })

  it('moves a client that sent before its server joined onto the fastpath once the server has read those bytes', async () => {
    await withSandbox('xl', async (sb) => {
      const {a, b} = await linkedPair(sb, '')
      expect((await skfp(upArgs(sb, a))).exitCode).toBe(0)
      // TCP_DEFER_ACCEPT: the server's end is established (and joins) only when the client's data arrives
      const script = join(PROJECT_ROOT, 'test', 'fixtures', 'defer-accept.py')
      // the client sends 8 MiB, waits until the server has read them, then the rest: that moment is the hand-off
      const common = ['--addr', '198.18.0.2', '--port', '7102', '--bytes', String(64 * MiB), '--first', String(8 * MiB)]
      const server = sb.start(b, [resolveTool('python3'), script, 'server', ...common])
      await waitForOutput(server, /./)
      const client = JSON.parse((await sb.run(a, [resolveTool('python3'), script, 'client', ...common], {timeoutMs: 60_000})).stdout.trim())
      const got = JSON.parse(String((await server).stdout).trim().split('\n').pop()!)
      expect(got).toEqual({received: 64 * MiB, sha256: client.sha256})
      const s = await status(sb.name)
      expect(s.counters.connectionsPaired).toBe(1)
      expect(s.counters.bytesFallback).toBeGreaterThan(0) // the first sends, before the server joined
      // then, once the server had read them all (the guard's first redirect waits for that), the rest:
      // at least the client's first send after the server's word (and the server's one byte back)
      expect(s.counters.bytesRedirected, JSON.stringify(s.counters)).toBeGreaterThan(1)
    })
  })

  it('leaves a connection plain TCP when its server is outside the cgroup', async () => {
    await withSandbox('xo', async (sb) => {
      const {a, b} = await linkedPair(sb, '')
      expect((await skfp(upArgs(sb, a))).exitCode).toBe(0)
      const server = sb.start(b, [process.execPath, FIXTURE, 'server', '--addr', '198.18.0.2', '--port', '7100', '--bytes', String(8 * MiB), '--seed', 'o'], {outsideCgroup: true})
      await waitForOutput(server, /./)
      const c = await transfer(sb, a, ['client', '--addr', '198.18.0.2', '--port', '7100', '--bytes', String(8 * MiB), '--seed', 'o'])
      const srv = JSON.parse(String((await server).stdout).trim().split('\n').pop()!)
      expect(srv.serverReceivedSha).toBe(expectedSha('o-up', 8 * MiB))
      expect(c.clientReceivedSha).toBe(expectedSha('o-down', 8 * MiB))
      const s = await status(sb.name)
      expect(s.counters.connectionsPaired).toBe(0)
      expect(s.counters.socketsAdded).toBe(0)
      expect(s.counters.bytesRedirected).toBe(0)
    })
  })

  it('writes the config map exactly as bpftool reads it back through BTF', async () => {
    await withSandbox('btf', async (sb) => {
      const ns = await sb.addNetns('a')
      expect((await skfp(upArgs(sb, ns, ['--proxy-mark', '0xff', '--fastpath-queue', '1048576']))).exitCode).toBe(0)
      const r = await runner.run({tool: 'bpftool', args: ['-j', 'map', 'dump', 'pinned', `/sys/fs/bpf/skfp/${sb.name}/maps/skfp_config`]})
      const v = JSON.parse(r.stdout)[0].formatted.value
      expect(v).toMatchObject({flags: 1, proxy_mark: 0xff, fwmark: 0, proxy_port: 0, proxy_down: 0, fastpath_queue: 1048576, _unused0: 0, vpn_mark: [0, 0, 0, 0], vpn_mask: [0, 0, 0, 0]})
    })
  })
})

describe('lifecycle edges', () => {
  it('dry-run changes nothing; up twice is a no-op; other settings are refused; down twice succeeds', async () => {
    requireRoot()
    await withSandbox('ed', async (sb) => {
      const ns = await sb.addNetns('a')
      const dry = await skfp([...upArgs(sb, ns), '--dry-run'])
      expect(dry.exitCode, dry.stderr).toBe(0)
      expect(dry.json.plan.map((s: {id: string}) => s.id)).toEqual(expect.arrayContaining(['lock', 'load', 'record', 'msg-verdict', 'sockops']))
      expect(await leftovers(sb)).toEqual([])

      expect((await skfp(upArgs(sb, ns))).json.action).toBe('created')
      const again = await skfp(upArgs(sb, ns))
      expect(again.exitCode).toBe(0)
      expect(again.json.action).toBe('unchanged')

      const other = await skfp(upArgs(sb, ns, ['--proxy-mark', '7']))
      expect(other.exitCode).toBe(4)
      expect(other.stderr).toMatch(/proxyMark: 0 → 7.*--replace/)
      const replaced = await skfp(upArgs(sb, ns, ['--proxy-mark', '7', '--replace']))
      expect(replaced.exitCode, replaced.stderr).toBe(0)
      expect((await status(sb.name)).settings.proxyMark).toBe(7)

      expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
      const twice = await skfp(['down', '--instance', sb.name])
      expect(twice.exitCode).toBe(0)
      expect(twice.stdout).toMatch(/was not up/)
      expect(await leftovers(sb)).toEqual([])
    })
  })

  it('a half-done up (killed after a step) shows as half-up, up names what is missing, and down or up --replace finishes it', async () => {
    await withSandbox('hu', async (sb) => {
      const ns = await sb.addNetns('a')
      const missing = {load: 'no undo record (up stopped before writing it)', 'msg-verdict': `the FIN hold on ${sb.cgroup} ingress is missing; sock_ops on ${sb.cgroup} is missing`}
      for (const step of ['load', 'msg-verdict', 'sockops']) {
        const crashed = await skfp(upArgs(sb, ns), {SKFP_CRASH_AFTER: step})
        expect(crashed.exitCode).not.toBe(0)
        const s = await status(sb.name)
        expect(s.state, step).toBe(step === 'sockops' ? 'up' : 'half-up')
        const again = await skfp(upArgs(sb, ns))
        if (step === 'sockops') expect(again.json.action).toBe('unchanged')
        else {
          expect(again.exitCode).toBe(4)
          expect(again.stderr.trim(), step).toBe(`skfp: instance ${sb.name} is half up: ${missing[step as keyof typeof missing]}: run \`skfp down --instance ${sb.name}\` first (it removes what is left: of a crash, an interrupted run, or changes removed under it), or up again with --replace`)
        }
        if (step === 'msg-verdict') {
          // down, then up, in one: the instance works again
          const replaced = await skfp([...upArgs(sb, ns), '--replace'])
          expect(replaced.json, replaced.stderr).toMatchObject({action: 'replaced'})
          expect(await status(sb.name)).toMatchObject({state: 'up', problems: []})
          const r = await transfer(sb, ns, ['pair', '--addr', '127.0.0.1', '--port', '0', '--bytes', String(MiB), '--seed', 'hu'])
          expect(r.clientReceivedSha).toBe(expectedSha('hu-down', MiB))
          expect((await status(sb.name)).counters.bytesRedirected).toBeGreaterThan(0)
        }
        expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
        expect(await leftovers(sb)).toEqual([])
      }
    })
  })
})
