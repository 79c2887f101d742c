// Plans as exact argv tables: what up and down would run, without running anything.
import {describe, expect, it} from 'vitest'
import {encodeConfig, CFG_FASTPATH, CONFIG_SIZE} from '../../src/lib/config.js'
import {missingChanges, stepId} from '../../src/lib/changes.js'
import {planDown} from '../../src/lib/down.js'
import {linkLayer, type InterceptObserved} from '../../src/lib/intercept.js'
import {instanceState} from '../../src/lib/observe.js'
import type {ObservedInstance} from '../../src/lib/observe.js'
import {instancePins} from '../../src/lib/pins.js'
import {previewPlan} from '../../src/lib/plan.js'
import {renderArgv} from '../../src/lib/render.js'
import {buildRecord, datapathConfig, decideUp, planFastpathAttach, planRepair, planUp, repairableChanges} from '../../src/lib/up.js'
import type {InterceptSettings, UpSettings} from '../../src/lib/settings.js'
import {lineOf} from './line-of.js'

const settings: UpSettings = {instance: 'lab', cgroup: '/sys/fs/cgroup/unified/lab', netns: 'labns', proxyMark: 255, fastpath: 'on', fastpathQueue: 4194304, intercept: null}
const pins = instancePins('lab')
const objects = {intercept: '/opt/skfp/build/bpfel/intercept.bpf.o', fastpath: '/opt/skfp/build/bpfel/fastpath.bpf.o'}
const HOLD = 'held-by-4242-777'
const facts = {pins, objects, fastpathVariant: 'kfunc' as const, bootId: 'b', bpffsMounted: true, pinRootExists: true, fastpath: true, hold: HOLD}

const table = (steps: ReturnType<typeof planUp>) => previewPlan(steps).map((s) => [s.id, ...s.argv.map((a) => renderArgv(a).replace(/ value hex .*/, ' value hex …'))])

