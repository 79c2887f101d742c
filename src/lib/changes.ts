/**
 * Each kind of recorded change in one place: how `up` names, applies and undoes it (and its rollback),
 * how its presence on the host is observed, and the one rule by which `status` and `down` judge it in
 * place. `status` calls an instance half-up when a recorded change is not in place; `down` undoes the
 * changes that are (and, for a few kinds, only when undoing cannot hurt someone else).
 */
import type {Cmd, Runner} from './exec.js'
import type {InterceptObserved} from './intercept.js'
import type {InstancePins} from './pins.js'
import type {Change} from './record.js'
import * as bpftool from './tools/bpftool.js'
import * as ip from './tools/ip.js'
import * as sysctl from './tools/sysctl.js'
import * as tc from './tools/tc.js'

/** What the presence rules read: observeInstance's findings. */
export interface Presence {
  progs: {skMsg?: unknown}
  /** sock_ops is attached to the recorded cgroup. */
  sockopsAttached: boolean
  /** The FIN hold is attached to the recorded cgroup's ingress. */
  finHoldAttached: boolean
  intercept?: InterceptObserved
}

type Of<K extends Change['kind']> = Extract<Change, {kind: K}>

interface Kind<C extends Change> {
  /** The plan step's id (`undo-` + it at down). */
  id(c: C): string
  title(c: C, pins: InstancePins): string
  undoTitle(c: C, pins: InstancePins): string
  apply(c: C, pins: InstancePins, netns?: string): Cmd[]
  undo(c: C, pins: InstancePins, netns?: string): Cmd[]
  /** What it is, for "… is missing". */
  name(c: C): string
  /** Reads what present() needs into o (the interception kinds; the others are read from the pins). */
  observe?(runner: Runner, c: C, o: InterceptObserved, netns?: string): Promise<void>
  /** In place on the host: the one rule of status and down. */
  present(c: C, o: Presence): boolean
  /** down undoes a present change only when this holds too (default: always). */
  undoable?(c: C, o: Presence): boolean
  /** Its undo may find it gone already (nothing observes it exactly). */
  tolerant?: boolean
}

export const hookKey = (dev: string, dir: string) => `${dev} ${dir}`
/** A mark as `ip rule` prints it, with its mask: '0xca6c' (every bit) or '0x80000/0xff0000'. */
export function parseMarkText(text: string): {mark: number; mask: number} {
  const [mark, mask] = text.split('/').map((t) => Number(t) >>> 0)
  return {mark, mask: mask ?? 0xffffffff}
}

/** A mark in that form as text, the mask left out when it is every bit. */
export const markText = (mark: number, mask: number): string => `0x${mark.toString(16)}${mask === 0xffffffff ? '' : `/0x${mask.toString(16)}`}`

/** The mark of an `ip -j rule` entry ("0x5cf0" or "0x5cf0/0xffffffff"). */
export const markOf = (text?: string) => (text ? parseMarkText(text).mark : undefined)

/** The program a tc-filter change attaches (its pin and name): the *_l3 variant on an L3 device. */
function tcProgram(c: Of<'tc-filter'>, pins: InstancePins): [string, string] {
  const [pin, name] = ethernetProgram(c, pins)
  return c.l3 ? [`${pin}_l3`, `${name}_l3`] : [pin, name]
}

function ethernetProgram(c: Of<'tc-filter'>, pins: InstancePins): [string, string] {
  if (c.prog === 'uplink-ingress') return [pins.prog.tcUplinkIngress, 'skfp_tc_uplink_ingress']
  if (c.prog === 'lan-ingress') return [pins.prog.tcLanIngress, 'skfp_tc_lan_ingress']
  return c.direction === 'egress' ? [pins.prog.tcEgress, 'skfp_tc_egress'] : [pins.prog.tcLoIngress, 'skfp_tc_lo_ingress']
}

