// A transparent relay written the way Go proxies relay (build/bin/skfp-gorelay: net + io.Copy, which
// is splice(2) between the two sockets), behind skfp's interception with skfp's defaults (no
// --fastpath flag), the server a local container (in the cgroup, so both hops are local TCP).
// With `--fastpath all` such a relay hangs (its splice reads never see redirected bytes). The
// defaults (adaptive) redirect only between two ends that both read with recv(): the relay's
// sockets splice, so both its hops stay on TCP, every byte intact, nothing hangs.
import {afterAll, describe, expect, it} from 'vitest'
import {programPath} from '../../src/lib/build.js'
import {expectedSha} from '../fixtures/transfer.mjs'
import {FIXTURE, removeVerdict, skfp, status, transfer, withSandbox} from './helpers.js'
import {interceptArgs, PROXY_MARK, PROXY_PORT, proxyTopology, REMOTE4, REMOTE6} from './topology.js'

const MiB = 1024 * 1024
const BYTES = 32 * MiB

// the defaults' --fastpath auto runs the self-test and pins its verdict
afterAll(removeVerdict)

describe('a Go relay (io.Copy, splice) with the defaults', () => {
  it('carries 32 MiB each way over IPv4 and IPv6 with sha256 intact, both hops on TCP (the relay reads with splice), nothing hangs', async () => {
    await withSandbox('gr', async (sb) => {
      const {host, remote} = await proxyTopology(sb)
      const defaults = interceptArgs(sb, host).filter((a, i, all) => a !== '--fastpath' && all[i - 1] !== '--fastpath')
      const up = await skfp(defaults)
      expect(up.exitCode, up.stderr).toBe(0)
      const relay = sb.start(host, [programPath('skfp-gorelay'), '--listen', `127.0.0.1:${PROXY_PORT}`, '--listen', `[::1]:${PROXY_PORT}`, '--mark', String(PROXY_MARK)])
      await new Promise<void>((resolve) => relay.stdout!.once('data', () => resolve()))
      const results: {addr: string; up: string; down: string; s: unknown; c: unknown}[] = []
      for (const [addr, port] of [[REMOTE4, 9301], [REMOTE6, 9302]] as const) {
        const seed = `g${port}`
        const server = sb.start(remote, [process.execPath, FIXTURE, 'server', '--addr', addr, '--port', String(port), '--bytes', String(BYTES), '--seed', seed])
        await new Promise<void>((resolve) => server.stdout!.once('data', () => resolve()))
        const c = await transfer(sb, host, ['client', '--addr', addr, '--port', String(port), '--bytes', String(BYTES), '--seed', seed])
        const s = JSON.parse(String((await server).stdout).trim().split('\n').pop()!)
        results.push({addr, up: s.serverReceivedSha === expectedSha(`${seed}-up`, BYTES) ? 'ok' : 'BAD', down: c.clientReceivedSha === expectedSha(`${seed}-down`, BYTES) ? 'ok' : 'BAD', s, c})
      }
      relay.kill('SIGTERM')
      const summary = JSON.parse(String((await relay).stderr).trim().split('\n').pop()!)
      const seen = `${JSON.stringify({results, summary})} ${JSON.stringify((await status(sb.name)).counters)}`
      for (const r of results) expect([r.addr, r.up, r.down], seen).toEqual([r.addr, 'ok', 'ok'])
      expect(summary).toMatchObject({accepted: 2, upstreamFailed: 0, bytesUp: 2 * BYTES, bytesDown: 2 * BYTES})
      const st = await status(sb.name)
      const why = JSON.stringify(st.counters)
      expect(st.counters.tcAssignedListener).toBe(2)
      expect(st.fastpath).toMatchObject({enabled: true, adaptive: true})
      // the client and the server read with recv(): promoted. The relay's sockets never read with
      // recv() (splice both ways), so nothing is redirected to them nor from them: both ends of a
      // redirect must have shown they read with recv() (bpf/lib/fastpath.h says why)
      expect(st.fastpath.readers.promoted, why).toBe(4)
      expect(st.counters.readersBarred, why).toBe(0)
      expect(st.counters.bytesRedirected, why).toBe(0)
      // and its sockets, whose copied_seq moves without a recv(), leave the sockhash (then their
      // peers too, once they are promoted): plain TCP, without the sockmap's send and receive path
      expect(st.fastpath.readers.released, why).toBeGreaterThanOrEqual(4)
    })
  })
})