describe('planUp', () => {
  it('loads, records, then attaches msg_verdict before sock_ops, marked as being changed by this run until the end', () => {
    expect(table(planUp(settings, facts))).toEqual([
      ['lock', 'mkdir -m 0700 /sys/fs/bpf/skfp/lab', 'mkdir -m 0700 /sys/fs/bpf/skfp/lab/held-by-4242-777'],
      [
        'load',
        'bpftool prog loadall /opt/skfp/build/bpfel/intercept.bpf.o /sys/fs/bpf/skfp/lab/progs pinmaps /sys/fs/bpf/skfp/lab/maps',
        'bpftool prog loadall /opt/skfp/build/bpfel/fastpath.bpf.o /sys/fs/bpf/skfp/lab/progs map name skfp_config pinned /sys/fs/bpf/skfp/lab/maps/skfp_config map name skfp_counters pinned /sys/fs/bpf/skfp/lab/maps/skfp_counters pinmaps /sys/fs/bpf/skfp/lab/fastpath-maps',
      ],
      [
        'record',
        'bpftool map update pinned /sys/fs/bpf/skfp/lab/maps/skfp_record key hex 00 00 00 00 value hex …',
        'bpftool map update pinned /sys/fs/bpf/skfp/lab/maps/skfp_config key hex 00 00 00 00 value hex …',
      ],
      ['msg-verdict', 'bpftool prog attach pinned /sys/fs/bpf/skfp/lab/progs/skfp_sk_msg msg_verdict pinned /sys/fs/bpf/skfp/lab/fastpath-maps/skfp_socks'],
      ['fin-hold', 'bpftool cgroup attach /sys/fs/cgroup/unified/lab ingress pinned /sys/fs/bpf/skfp/lab/progs/skfp_fin_hold multi'],
      ['sockops', 'bpftool cgroup attach /sys/fs/cgroup/unified/lab sock_ops pinned /sys/fs/bpf/skfp/lab/progs/skfp_sockops multi'],
      ['release', 'rm -r /sys/fs/bpf/skfp/lab/held-by-4242-777'],
    ])
  })

  it('a kernel that takes no fastpath variant: only the intercept object, no fastpath attachments', () => {
    const none = {...facts, objects: {intercept: objects.intercept}, fastpathVariant: null, fastpath: false}
    expect(table(planUp(settings, none)).map((row) => row[0])).toEqual(['lock', 'load', 'record', 'release'])
    expect(planUp(settings, none).find((s) => s.id === 'load')!.apply).toHaveLength(1)
    expect(buildRecord(settings, none)).toMatchObject({fastpathVariant: null, changes: []})
  })

  it('mounts bpffs and cgroup v2 and creates the pin root on a fresh host', () => {
    const ids = planUp(settings, {...facts, bpffsMounted: false, pinRootExists: false, mountCgroup2: '/sys/fs/cgroup/unified'}).map((s) => s.id)
    expect(ids.slice(0, 4)).toEqual(['mount-bpffs', 'mount-cgroup2', 'pin-root', 'lock'])
  })

  it('records every change before it is made, with the config flags it writes', () => {
    const record = buildRecord(settings, facts)
    expect(record.changes).toEqual([{kind: 'msg-verdict'}, {kind: 'fin-hold', cgroup: settings.cgroup}, {kind: 'sockops', cgroup: settings.cgroup}])
    expect(datapathConfig(settings, false, false).flags & CFG_FASTPATH).toBe(0)
    expect(datapathConfig(settings, true, false).flags & CFG_FASTPATH).toBe(CFG_FASTPATH)
  })

  it('every step that changes the host outside the instance directory has an undo', () => {
    // every kind of step: the fastpath, interception of TCP and UDP on an uplink, a LAN, new qdiscs
    const intercept: InterceptSettings = {
      uplinks: ['eth0'], proxyPort: 7893, proxyAddr4: '127.0.0.1', proxyAddr6: '::1', fwmark: 0x5cf0, table: 1487, bypass: ['192.0.2.0/24'], bypassPorts: [53],
      bypassPrivate: true, proxyDown: 'fail-fast', udp: true, lan: ['br0'], interceptCgroups: [], bypassCgroups: [], vpnMarks: ['0xca6c'],
    }
    const steps = planUp({...settings, intercept}, {...facts, intercept: {loIfindex: 1, oldAcceptLocal: '0', needsClsact: ['lo', 'eth0', 'br0'], l3: []}})
    // beyond the instance's own pins: interfaces, routing, sysctls, mounts, attachments, the lock
    const reachesOut = (argv: string[]) => {
      const tools = argv.map((a) => a.split('/').pop()!) // nsenter --net=… TOOL …: the tool comes later
      return tools.some((t) => ['ip', 'tc', 'sysctl', 'mount'].includes(t)) || (tools.includes('bpftool') && (argv.includes('attach') || argv.includes('cgroup')))
    }
    const preview = previewPlan(steps)
    const outside = preview.filter((s) => s.argv.some(reachesOut) || s.id === 'lock').map((s) => s.id)
    expect(outside).toEqual(expect.arrayContaining(['lock', 'msg-verdict', 'fin-hold', 'sockops', 'rule-v4', 'route-v6', 'qdisc-br0', 'tc-filter-eth0-ingress', 'tc-filter-br0-ingress', 'sysctl-net.ipv4.conf.lo.accept_local']))
    for (const id of outside) expect(steps.find((s) => s.id === id)!.undo.length, id).toBeGreaterThan(0)
  })
  it('an interface without link-layer header (linkLayer l3) gets the *_l3 programs; the others and lo the Ethernet ones', () => {
    expect([{link_type: 'ether'}, {link_type: 'none'}, {link_type: 'ppp'}, {link_type: 'loopback'}].map(linkLayer)).toEqual(['l2', 'l3', undefined, undefined])
    const intercept: InterceptSettings = {
      uplinks: ['wg0', 'eth0'], proxyPort: 7893, proxyAddr4: '127.0.0.1', proxyAddr6: null, fwmark: 0x5cf0, table: 1487, bypass: [], bypassPorts: [],
      bypassPrivate: true, proxyDown: 'fail-fast', udp: true, lan: ['tun1'], interceptCgroups: [], bypassCgroups: [], vpnMarks: [],
    }
    const steps = planUp({...settings, intercept}, {...facts, intercept: {loIfindex: 1, oldAcceptLocal: '0', needsClsact: [], l3: ['wg0', 'tun1']}})
    const attached = previewPlan(steps)
      .filter((s) => s.id.startsWith('tc-filter-'))
      .map((s) => `${s.id} ${s.argv[0].at(-1)!.split('/').pop()}`)
    expect(attached).toEqual([
      'tc-filter-lo-ingress skfp_tc_lo_ingress',
      'tc-filter-wg0-egress skfp_tc_egress_l3',
      'tc-filter-wg0-ingress skfp_tc_uplink_ingress_l3',
      'tc-filter-eth0-egress skfp_tc_egress',
      'tc-filter-eth0-ingress skfp_tc_uplink_ingress',
      'tc-filter-tun1-ingress skfp_tc_lan_ingress_l3',
    ])
  })
})

