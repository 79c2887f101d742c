// Interception with the fastpath under real proxies and load.
import {describe, expect, it} from 'vitest'
import {programPath} from '../../src/lib/build.js'
import {resolveTool} from '../../src/lib/exec.js'
import {waitForOutput} from '../../src/lib/iperf.js'
import {skfp, socketsDrainTo0, status, withSandbox} from './helpers.js'
import {interceptArgs, PROXY_MARK, PROXY_PORT, proxyTopology, REMOTE4, startV2ray} from './topology.js'

const withFastpath = (args: string[]) => args.map((a) => (a === 'off' ? 'all' : a))

describe('interception + fastpath under load', () => {
  it('iperf3 through v2ray with the fastpath on: completes with 0 errors, the app-proxy hop redirected, no memory blow-up', async () => {
    await withSandbox('iv', async (sb) => {
      const {host, remote} = await proxyTopology(sb)
      expect((await skfp(withFastpath(interceptArgs(sb, host)))).exitCode).toBe(0)
      await startV2ray(sb, host)
      const iperf3 = resolveTool('iperf3')
      const server = sb.start(remote, [iperf3, '-s', '-1', '--forceflush', '-B', REMOTE4, '-p', '5201'], {outsideCgroup: true})
      await waitForOutput(server, /Server listening/)
      const r = await sb.run(host, [iperf3, '-c', REMOTE4, '-p', '5201', '-t', '3', '-J'], {allowFailure: true, timeoutMs: 30_000})
      const out = JSON.parse(r.stdout)
      expect(out.error, r.stdout.slice(0, 300)).toBeUndefined()
      expect(r.exitCode).toBe(0)
      expect(out.end.sum_received.bytes).toBeGreaterThan(0)
      const s = await status(sb.name)
      expect(s.counters.socketsAdded).toBe(4) // iperf3's control and data connections, both ends at the app-proxy hop
      expect(s.counters.connectionsPaired).toBe(2) // v2ray's upstream goes to the world (outside the cgroup)
      expect(s.counters.bytesRedirected).toBeGreaterThan(0)
    })
  })

  it('50 000 short connections through interception + fastpath: 0 errors, the sockhash back to 0', async () => {
    await withSandbox('il', async (sb) => {
      const {host, remote} = await proxyTopology(sb)
      expect((await skfp(withFastpath(interceptArgs(sb, host)))).exitCode).toBe(0)
      const relay = sb.start(host, [programPath('skfp-relay'), '--listen', `127.0.0.1:${PROXY_PORT}`, '--listen', `[::1]:${PROXY_PORT}`, '--mark', String(PROXY_MARK)])
      await waitForOutput(relay, /listening/)
      const server = sb.start(remote, [programPath('skfp-pingpong'), 'server', '--listen', `${REMOTE4}:7300`], {outsideCgroup: true})
      await waitForOutput(server, /listening/)
      let connections = 0
      let errors = 0
      const firstErrors: string[] = []
      for (let i = 0; i < 40 && connections < 50_000; i++) {
        const r = JSON.parse((await sb.run(host, [programPath('skfp-pingpong'), 'connrate', '--connect', `${REMOTE4}:7300`, '--duration-ms', '2000', '--parallel', '2', '--rst'])).stdout)
        connections += r.connections
        errors += r.errors
        if (r.firstError) firstErrors.push(r.firstError)
      }
      expect(connections).toBeGreaterThanOrEqual(50_000)
      expect(errors, firstErrors.join('; ')).toBe(0)
      expect(await socketsDrainTo0(sb.name)).toBe(0)
      const s = await status(sb.name)
      expect(s.counters.tcAssignedListener).toBeGreaterThanOrEqual(50_000)
      expect(s.counters.socketsAdded).toBeGreaterThanOrEqual(2 * 50_000) // client and relay end of each
      expect(s.counters.socketInsertFailures).toBe(0)
    })
  })
})
