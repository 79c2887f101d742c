// A transparent relay written the way Go proxies relay (build/bin/skfp-gorelay: net + io.Copy, which
// is splice(2) between the two sockets), behind skfp's interception with skfp's defaults (no
// --fastpath flag), the server a local container (in the cgroup, so both hops are local TCP).
// With `--fastpath all` such a relay hangs (its splice reads never see redirected bytes). The
// defaults (adaptive) redirect only to a reader that reads with recv(): the relay's writes to the
// client and to the server are redirected, what the relay reads (with splice) comes over TCP.
import {afterAll, describe, expect, it} from 'vitest'
import {programPath} from '../../src/lib/build.js'
import {expectedSha} from '../fixtures/transfer.mjs'
import {FIXTURE, removeVerdict, skfp, status, transfer, withSandbox} from './helpers.js'
import {interceptArgs, PROXY_MARK, PROXY_PORT, proxyTopology, REMOTE4, REMOTE6} from './topology.js'

const MiB = 1024 * 1024
const BYTES = 32 * MiB
const DOWNLOADS = 6
// downloads paced as a remote server's are over a network: a pause of PAUSE_MS after each MiB
const PACED = 2
const PAUSE_MS = 20

// the defaults' --fastpath auto runs the self-test and pins its verdict
afterAll(removeVerdict)

describe('a Go relay (io.Copy, splice) with the defaults', () => {
  it('carries 32 MiB each way over IPv4 and IPv6 with sha256 intact, then 32 MiB downloads at full speed and paced, most of each paced one redirected (the relay reads with splice over TCP), nothing hangs', async () => {
    await withSandbox('gr', async (sb) => {
      const {host, remote} = await proxyTopology(sb)
      const defaults = interceptArgs(sb, host).filter((a, i, all) => a !== '--fastpath' && all[i - 1] !== '--fastpath')
      const up = await skfp(defaults)
      expect(up.exitCode, up.stderr).toBe(0)
      const relay = sb.start(host, [programPath('skfp-gorelay'), '--listen', `127.0.0.1:${PROXY_PORT}`, '--listen', `[::1]:${PROXY_PORT}`, '--mark', String(PROXY_MARK)])
      await new Promise<void>((resolve) => relay.stdout!.once('data', () => resolve()))
      const results: {addr: string; up: string; down: string; s: unknown; c: unknown}[] = []
      const downloadRedirected: number[] = []
      const pacedRedirected: number[] = []
      // two-way over IPv4 and IPv6, then DOWNLOADS downloads alone at full speed, then PACED paced ones
      const transfers = [
        [REMOTE4, 9301, BYTES, false],
        [REMOTE6, 9302, BYTES, false],
        ...Array.from({length: DOWNLOADS + PACED}, (_, i) => [i % 2 ? REMOTE6 : REMOTE4, 9303 + i, 0, i >= DOWNLOADS] as const),
      ] as const
      for (const [addr, port, upBytes, paced] of transfers) {
        const seed = `g${port}`
        const before = (await status(sb.name)).counters.bytesRedirected
        const pace = paced ? ['--pause-every', String(MiB), '--pause-ms', String(PAUSE_MS)] : []
        const server = sb.start(remote, [process.execPath, FIXTURE, 'server', '--addr', addr, '--port', String(port), '--bytes', String(BYTES), '--up', String(upBytes), '--seed', seed, ...pace])
        await new Promise<void>((resolve) => server.stdout!.once('data', () => resolve()))
        const c = await transfer(sb, host, ['client', '--addr', addr, '--port', String(port), '--bytes', String(BYTES), '--up', String(upBytes), '--seed', seed])
        const s = JSON.parse(String((await server).stdout).trim().split('\n').pop()!)
        results.push({addr, up: s.serverReceivedSha === expectedSha(`${seed}-up`, upBytes) ? 'ok' : 'BAD', down: c.clientReceivedSha === expectedSha(`${seed}-down`, BYTES) ? 'ok' : 'BAD', s, c})
        if (upBytes === 0) (paced ? pacedRedirected : downloadRedirected).push((await status(sb.name)).counters.bytesRedirected - before)
      }
      relay.kill('SIGTERM')
      const summary = JSON.parse(String((await relay).stderr).trim().split('\n').pop()!)
      const seen = `${JSON.stringify({results, summary, downloadRedirected, pacedRedirected})} ${JSON.stringify((await status(sb.name)).counters)}`
      for (const r of results) expect([r.addr, r.up, r.down], seen).toEqual([r.addr, 'ok', 'ok'])
      expect(summary).toMatchObject({accepted: transfers.length, upstreamFailed: 0, bytesUp: 2 * BYTES, bytesDown: transfers.length * BYTES})
      const st = await status(sb.name)
      const why = JSON.stringify(st.counters)
      expect(st.counters.tcAssignedListener).toBe(transfers.length)
      expect(st.fastpath).toMatchObject({enabled: true, adaptive: true})
      // the clients and the servers that read data (not the last, which gets none) read with recv():
      // promoted, and the relay's writes to them are redirected; the relay's sockets read with
      // splice(): never promoted, nothing redirected to them
      expect(st.fastpath.readers.promoted, why).toBe(4 + DOWNLOADS + PACED)
      expect(st.counters.readersBarred, why).toBe(0)
      // each download alone (the client half-closed at once): the client is promoted at its second
      // read, and the guard hands off once it has read every byte that came over TCP; from then on the
      // rest is redirected. At full speed that needs the client to catch up with the relay's splice
      // from a local server, which it does in most downloads and in none of some (1 in 16 in loops on
      // 2026-12-06, 3 and 4 of 6 together in two CI runs of 2026-12-07): downloadRedirected is shown,
      // not asserted. Paced as from a network, the client catches up at the first pause after its
      // promotion: at least 3/4 of each paced download is redirected (31/32 when the first one does)
      for (const n of pacedRedirected) expect(n, seen).toBeGreaterThanOrEqual((BYTES * 3) / 4)
    })
  })
})