function observed(over: Partial<ObservedInstance> = {}): ObservedInstance {
  return {
    instance: 'lab',
    pins,
    exists: true,
    record: buildRecord(settings, facts),
    config: {...datapathConfig(settings, true, false)},
    progs: {sockops: {id: 10, name: 'skfp_sockops', type: 'sock_ops'}, skMsg: {id: 11, name: 'skfp_sk_msg', type: 'sk_msg'}, finHold: {id: 12, name: 'skfp_fin_hold', type: 'cgroup_skb'}},
    sockopsAttached: true,
    finHoldAttached: true,
    ...over,
  }
}

const down = (o: ObservedInstance) => planDown(o, HOLD)

describe('planDown', () => {
  it('flips the kill switch first, detaches in reverse order, then unpins', () => {
    const steps = down(observed())
    expect(steps.map((s) => s.id)).toEqual(['hold', 'kill-switch', 'undo-sockops', 'undo-fin-hold', 'undo-msg-verdict', 'unpin'])
    expect(previewPlan(steps)[0].argv).toEqual([['mkdir', '-m', '0700', '/sys/fs/bpf/skfp/lab/held-by-4242-777']])
    const kill = previewPlan(steps)[1].argv[0]
    expect(kill.slice(-CONFIG_SIZE).join('')).toBe(Buffer.from(encodeConfig({...datapathConfig(settings, false, false)})).toString('hex').match(/../g)!.join(''))
    expect(previewPlan(steps)[2].argv[0].join(' ')).toBe('bpftool cgroup detach /sys/fs/cgroup/unified/lab sock_ops pinned /sys/fs/bpf/skfp/lab/progs/skfp_sockops')
  })

  it('never deletes sockhash entries', () => {
    const all = previewPlan(down(observed())).flatMap((s) => s.argv.map((a) => a.join(' ')))
    expect(all.some((a) => / map delete /.test(a))).toBe(false)
  })

  it('skips what is already gone and only unpins a half-up instance', () => {
    expect(down(observed({sockopsAttached: false})).map((s) => s.id)).toEqual(['hold', 'kill-switch', 'undo-fin-hold', 'undo-msg-verdict', 'unpin'])
    expect(down(observed({finHoldAttached: false})).map((s) => s.id)).toEqual(['hold', 'kill-switch', 'undo-sockops', 'undo-msg-verdict', 'unpin'])
    expect(down(observed({record: undefined, config: undefined})).map((s) => s.id)).toEqual(['hold', 'unpin'])
    expect(down(observed({exists: false}))).toEqual([])
  })
})

