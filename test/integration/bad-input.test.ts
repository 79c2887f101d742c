// Bad input: each case exits non-zero with one line naming the problem and the fix, and the
// host (programs, maps, pins, rules, routes, qdiscs, filters, sysctls) is exactly as before.
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {PROJECT_ROOT} from '../../src/lib/build.js'
import {resolveTool} from '../../src/lib/exec.js'
import {skfp, withSandbox} from './helpers.js'
import {expectRestored, hostSnapshot} from './snapshot.js'

type Case = [name: string, args: (ctx: {ns: string; cg: string; file: string}) => string[], exitCode: number, line: RegExp]

/** `skfp up` with good flags, some replaced (value undefined: flag left out). */
const up = (ctx: {ns: string; cg: string}, over: Record<string, string | undefined> = {}, extra: string[] = []) => {
  const flags: Record<string, string | undefined> = {instance: 'skfp-ttbad', netns: ctx.ns, cgroup: ctx.cg, ...over}
  return ['up', ...Object.entries(flags).flatMap(([k, v]) => (v === undefined ? [] : [`--${k}=${v}`])), ...extra]
}

export const cases: Case[] = [
  ['instance with /', (c) => up(c, {'instance': 'a/b'}), 2, /bad instance name .*a-z, 0-9 and -/],
  ['instance ..', (c) => up(c, {'instance': '..'}), 2, /bad instance name/],
  ['instance with a space', (c) => up(c, {'instance': 'a b'}), 2, /bad instance name/],
  ['instance with ;', (c) => up(c, {'instance': 'a;reboot'}), 2, /bad instance name/],
  ['instance with $(…)', (c) => up(c, {'instance': '$(id)'}), 2, /bad instance name/],
  ['instance of 33 characters', (c) => up(c, {instance: 'a'.repeat(33)}), 2, /bad instance name/],
  ['instance starting with -', (c) => up(c, {'instance': '-rf'}), 2, /bad instance name/],
  ['proxy mark -1', (c) => up(c, {'proxy-mark': '-1'}), 2, /--proxy-mark "-1" is out of range: give a whole number from 0 to 4294967295/],
  ['proxy mark abc', (c) => up(c, {'proxy-mark': 'abc'}), 2, /--proxy-mark "abc" is out of range/],
  ['proxy mark 2^32', (c) => up(c, {'proxy-mark': '4294967296'}), 2, /out of range/],
  ['fastpath mode', (c) => up(c, {'fastpath': 'yes'}), 2, /--fastpath "yes" is not a mode: use auto, on, all or off/],
  ['fastpath queue too small', (c) => up(c, {'fastpath-queue': '10'}), 2, /--fastpath-queue "10" is out of range/],
  ['unknown netns', (c) => up(c, {'netns': 'skfp-tt-nonexistent'}), 2, /netns skfp-tt-nonexistent does not exist: create it with `ip netns add NAME`/],
  ['netns escaping /run/netns', (c) => up(c, {'netns': '../../etc/passwd'}), 2, /bad netns name/],
  ['netns that is an option', (c) => up(c, {'netns': '--help'}), 2, /bad netns name/],
  ['cgroup that does not exist', (c) => up(c, {'cgroup': `${c.cg}/nope`}), 2, /cgroup .* does not exist/],
  ['cgroup that is a file', (c) => up(c, {cgroup: c.file}), 2, /is not a directory: pass a cgroup v2 directory/],
  ['cgroup that is not cgroup v2', (c) => up(c, {'cgroup': '/tmp'}), 2, /is not a cgroup v2 directory/],
  ['status of a bad instance', () => ['status', '--instance', '../x'], 2, /bad instance name/],
  ['down of a bad instance', () => ['down', '--instance', 'A'], 2, /bad instance name/],
  // the demo sweeps namespaces and root-level cgroups by its name's prefix: "system" would be system.slice
  ['demo named system', () => ['demo', '--name', 'system', '--duration', '1'], 2, /^skfp: demo name "system" does not start with skfp-: .*name it skfp-SOMETHING$/],
  ['unknown flag', (c) => up(c, {}, ['--frobnicate']), 2, /^skfp: Nonexistent flag: --frobnicate: see `skfp up --help`$/],
  // interception
  ['unknown interface', (c) => ix(c, {uplink: 'nope0'}), 2, /interface nope0 does not exist in netns .*: check `ip link`/],
  ['interface with a space', (c) => ix(c, {uplink: 'eth 0'}), 2, /bad interface name "eth 0"/],
  ['interface with ;', (c) => ix(c, {uplink: 'eth0;reboot'}), 2, /bad interface name/],
  ['interface with $(…)', (c) => ix(c, {uplink: '$(id)'}), 2, /bad interface name/],
  ['interface of 16 characters', (c) => ix(c, {uplink: 'a'.repeat(16)}), 2, /bad interface name/],
  ['interface that is an option', (c) => ix(c, {uplink: '-all'}), 2, /bad interface name/],
  ['lo as the uplink', (c) => ix(c, {uplink: 'lo'}), 2, /--uplink lo is not an uplink/],
  ['proxy port 0', (c) => ix(c, {'proxy-port': '0'}), 2, /--proxy-port "0" is out of range: give a whole number from 1 to 65535/],
  ['proxy port 65536', (c) => ix(c, {'proxy-port': '65536'}), 2, /--proxy-port "65536" is out of range/],
  ['proxy port -1', (c) => ix(c, {'proxy-port': '-1'}), 2, /--proxy-port "-1" is out of range/],
  ['proxy port abc', (c) => ix(c, {'proxy-port': 'abc'}), 2, /--proxy-port "abc" is out of range/],
  ['bypass port 70000', (c) => ix(c, {'bypass-port': '70000'}), 2, /--bypass-port "70000" is out of range/],
  ['fwmark 0', (c) => ix(c, {fwmark: '0'}), 2, /--fwmark "0" is out of range/],
  ['fwmark equal to the proxy mark', (c) => ix(c, {fwmark: '255'}), 2, /--fwmark 255 equals --proxy-mark: the two marks must differ/],
  ['table 254 (main)', (c) => ix(c, {table: '254'}), 2, /--table 254 is a table the kernel uses/],
  ['table out of range', (c) => ix(c, {table: '4294967296'}), 2, /--table .* is out of range/],
  ['malformed CIDR', (c) => ix(c, {bypass: '10.0.0.0/33'}), 2, /--bypass "10.0.0.0\/33" is not a CIDR: give an address/],
  ['CIDR that is not an address', (c) => ix(c, {bypass: 'example.com/8'}), 2, /is not a CIDR/],
  ['proxy address that is not one', (c) => ix(c, {'proxy-addr': '127.0.0.256'}), 2, /--proxy-addr "127.0.0.256" is not an IP address/],
  ['interception without a proxy mark', (c) => ix(c, {'proxy-mark': undefined}), 2, /interception needs --proxy-mark/],
  ['bypass without interception', (c) => up(c, {bypass: '10.0.0.0/8'}), 2, /--bypass needs --proxy-port/],
  ['proxy-down mode', (c) => ix(c, {'proxy-down': 'maybe'}), 2, /--proxy-down "maybe" is not a mode: use fail-fast, fail-closed or pass/],
  ['200 bypass CIDRs (the undo record)', (c) => [...ix(c), ...Array.from({length: 200}, (_, i) => `--bypass=198.51.${i >> 8}.${i & 255}/32`)], 2, /these settings need about \d+ bytes of the undo record, which holds 4088: give fewer --bypass/],
  ['300 bypass ports (the bypass map)', (c) => [...ix(c), ...Array.from({length: 300}, (_, i) => `--bypass-port=${1000 + i}`)], 2, /300 --bypass-port entries: at most 256 fit/],
  ['--no-udp without interception', (c) => up(c, {}, ['--no-udp']), 2, /--udp needs --proxy-port/],
  ['--lan without interception', (c) => up(c, {lan: 'up0'}), 2, /--lan needs --proxy-port/],
  ['--follow without interception', (c) => up(c, {}, ['--follow']), 2, /^skfp: --follow needs --proxy-port: an instance without interception has no interfaces or routes to follow$/],
  ['--follow with --dry-run', (c) => [...ix(c), '--follow', '--dry-run'], 2, /^skfp: --follow does not go with --dry-run: it stays in the foreground/],
  ['--lan lo', (c) => ix(c, {lan: 'lo'}), 2, /--lan lo is not a LAN interface: give the interface \(or bridge\) the LAN clients/],
  ['--lan that is the uplink', (c) => ix(c, {lan: 'up0'}), 2, /up0 is given as both --lan and --uplink/],
  ['--lan interface that does not exist', (c) => ix(c, {lan: 'nope1'}), 2, /interface nope1 does not exist in netns .*: check `ip link` and pass an existing interface with --lan/],
  ['--lan interface with ;', (c) => ix(c, {lan: 'br0;reboot'}), 2, /bad interface name/],
  ['--intercept-cgroup that is not cgroup v2', (c) => ix(c, {'intercept-cgroup': '/tmp'}), 2, /\/tmp is not a cgroup v2 directory: pass a directory under the cgroup2 mount \(see \/proc\/mounts\) with --intercept-cgroup/],
  ['--bypass-cgroup that does not exist', (c) => ix(c, {'bypass-cgroup': `${c.cg}/nope`}), 2, /cgroup .*\/nope does not exist: create it .* with --bypass-cgroup/],
  ['a cgroup both intercepted and bypassed', (c) => ix(c, {'intercept-cgroup': c.cg, 'bypass-cgroup': c.cg}), 2, /is given as both --intercept-cgroup and --bypass-cgroup/],
  ['--intercept-cgroup without interception', (c) => up(c, {'intercept-cgroup': c.cg}), 2, /--intercept-cgroup needs --proxy-port/],
  ['no default route and no --uplink', (c) => ix(c, {uplink: undefined}), 2, /no default route in netns .*: name the interfaces to intercept with --uplink/],
]

