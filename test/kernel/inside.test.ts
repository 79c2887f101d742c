// The focused suite each kernel of the matrix runs, inside its VM (test/kernel/matrix.test.ts boots
// it): what this kernel loads, interception carrying real bytes v4 and v6 through a transparent relay
// on an Ethernet uplink, a tun one and a WireGuard one (and UDP datagrams through v2ray),
// the fastpath with real bytes redirected and the guard bounding a slow reader, the self-test, bad
// input, and a crash in `up` cleaned by `down`. SKFP_EXPECT_FASTPATH says which fastpath variant this
// kernel must load ('none': it must be refused in one line), SKFP_EXPECT_GUARD how the guard measures.
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {PROJECT_ROOT, programPath} from '../../src/lib/build.js'
import {resolveTool} from '../../src/lib/exec.js'
import {waitForOutput} from '../../src/lib/iperf.js'
import {expectedSha} from '../fixtures/transfer.mjs'
import {FIXTURE, leftovers, removeVerdict, skfp, status, transfer, upArgs, withSandbox} from '../integration/helpers.js'
import {expectRestored, hostSnapshot} from '../integration/snapshot.js'
import {interceptArgs, PROXY_MARK, PROXY_PORT, proxyTopology, REMOTE4, REMOTE6, startV2ray, tunnel, waitForListener, wireguard} from '../integration/topology.js'

const EXPECT_FASTPATH = process.env.SKFP_EXPECT_FASTPATH ?? 'kfunc'
const EXPECT_GUARD = process.env.SKFP_EXPECT_GUARD ?? 'msg_tot_len'
const HAS_FASTPATH = EXPECT_FASTPATH !== 'none'
/** Whether bpf_sk_assign takes SO_REUSEPORT sockets here (Linux 6.5+): v2ray's do. */
const REUSEPORT = process.env.SKFP_EXPECT_REUSEPORT !== '0'
/** Which readers variant of the adaptive fastpath attaches here: tracepoint, fexit or none. */
const EXPECT_ADAPTIVE = process.env.SKFP_EXPECT_ADAPTIVE ?? 'tracepoint'
const ADAPTIVE = EXPECT_ADAPTIVE !== 'none'
const MiB = 1024 * 1024
/** The remote's addresses reached by the tun uplink, and by the WireGuard one. */
const [TUN4, TUN6] = ['198.19.2.1', '2001:2::3']
const [WG4, WG6] = ['198.19.3.1', '2001:2::4']
/** The WireGuard peer's own address on the remote (not bypassed, unlike 198.18.0.2). */
const WG_SERVER = '198.18.0.10'
/** Whether this kernel has WireGuard (SKFP_EXPECT_WIREGUARD: Debian's kernels; this machine's has none). */
const WIREGUARD = process.env.SKFP_EXPECT_WIREGUARD === '1'
const release = (await import('node:os')).release()

// doctor pins its verdict for the boot: on the running kernel the suite leaves the host as it was
afterAll(removeVerdict)