describe('one presence rule for status and down', () => {
  const intercept: InterceptSettings = {
    uplinks: ['eth0'], proxyPort: 7893, proxyAddr4: '127.0.0.1', proxyAddr6: '::1', fwmark: 0x5cf0, table: 1487, bypass: [], bypassPorts: [],
    bypassPrivate: true, proxyDown: 'fail-fast', udp: true, lan: [], interceptCgroups: [], bypassCgroups: [], vpnMarks: [],
  }
  const withIntercept = {...settings, intercept}
  const record = buildRecord(withIntercept, {...facts, intercept: {loIfindex: 1, oldAcceptLocal: '0', needsClsact: ['lo', 'eth0'], l3: []}})
  const all: InterceptObserved = {
    listening: {4: true, 6: true}, udpListening: {4: true, 6: true},
    filters: {'lo ingress': true, 'eth0 egress': true, 'eth0 ingress': true}, qdiscForeignFilters: {lo: 0, eth0: 0}, qdiscs: {lo: true, eth0: true},
    rules: {4: true, 6: true}, routes: {4: true, 6: true}, sysctl: {'net.ipv4.conf.lo.accept_local': '1'},
  }
  // each recorded change taken away in turn: status calls the instance half-up naming it, down skips its undo
  const without: [string, Partial<ObservedInstance>][] = [
    ['sockops', {sockopsAttached: false}],
    ['fin-hold', {finHoldAttached: false}],
    ['msg-verdict', {progs: {sockops: {id: 10, name: 'skfp_sockops', type: 'sock_ops'}}}],
    ['sysctl-net.ipv4.conf.lo.accept_local', {intercept: {...all, sysctl: {'net.ipv4.conf.lo.accept_local': '0'}}}],
    ['rule-v6', {intercept: {...all, rules: {4: true, 6: false}}}],
    ['route-v4', {intercept: {...all, routes: {4: false, 6: true}}}],
    ['qdisc-eth0', {intercept: {...all, qdiscs: {lo: true, eth0: false}}}],
    ['tc-filter-eth0-ingress', {intercept: {...all, filters: {...all.filters, 'eth0 ingress': false}}}],
  ]
  it('every kind: in place, undone at down; taken away, named missing by status and not undone', () => {
    const full = observed({record, intercept: all})
    expect(instanceState(full)).toBe('up')
    const undone = down(full).map((s) => s.id)
    for (const c of record.changes) expect(undone, stepId(c)).toContain(`undo-${stepId(c)}`)
    expect(record.changes.map(stepId).sort()).toEqual(without.map(([id]) => id).concat('tc-filter-lo-ingress', 'tc-filter-eth0-egress', 'qdisc-lo', 'rule-v4', 'route-v6').sort())
    for (const [id, over] of without) {
      const o = observed({record, intercept: all, ...over})
      expect(instanceState(o), id).toBe('half-up')
      const missing = missingChanges(record.changes, o)
      expect(missing, id).toHaveLength(1)
      expect(down(o).map((s) => s.id), id).not.toContain(`undo-${id}`)
      expect(down(o).length, id).toBe(undone.length - 1)
    }
  })

  it('up puts back what only tc lost (an interface created again, a crash among the tc steps); anything else missing is for down or --replace', () => {
    const br = observed({record, intercept: {...all, qdiscs: {lo: true, eth0: false}, filters: {...all.filters, 'eth0 egress': false, 'eth0 ingress': false}}})
    expect(instanceState(br)).toBe('half-up')
    const changes = repairableChanges(br)!
    expect(changes.map(stepId)).toEqual(['qdisc-eth0', 'tc-filter-eth0-egress', 'tc-filter-eth0-ingress'])
    expect(table(planRepair(br, changes, HOLD))).toEqual([
      ['hold', 'mkdir -m 0700 /sys/fs/bpf/skfp/lab/held-by-4242-777'],
      ['qdisc-eth0', 'tc -n labns qdisc add dev eth0 clsact'],
      ['tc-filter-eth0-egress', 'nsenter --net=/run/netns/labns -- tc filter add dev eth0 egress prio 1487 handle 0x5cf0 bpf direct-action object-pinned /sys/fs/bpf/skfp/lab/progs/skfp_tc_egress'],
      ['tc-filter-eth0-ingress', 'nsenter --net=/run/netns/labns -- tc filter add dev eth0 ingress prio 1487 handle 0x5cf0 bpf direct-action object-pinned /sys/fs/bpf/skfp/lab/progs/skfp_tc_uplink_ingress'],
      ['release', 'rm -r /sys/fs/bpf/skfp/lab/held-by-4242-777'],
    ])
    for (const s of planRepair(br, changes, HOLD).slice(0, -1)) expect(s.undo.length, s.id).toBeGreaterThan(0)
    expect(repairableChanges(observed({record, intercept: all})), 'nothing missing').toBeUndefined()
    expect(repairableChanges(observed({record, intercept: {...all, rules: {4: true, 6: false}}})), 'a rule').toBeUndefined()
    expect(repairableChanges(observed({record, intercept: {...all, filters: {...all.filters, 'eth0 ingress': false}}, sockopsAttached: false})), 'and sock_ops').toBeUndefined()
    expect(repairableChanges(observed({record: undefined})), 'no record').toBeUndefined()
  })

  it('down leaves what it must not undo though it is in place: a qdisc with a foreign filter, a sysctl that was so before up', () => {
    const foreign = observed({record, intercept: {...all, qdiscForeignFilters: {lo: 0, eth0: 1}}})
    expect(instanceState(foreign)).toBe('up')
    expect(down(foreign).map((s) => s.id)).not.toContain('undo-qdisc-eth0')
    const was = buildRecord(withIntercept, {...facts, intercept: {loIfindex: 1, oldAcceptLocal: '1', needsClsact: [], l3: []}})
    expect(down(observed({record: was, intercept: all})).map((s) => s.id)).not.toContain('undo-sysctl-net.ipv4.conf.lo.accept_local')
  })
})