const KINDS: {[K in Change['kind']]: Kind<Of<K>>} = {
  'msg-verdict': {
    id: () => 'msg-verdict',
    title: () => 'Attach sk_msg to the sockhash',
    undoTitle: () => 'Detach sk_msg from the sockhash',
    apply: (_, pins) => [bpftool.attachMsgVerdict(pins.prog.skMsg, pins.map.socks)],
    undo: (_, pins) => [bpftool.detachMsgVerdict(pins.prog.skMsg, pins.map.socks)],
    name: () => 'the sk_msg program',
    present: (_, o) => !!o.progs.skMsg,
    tolerant: true, // msg_verdict has no observable attachment: its detach may find it gone already
  },
  sockops: {
    id: () => 'sockops',
    title: (c) => `Attach sock_ops to ${c.cgroup}`,
    undoTitle: (c) => `Detach sock_ops from ${c.cgroup}`,
    apply: (c, pins) => [bpftool.cgroupAttach(c.cgroup, 'sock_ops', pins.prog.sockops)],
    undo: (c, pins) => [bpftool.cgroupDetach(c.cgroup, 'sock_ops', pins.prog.sockops)],
    name: (c) => `sock_ops on ${c.cgroup}`,
    present: (_, o) => o.sockopsAttached,
  },
  'fin-hold': {
    id: () => 'fin-hold',
    title: (c) => `Attach the FIN hold to ${c.cgroup} ingress`,
    undoTitle: (c) => `Detach the FIN hold from ${c.cgroup} ingress`,
    apply: (c, pins) => [bpftool.cgroupAttach(c.cgroup, 'ingress', pins.prog.finHold)],
    undo: (c, pins) => [bpftool.cgroupDetach(c.cgroup, 'ingress', pins.prog.finHold)],
    name: (c) => `the FIN hold on ${c.cgroup} ingress`,
    present: (_, o) => o.finHoldAttached,
  },
  sysctl: {
    id: (c) => `sysctl-${c.key}`,
    title: (c) => `Set ${c.key}=${c.value}`,
    undoTitle: (c) => `Restore ${c.key}=${c.old}`,
    apply: (c, _, netns) => [sysctl.set(c.key, c.value, netns)],
    undo: (c, _, netns) => [sysctl.set(c.key, c.old, netns)],
    name: (c) => `${c.key}=${c.value}`,
    async observe(runner, c, o, netns) {
      o.sysctl[c.key] = await sysctl.get(runner, c.key, netns)
    },
    present: (c, o) => o.intercept?.sysctl[c.key] === c.value,
    undoable: (c) => c.old !== c.value, // it was so before up
  },
  rule: {
    id: (c) => `rule-v${c.family}`,
    title: (c) => `Add ip -${c.family} rule fwmark 0x${c.fwmark.toString(16)} lookup ${c.table}`,
    undoTitle: (c) => `Delete ip -${c.family} rule fwmark 0x${c.fwmark.toString(16)} lookup ${c.table}`,
    apply: (c, _, netns) => [ip.ruleAdd(c.family, c.fwmark, c.table, c.priority, netns)],
    undo: (c, _, netns) => [ip.ruleDel(c.family, c.fwmark, c.table, c.priority, netns)],
    name: (c) => `ip -${c.family} rule`,
    async observe(runner, c, o, netns) {
      o.rules[c.family] = (await ip.rules(runner, c.family, netns)).some((r) => r.priority === c.priority && markOf(r.fwmark) === c.fwmark && r.table === String(c.table))
    },
    present: (c, o) => !!o.intercept?.rules[c.family],
  },
  route: {
    id: (c) => `route-v${c.family}`,
    title: (c) => `Add ip -${c.family} route local default dev lo table ${c.table}`,
    undoTitle: (c) => `Delete ip -${c.family} route local default dev lo table ${c.table}`,
    apply: (c, _, netns) => [ip.routeAddLocalDefault(c.family, c.table, netns)],
    undo: (c, _, netns) => [ip.routeDelLocalDefault(c.family, c.table, netns)],
    name: (c) => `ip -${c.family} route in table ${c.table}`,
    async observe(runner, c, o, netns) {
      o.routes[c.family] = (await ip.routes(runner, c.family, String(c.table), netns)).some((r) => r.dst === 'default' && r.type === 'local')
    },
    present: (c, o) => !!o.intercept?.routes[c.family],
  },
  qdisc: {
    id: (c) => `qdisc-${c.dev}`,
    title: (c) => `Add a clsact qdisc to ${c.dev}`,
    undoTitle: (c) => `Delete the clsact qdisc of ${c.dev}`,
    apply: (c, _, netns) => [tc.qdiscAddClsact(c.dev, netns)],
    undo: (c, _, netns) => [tc.qdiscDelClsact(c.dev, netns)],
    name: (c) => `the clsact qdisc of ${c.dev}`,
    async observe(runner, c, o, netns) {
      const [qdiscs, ingress, egress] = await Promise.all([tc.qdiscs(runner, c.dev, netns), tc.filters(runner, c.dev, 'ingress', netns), tc.filters(runner, c.dev, 'egress', netns)])
      o.qdiscs[c.dev] = tc.hasClsact(qdiscs)
      o.qdiscForeignFilters[c.dev] = tc.foreignFilters([...ingress, ...egress]).length
    },
    present: (c, o) => !!o.intercept?.qdiscs[c.dev],
    undoable: (c, o) => o.intercept?.qdiscForeignFilters[c.dev] === 0, // skfp created it; it goes only when nobody else's filter is on it
  },
  'tc-filter': {
    id: (c) => `tc-filter-${c.dev}-${c.direction}`,
    title: (c, pins) => `Attach ${tcProgram(c, pins)[1]} to ${c.dev} ${c.direction}`,
    undoTitle: (c, pins) => `Detach ${tcProgram(c, pins)[1]} from ${c.dev} ${c.direction}`,
    apply: (c, pins, netns) => [tc.filterAdd(c.dev, c.direction, tcProgram(c, pins)[0], netns)],
    undo: (c, _, netns) => [tc.filterDel(c.dev, c.direction, netns)],
    name: (c) => `tc filter on ${c.dev} ${c.direction}`,
    async observe(runner, c, o, netns) {
      o.filters[hookKey(c.dev, c.direction)] = (await tc.filters(runner, c.dev, c.direction, netns)).some(tc.isSkfpFilter)
    },
    present: (c, o) => !!o.intercept?.filters[hookKey(c.dev, c.direction)],
  },
}