/** up with interception on the sandbox's veth uplink (up0), some flags replaced. */
const ix = (ctx: {ns: string; cg: string}, over: Record<string, string | undefined> = {}) =>
  up(ctx, {'proxy-port': '7893', 'proxy-mark': '255', uplink: 'up0', ...over})

describe('bad input is refused cleanly, host unchanged', () => {
  it.each(cases)('%s', async (_name, args, exitCode, line) => {
    await withSandbox('bad', async (sb) => {
      const ns = await sb.addNetns('a')
      const peer = await sb.addNetns('b')
      await sb.link({netns: ns, dev: 'up0', addrs: ['198.18.0.1/30']}, {netns: peer, dev: 'up0', addrs: ['198.18.0.2/30']})
      const file = join(PROJECT_ROOT, 'build', 'not-a-cgroup')
      writeFileSync(file, '')
      const before = await hostSnapshot([ns], sb.cgroup)
      const r = await skfp(args({ns, cg: sb.cgroup, file}))
      // a case that wrongly succeeds must not leave its instance to the next cases
      if (r.exitCode === 0) await skfp(['down', '--instance', 'skfp-ttbad'])
      expect(r.exitCode, r.stderr).toBe(exitCode)
      const lines = r.stderr.trim().split('\n')
      expect(lines.length, r.stderr).toBe(1)
      expect(lines[0]).toMatch(line)
      await expectRestored(before, [ns], sb.cgroup)
    })
  })

  it.each([
    ['a rule with the fwmark', ['rule', 'add', 'fwmark', '0x5cf0', 'lookup', '99', 'priority', '99'], /an ip -4 rule already uses fwmark 0x5cf0 .*: choose another mark with --fwmark/],
    ['a rule at skfp\'s priority', ['rule', 'add', 'fwmark', '0x99', 'lookup', '99', 'priority', '1487'], /an ip -4 rule already sits at priority 1487/],
    ['routes in the table', ['route', 'add', 'local', '198.18.9.9', 'dev', 'lo', 'table', '1487'], /table 1487 already has IPv4 routes: choose another table with --table/],
  ])('collision with %s: refused (exit 4), nothing changed', async (_name, setup, line) => {
    await withSandbox('col', async (sb) => {
      const ns = await sb.addNetns('a')
      const peer = await sb.addNetns('b')
      await sb.link({netns: ns, dev: 'up0', addrs: ['198.18.0.1/30']}, {netns: peer, dev: 'up0', addrs: ['198.18.0.2/30']})
      await sb.cmd(ns, setup)
      const before = await hostSnapshot([ns], sb.cgroup)
      const r = await skfp(ix({ns, cg: sb.cgroup}))
      expect(r.exitCode, r.stderr).toBe(4)
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
      expect(r.stderr.trim()).toMatch(line)
      await expectRestored(before, [ns], sb.cgroup)
    })
  })

  it('an uplink or --lan interface of a link type skfp cannot read (PPP): refused (exit 2), nothing changed', async () => {
    await withSandbox('blt', async (sb) => {
      const ns = await sb.addNetns('a')
      const peer = await sb.addNetns('b')
      await sb.link({netns: ns, dev: 'up0', addrs: ['198.18.0.1/30']}, {netns: peer, dev: 'up0', addrs: ['198.18.0.2/30']})
      // a tun device given PPP's link type (TUNSETLINK, ARPHRD_PPP) and kept (TUNSETPERSIST): this
      // kernel has no ppp driver, and what skfp reads is the link type
      const pppLike = [
        'import fcntl, struct',
        "fd = open('/dev/net/tun', 'rb')",
        "fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH22x', b'ppp0', 0x1001))", // TUNSETIFF: IFF_TUN | IFF_NO_PI
        'fcntl.ioctl(fd, 0x400454cd, 512)', // TUNSETLINK
        'fcntl.ioctl(fd, 0x400454cb, 1)', // TUNSETPERSIST
      ].join('\n')
      await sb.run(ns, [resolveTool('python3'), '-c', pppLike])
      expect(JSON.parse((await sb.cmd(ns, ['-d', '-j', 'link', 'show', 'ppp0'])).stdout)[0].link_type).toBe('ppp')
      const before = await hostSnapshot([ns], sb.cgroup)
      for (const flag of ['uplink', 'lan']) {
        const r = await skfp(ix({ns, cg: sb.cgroup}, {[flag]: 'ppp0'}))
        expect([r.exitCode, r.stderr.trim()]).toEqual([
          2,
          `skfp: interface ppp0 has link type ppp, which skfp cannot intercept on: give --${flag} an Ethernet-like interface (physical, veth, bridge) or one without link-layer header (tun, WireGuard)`,
        ])
      }
      await expectRestored(before, [ns], sb.cgroup)
    })
  })

  it('--json: an error is {"error": {kind, message, exitCode, …}} on stdout, the one line on stderr', async () => {
    await withSandbox('bj', async (sb) => {
      const ns = await sb.addNetns('a')
      const r = await skfp([...up({ns, cg: sb.cgroup}, {'fastpath-queue': '10'}), '--json'])
      expect(r.exitCode).toBe(2)
      expect(r.json.error).toMatchObject({kind: 'usage', exitCode: 2, message: '--fastpath-queue "10" is out of range'})
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
    })
  })

  it('NO_COLOR turns colour off, even where FORCE_COLOR asks for it', async () => {
    const coloured = await skfp(['status', '--instance', 'skfp-tt-nocolor'], {FORCE_COLOR: '3'})
    expect(coloured.stdout).toContain('\u001b[')
    const plain = await skfp(['status', '--instance', 'skfp-tt-nocolor'], {FORCE_COLOR: '3', NO_COLOR: '1'})
    expect(plain.exitCode).toBe(0)
    expect(plain.stdout).toContain('instance skfp-tt-nocolor: down')
    expect(plain.stdout).not.toContain('\u001b[')
  })

  it('not root: refused before anything changes', async () => {
    await withSandbox('nr', async (sb) => {
      const ns = await sb.addNetns('a')
      const before = await hostSnapshot([ns], sb.cgroup)
      const r = await skfp(up({ns, cg: sb.cgroup}), {HOME: '/tmp'}, ['/usr/bin/setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'])
      expect(r.exitCode).toBe(3)
      expect(r.stderr.trim()).toBe('skfp: skfp needs root: run it with sudo, or as root')
      await expectRestored(before, [ns], sb.cgroup)
    })
  })

  it('bpftool missing: names the package, changes nothing', async () => {
    await withSandbox('nt', async (sb) => {
      const ns = await sb.addNetns('a')
      const before = await hostSnapshot([ns], sb.cgroup)
      const r = await skfp(up({ns, cg: sb.cgroup}), {}, ['/usr/bin/unshare', '--mount', '--propagation', 'private', process.execPath, join(PROJECT_ROOT, 'test', 'fixtures', 'without-tool.mjs'), 'bpftool', '--'])
      expect(r.exitCode).toBe(3)
      expect(r.stderr.trim()).toMatch(/^skfp: bpftool not found in .*: install it: apt-get install bpftool$/)
      await expectRestored(before, [ns], sb.cgroup)
    })
  })
})