describe('decideUp', () => {
  it('plans when down, is a no-op with the same settings, switches the fastpath in place', () => {
    expect(decideUp(observed({exists: false}), settings, true, false)).toEqual({kind: 'plan', replace: false})
    expect(decideUp(observed(), settings, true, false)).toEqual({kind: 'noop'})
    const sw = decideUp(observed(), {...settings, fastpath: 'off'}, false, false)
    expect(sw.kind).toBe('switch-fastpath')
  })

  it('refuses other settings without --replace, and a half-up instance', () => {
    expect(lineOf(() => decideUp(observed(), {...settings, proxyMark: 1}, true, false))).toMatch(/proxyMark: 255 → 1.*--replace/)
    expect(decideUp(observed(), {...settings, proxyMark: 1}, true, true)).toEqual({kind: 'plan', replace: true})
    // --replace is down, then up, even with the same settings (new programs, a cgroup created again)
    expect(decideUp(observed(), settings, true, true)).toEqual({kind: 'plan', replace: true})
    // half up: the refusal names what is missing; --replace (down, then up) finishes it instead
    expect(lineOf(() => decideUp(observed({sockopsAttached: false}), settings, true, false))).toBe(
      'instance lab is half up: sock_ops on /sys/fs/cgroup/unified/lab is missing: run `skfp down --instance lab` first (it removes what is left: of a crash, an interrupted run, or changes removed under it), or up again with --replace',
    )
    expect(lineOf(() => decideUp(observed({record: undefined}), settings, true, false))).toMatch(/is half up: no undo record \(up stopped before writing it\): run/)
    expect(decideUp(observed({sockopsAttached: false}), settings, true, true)).toEqual({kind: 'plan', replace: true})
  })

  it('an instance up with the fastpath off has none of it: on attaches it, with an undo for each step; half attached, it is half up', () => {
    const none = {...facts, objects: {intercept: objects.intercept}, fastpathVariant: null, fastpath: false}
    const offSettings = {...settings, fastpath: 'off' as const}
    const off = observed({record: buildRecord(offSettings, none), config: datapathConfig(offSettings, false, false), progs: {}, sockopsAttached: false, finHoldAttached: false})
    expect(instanceState(off)).toBe('up')
    expect(decideUp(off, offSettings, false, false)).toEqual({kind: 'noop'})
    expect(decideUp(off, settings, true, false)).toEqual({kind: 'attach-fastpath'})
    const steps = planFastpathAttach(off, settings, {objects: {...objects, readers: '/opt/skfp/build/bpfel/readers.bpf.o'}, fastpathVariant: 'kfunc', hold: HOLD})
    expect(table(steps).map((row) => row.slice(0, row[0] === 'load' ? 3 : 2))).toEqual([
      ['load', 'mkdir -m 0700 /sys/fs/bpf/skfp/lab/fastpath-maps', 'mkdir -m 0700 /sys/fs/bpf/skfp/lab/held-by-4242-777'],
      ['record', 'bpftool map update pinned /sys/fs/bpf/skfp/lab/maps/skfp_record key hex 00 00 00 00 value hex …'],
      ['msg-verdict', 'bpftool prog attach pinned /sys/fs/bpf/skfp/lab/progs/skfp_sk_msg msg_verdict pinned /sys/fs/bpf/skfp/lab/fastpath-maps/skfp_socks'],
      ['fin-hold', 'bpftool cgroup attach /sys/fs/cgroup/unified/lab ingress pinned /sys/fs/bpf/skfp/lab/progs/skfp_fin_hold multi'],
      ['sockops', 'bpftool cgroup attach /sys/fs/cgroup/unified/lab sock_ops pinned /sys/fs/bpf/skfp/lab/progs/skfp_sockops multi'],
      ['release', 'rm -r /sys/fs/bpf/skfp/lab/held-by-4242-777'],
    ])
    for (const s of steps.filter((s) => s.id !== 'release')) expect(s.undo.length, s.id).toBeGreaterThan(0)
    // the load undone: the readers' links, the three programs, the fastpath's maps, the mark
    expect(steps[0].undo.map((a) => ('path' in a ? a.path.split('/').pop() : ''))).toEqual(['links', 'skfp_sockops', 'skfp_sk_msg', 'skfp_fin_hold', 'fastpath-maps', HOLD])
    // killed between load and record, or between creating the lock and loading
    expect(instanceState({...off, progs: {skMsg: {id: 11, name: 'skfp_sk_msg', type: 'sk_msg'}}})).toBe('half-up')
    expect(instanceState({...off, fastpathDir: true})).toBe('half-up')
  })
})