describe(`kernel ${release}`, () => {
  it('doctor: interception loads, the fastpath variant and guard are the expected ones, the self-test runs', async () => {
    const doc = await skfp(['doctor', '--rerun', '--json'])
    expect(doc.exitCode, doc.stderr).toBe(0)
    expect(doc.json.kernel.capabilities).toEqual({
      interception: true,
      fastpath: HAS_FASTPATH ? EXPECT_FASTPATH : null,
      guard: HAS_FASTPATH ? EXPECT_GUARD : null,
      adaptive: ADAPTIVE ? EXPECT_ADAPTIVE : null,
      reuseportProxies: REUSEPORT,
    })
    const v = doc.json.verdict
    if (!HAS_FASTPATH) {
      expect(v.probes).toEqual([])
      expect(v.hazards[0]).toMatch(/^the fastpath cannot load \(fastpath\.bpf\.o: .+; fastpath-compat\.bpf\.o: .+\)$/)
      return
    }
    for (const p of v.probes) expect(p.plainOk, `${p.probe} over plain TCP`).toBe(true)
    // the adaptive fastpath where the kernel takes it (then auto turns it on: every probe passes),
    // else every-reader mode, whose hazards the verdict reports
    expect(v.mode).toBe(ADAPTIVE ? 'adaptive' : 'all')
    if (ADAPTIVE) {
      expect(v.fastpathSafe, JSON.stringify(v.probes)).toBe(true)
      expect(v.limits.map((p: {probe: string}) => p.probe)).toEqual(['late-splice'])
    }
    // what the guard and the pairing promise on every kernel (splice, MSG_WAITALL, FIONREAD and the rare
    // EAGAIN after a demotion are the kernel's sockmap behaviours: the verdict reports them)
    for (const probe of ['slow-reader', 'halfclose', 'port-reuse', 'dualstack', 'integrity', 'two-namespaces'])
      expect(v.probes.find((p: {probe: string}) => p.probe === probe), probe).toMatchObject({ok: true})
  })

  it(`interception: 4 MiB each way over IPv4 and IPv6 through a transparent relay, sha256 intact, and 1 MiB by a tun uplink${WIREGUARD ? ' and a WireGuard one' : ''}; fail-fast there; down restores the host; bad input and a crash in up leave it as it was`, async () => {
    // one sandbox for all of it: under emulation each namespace and each CLI run costs seconds
    await withSandbox('kx', async (sb) => {
      const {host, remote} = await proxyTopology(sb)
      // a VPN's tun device (no link-layer header) to the remote, by which two more of its addresses are reached
      await tunnel(sb, {netns: host, addrs: ['198.18.2.1/30', 'fd00:1a::1/64'], under: '198.18.0.1'}, {netns: remote, addrs: ['198.18.2.2/30', 'fd00:1a::2/64'], under: '198.18.0.2'}, 'tun0', 5101)
      // and WireGuard's device, where the kernel has it, to two more; its packets marked with its
      // fwmark for a wg-quick rule (the table empty: every other packet goes on to main), which up
      // reads (vpnMarks), and sent to an address of the remote that is not bypassed. (They passed
      // without the mark too, 6.1, 2026-12-08: the kernel's WireGuard needs none; a VPN's packets
      // from an ordinary socket do, intercept.test.ts)
      if (WIREGUARD) {
        await sb.cmd(remote, ['addr', 'add', `${WG_SERVER}/32`, 'dev', 'lo'])
        await sb.cmd(host, ['rule', 'add', 'not', 'fwmark', '51820', 'table', '51820'])
        await wireguard(sb, {netns: host, addrs: ['198.18.2.5/30', 'fd00:1c::1/64'], under: '198.18.0.1', mark: 51820}, {netns: remote, addrs: ['198.18.2.6/30', 'fd00:1c::2/64'], under: WG_SERVER}, 'wg0', 5102)
      }
      const l3: [string, string, string][] = [['tun0', TUN4, TUN6], ...(WIREGUARD ? [['wg0', WG4, WG6] as [string, string, string]] : [])]
      for (const [dev, addr4, addr6] of l3)
        for (const [family, addr, len] of [['-4', addr4, 32], ['-6', addr6, 128]] as const) {
          await sb.cmd(remote, [family, 'addr', 'add', `${addr}/${len}`, 'dev', 'lo'])
          await sb.cmd(host, [family, 'route', 'add', `${addr}/${len}`, 'dev', dev])
        }
      const before = await hostSnapshot([host], sb.cgroup)
      const bad = await skfp(upArgs(sb, host, ['--fastpath-queue', '10']))
      expect(bad.exitCode).toBe(2)
      expect(bad.stderr.trim()).toMatch(/^skfp: --fastpath-queue "10" is out of range/)
      await expectRestored(before, [host], sb.cgroup)

      // the remote side's own address goes direct: ss-redir's connections to its server, below
      const up = await skfp(interceptArgs(sb, host, ['--bypass', '198.18.0.2/32', '--uplink', 'up0', ...l3.flatMap(([dev]) => ['--uplink', dev])]))
      expect(up.exitCode, up.stderr).toBe(0)
      const at = (addr: string, port: number) => (addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`)
      // no proxy yet: by the tun (and WireGuard) uplink too, fail-fast answers at once (TCP reset, ICMP port unreachable)
      for (const addr of l3.flatMap(([, addr4, addr6]) => [addr4, addr6])) {
        const tcp = await sb.run(host, [resolveTool('curl'), '-s', '-m', '20', `http://${at(addr, 8080)}/`], {allowFailure: true})
        expect(tcp.exitCode, `curl ${addr} with no proxy`).toBe(7)
        const udp = JSON.parse((await sb.run(host, [programPath('skfp-udp'), 'rtt', '--connect', at(addr, 5300), '--count', '1', '--loss-ms', '20000'], {allowFailure: true})).stdout)
        expect(udp, `udp ${addr} with no proxy`).toMatchObject({errors: 1, error: 'recv: Connection refused'})
      }
      const relay = sb.start(host, [programPath('skfp-relay'), '--listen', `127.0.0.1:${PROXY_PORT}`, '--listen', `[::1]:${PROXY_PORT}`, '--mark', String(PROXY_MARK)])
      await new Promise<void>((resolve) => relay.stdout!.once('data', () => resolve()))
      const byL3 = l3.flatMap(([, addr4, addr6], i) => [[addr4, 9203 + 2 * i, MiB], [addr6, 9204 + 2 * i, MiB]] as const)
      for (const [addr, port, bytes] of [[REMOTE4, 9201, 4 * MiB] as const, [REMOTE6, 9202, 4 * MiB] as const, ...byL3]) {
        const seed = `k${port}`
        const server = sb.start(remote, [process.execPath, FIXTURE, 'server', '--addr', addr, '--port', String(port), '--bytes', String(bytes), '--seed', seed], {outsideCgroup: true})
        await new Promise<void>((resolve) => server.stdout!.once('data', () => resolve()))
        const c = await transfer(sb, host, ['client', '--addr', addr, '--port', String(port), '--bytes', String(bytes), '--seed', seed])
        const s = JSON.parse(String((await server).stdout).trim().split('\n').pop()!)
        expect(s.serverReceivedSha, `${addr} up`).toBe(expectedSha(`${seed}-up`, bytes))
        expect(c.clientReceivedSha, `${addr} down`).toBe(expectedSha(`${seed}-down`, bytes))
      }
      // UDP (on by default) and TCP through v2ray, whose sockets are SO_REUSEPORT ones: a kernel
      // before 6.5 refuses to assign them, and then the client gets --proxy-down's answer at once
      // (fail-fast: ECONNREFUSED) and status says why; from 6.5 on, they carry the traffic
      relay.kill('SIGTERM')
      await relay.catch(() => {})
      const v2ray = await startV2ray(sb, host)
      // build/bin/skfp-udp (C: quick to start under emulation): an echo server, 20 round trips, each
      // given 5 s (a proxy's round trip under emulation, on a busy machine, can take more than the
      // bench's 200 ms)
      for (const addr of [REMOTE4, REMOTE6]) {
        const echo = sb.start(remote, [programPath('skfp-udp'), 'echo', '--listen', at(addr, 5300)], {outsideCgroup: true})
        await waitForOutput(echo, /listening/, 60_000)
      }
      const udpClient = async (addr: string) => JSON.parse((await sb.run(host, [programPath('skfp-udp'), 'rtt', '--connect', at(addr, 5300), '--count', '20', '--loss-ms', '5000'], {allowFailure: true})).stdout)
      // every CLI run costs seconds under emulation: one status, read after both clients, explains a failure
      const viaV2ray = [await udpClient(REMOTE4), await udpClient(REMOTE6)]
      // TCP to a port nothing listens on: v2ray accepts and closes (curl 52), a refused SYN is reset (curl 7)
      const tcp = await sb.run(host, [resolveTool('curl'), '-s', '-m', '20', `http://${REMOTE4}:9/`], {allowFailure: true})
      const refused = await status(sb.name)
      const why = JSON.stringify(refused.counters)
      expect(refused.intercept.uplinks).toEqual([{dev: 'up0', attached: true, l3: false}, ...l3.map(([dev]) => ({dev, attached: true, l3: true}))])
      expect(refused.intercept.vpnMarks).toEqual(WIREGUARD ? ['0xca6c'] : [])
      for (const [i, r] of viaV2ray.entries()) {
        if (REUSEPORT) expect(r, `udp ${[REMOTE4, REMOTE6][i]} via v2ray: ${why}`).toMatchObject({count: 20, lost: 0, errors: 0})
        else expect(r, `udp ${[REMOTE4, REMOTE6][i]} via v2ray: ${why}`).toMatchObject({count: 0, errors: 1, error: 'recv: Connection refused'})
      }
      expect(tcp.exitCode, `curl through v2ray: ${why}`).toBe(REUSEPORT ? 52 : 7)
      if (REUSEPORT) expect(refused.counters.assignRefused).toBe(0)
      else {
        expect(refused.counters.assignRefused).toBeGreaterThan(0)
        expect(refused.warnings.join('\n')).toMatch(/SO_REUSEPORT/)
      }
      v2ray.child.kill('SIGTERM')
      await v2ray.child.catch(() => {})
      // ss-redir (no SO_REUSEPORT) relaying to ss-server: UDP on every kernel; its connections to the
      // server go direct (--bypass)
      const server = '198.18.0.2'
      const ss = sb.start(remote, [resolveTool('ss-server'), '-s', server, '-p', '8388', '-k', 'skfp-test', '-m', 'chacha20-ietf-poly1305', '-u'], {outsideCgroup: true})
      // a fresh instance: the refusal of v2ray's socket is not carried over to ss-redir's, which may
      // get the same kernel address (the note's window, SKFP_REFUSED_NS, is not waited out here)
      expect((await skfp(interceptArgs(sb, host, ['--bypass', `${server}/32`, '--replace']))).exitCode).toBe(0)
      // what `skfp template ss-redir` emits (tested on the running kernel by ss.test.ts), written here:
      // under emulation each CLI run costs seconds
      for (const addr of ['127.0.0.1', '::1']) {
        const config = {server, server_port: 8388, password: 'skfp-test', method: 'chacha20-ietf-poly1305', local_address: addr, local_port: PROXY_PORT, mode: 'tcp_and_udp', tcp_tproxy: true}
        const file = sb.file(`ss-redir-${addr === '::1' ? 6 : 4}.json`)
        writeFileSync(file, JSON.stringify(config))
        sb.start(host, [resolveTool('ss-redir'), '-c', file])
      }
      await waitForListener(sb, remote, 8388, 'udp')
      await waitForListener(sb, host, PROXY_PORT, 'udp', 2)
      const viaSs = [await udpClient(REMOTE4), await udpClient(REMOTE6)]
      ss.kill('SIGTERM')
      const st = await status(sb.name)
      for (const [i, r] of viaSs.entries()) expect(r, `udp ${[REMOTE4, REMOTE6][i]} via ss-redir: ${JSON.stringify(st.counters)}`).toMatchObject({count: 20, lost: 0, errors: 0})
      expect(st.counters.udpAssigned).toBe(40) // ss-redir's, in the fresh instance
      expect(st.state).toBe('up')
      // --fastpath off: interception only, none of the fastpath's programs loaded; on, they are attached in place
      expect([st.fastpath.variant, st.programs.skMsg]).toEqual([null, null])
      if (HAS_FASTPATH) {
        const on = await skfp(interceptArgs(sb, host, ['--bypass', `${server}/32`]).map((a) => (a === 'off' ? 'all' : a)))
        expect(on.json, on.stderr).toMatchObject({action: 'switched', fastpath: true})
        expect((await status(sb.name)).fastpath).toMatchObject({enabled: true, variant: EXPECT_FASTPATH})
      }
      expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
      await expectRestored(before, [host], sb.cgroup)

      // killed before its last change: half up, and down removes what is left
      const args = interceptArgs(sb, host).map((a) => (a === 'off' ? (HAS_FASTPATH ? 'all' : 'off') : a))
      const crashed = await skfp(args, {SKFP_CRASH_AFTER: 'qdisc-up0'})
      expect(crashed.exitCode, crashed.stderr).toBe(-1)
      expect((await status(sb.name)).state).toBe('half-up')
      expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
      expect(await leftovers(sb)).toEqual([])
      await expectRestored(before, [host], sb.cgroup)
    })
  })

  it.runIf(HAS_FASTPATH)('fastpath: 16 MiB each way over 127.0.0.1 redirected with sha256 intact; the guard holds a slow reader to its bound', async () => {
    await withSandbox('kf', async (sb) => {
      const ns = await sb.addNetns('a')
      const up = await skfp(upArgs(sb, ns, ['--fastpath-queue', String(4 * MiB)]))
      expect(up.exitCode, up.stderr).toBe(0)
      const r = await transfer(sb, ns, ['pair', '--addr', '127.0.0.1', '--port', '0', '--bytes', String(16 * MiB), '--seed', 'kf'])
      expect(r.serverReceivedSha).toBe(expectedSha('kf-up', 16 * MiB))
      expect(r.clientReceivedSha).toBe(expectedSha('kf-down', 16 * MiB))
      // under emulation the readers lag: the guard sends part of it over TCP, the rest is redirected
      const after = await status(sb.name)
      expect(after.counters.bytesRedirected, JSON.stringify(after.counters)).toBeGreaterThanOrEqual(MiB)

      const slow = await sb.run(ns, [programPath('skfp-probe'), 'slow-reader', '--bytes', '128M', '--burst', '4M', '--pause-ms', '10', '--timeout-ms', '170000', '--max-tcp-mem-mib', '48'], {timeoutMs: 175_000})
      const out = JSON.parse(slow.stdout.trim().split('\n').pop()!)
      expect(out.c2sIntact && out.s2cIntact, JSON.stringify(out)).toBe(true)
      expect(out.writeErrored).toBe(false)
      expect(out.tcpMemPeakGrowthBytes, JSON.stringify(out)).toBeLessThanOrEqual(48 * MiB)
      expect((await status(sb.name)).counters.guardDemotions).toBeGreaterThan(0)
    })
  })

  it.runIf(ADAPTIVE)('adaptive fastpath: a non-blocking recv() reader is promoted and gets redirected bytes, 8 MiB intact; readers that splice or read blocking are not, their bytes intact over TCP', async () => {
    await withSandbox('ka', async (sb) => {
      const ns = await sb.addNetns('a')
      const up = await skfp(upArgs(sb, ns).map((a) => (a === 'all' ? 'on' : a)))
      expect(up.exitCode, up.stderr).toBe(0)
      const readers = join(PROJECT_ROOT, 'test', 'fixtures', 'readers.py')
      for (const mode of ['recv', 'sniff-splice', 'blocking']) {
        // in lockstep: the reader reads (and is promoted) before the rest is sent; else, under
        // emulation, the writer can send all of it over TCP first and nothing is left to redirect
        const r = await sb.run(ns, [resolveTool('python3'), readers, mode, '--bytes', String(8 * MiB), '--lockstep', '3'], {allowFailure: true, timeoutMs: 300_000})
        expect(JSON.parse(r.stdout), `${mode}: ${r.stderr}`).toMatchObject({mode, received: 8 * MiB, intact: true, error: null})
      }
      const st = await status(sb.name)
      const why = JSON.stringify(st.counters)
      // both ends of the recv() connection, and the writers of the others (they read a greeting); the
      // blocking reader joined (its listener is non-blocking), was barred at its first read, and no
      // recv() of it failed with EAGAIN
      expect(st.fastpath.readers, why).toMatchObject({promoted: 4, keptOnTcp: {splice: 1, blocking: 1}})
      // every reader entry goes with its socket
      let now = st.fastpath.readers.now
      for (let i = 0; i < 50 && now.watched + now.promoted + now.barred + now.released > 0; i++) {
        await new Promise((r) => setTimeout(r, 200))
        now = (await status(sb.name)).fastpath.readers.now
      }
      expect(now, why).toEqual({watched: 0, promoted: 0, barred: 0, released: 0})
      // the recv() reader read three pieces before the rest was sent: then redirected (part of it:
      // under emulation the guard sends what outruns the reader over TCP)
      expect(st.counters.bytesRedirected, why).toBeGreaterThan(0)
    })
  })

  it.runIf(HAS_FASTPATH && !ADAPTIVE)('no adaptive fastpath on this kernel: --fastpath on is refused in one line naming what it lacks; auto keeps it off and says why', async () => {
    await withSandbox('kw', async (sb) => {
      const ns = await sb.addNetns('a')
      const on = await skfp(upArgs(sb, ns).map((a) => (a === 'all' ? 'on' : a)))
      expect(on.exitCode, on.stderr).toBe(3)
      expect(on.stderr.trim().split('\n')).toHaveLength(1)
      expect(on.stderr.trim()).toMatch(/^skfp: the adaptive fastpath cannot load on kernel .+: .*sock_recv_length.*--fastpath all/)
      const auto = await skfp(upArgs(sb, ns).map((a) => (a === 'all' ? 'auto' : a)))
      expect(auto.exitCode, auto.stderr).toBe(0)
      expect(auto.stderr).toMatch(/fastpath off: --fastpath auto needs the adaptive fastpath/)
      expect((await status(sb.name)).fastpath).toMatchObject({enabled: false, adaptive: false})
      expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
    })
  })

  it.runIf(!HAS_FASTPATH)('no fastpath on this kernel: --fastpath on is refused in one line naming the kernel; auto runs interception-only', async () => {
    await withSandbox('kn', async (sb) => {
      const ns = await sb.addNetns('a')
      const before = await hostSnapshot([ns], sb.cgroup)
      const on = await skfp(upArgs(sb, ns))
      expect(on.exitCode, on.stderr).toBe(3)
      expect(on.stderr.trim().split('\n')).toHaveLength(1)
      expect(on.stderr.trim()).toMatch(new RegExp(`^skfp: the fastpath cannot load on kernel ${release.replace(/[.+]/g, '\\$&')}: .+: interception works without it`))
      await expectRestored(before, [ns], sb.cgroup)
      const auto = await skfp(upArgs(sb, ns).map((a) => (a === 'all' ? 'auto' : a)))
      expect(auto.exitCode, auto.stderr).toBe(0)
      expect(auto.stderr).toMatch(/fastpath off: it cannot load on kernel/)
      expect((await status(sb.name)).fastpath).toMatchObject({enabled: false, variant: null})
      expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
    })
  })
})