const kind = <C extends Change>(c: C) => KINDS[c.kind] as unknown as Kind<C>

export function stepId(c: Change): string {
  return kind(c).id(c)
}

export interface ChangeActions {
  title: string
  undoTitle: string
  apply: Cmd[]
  undo: Cmd[]
  tolerant: boolean
}

export function changeActions(c: Change, pins: InstancePins, netns?: string): ChangeActions {
  const k = kind(c)
  return {title: k.title(c, pins), undoTitle: k.undoTitle(c, pins), apply: k.apply(c, pins, netns), undo: k.undo(c, pins, netns), tolerant: !!k.tolerant}
}

/** Reads into o what the presence of the interception changes needs. */
export async function observeChange(runner: Runner, c: Change, o: InterceptObserved, netns?: string): Promise<void> {
  await kind(c).observe?.(runner, c, o, netns)
}

/** Whether the change is in place: the rule of both status (half-up) and down (what to undo). */
export function present(c: Change, o: Presence): boolean {
  return kind(c).present(c, o)
}

/** What down undoes: present, and safe to undo. */
export function toUndo(c: Change, o: Presence): boolean {
  const k = kind(c)
  return k.present(c, o) && (k.undoable?.(c, o) ?? true)
}

/** The recorded changes not in place, named. */
export function missingChanges(changes: Change[], o: Presence): string[] {
  return changes.filter((c) => !present(c, o)).map((c) => kind(c).name(c))
}
