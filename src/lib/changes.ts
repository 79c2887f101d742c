/** How each recorded change is applied and undone: one table shared by `up`, its rollback and `down`. */
import type {Cmd} from './exec.js'
import * as ip from './tools/ip.js'
import * as sysctl from './tools/sysctl.js'
import * as tc from './tools/tc.js'
import type {InstancePins} from './pins.js'
import type {Change} from './record.js'
import * as bpftool from './tools/bpftool.js'

export interface ChangeActions {
  title: string
  undoTitle: string
  apply: Cmd[]
  undo: Cmd[]
}

export function changeActions(change: Change, pins: InstancePins, netns?: string): ChangeActions {
  switch (change.kind) {
    case 'msg-verdict':
      return {
        title: 'Attach sk_msg to the sockhash',
        undoTitle: 'Detach sk_msg from the sockhash',
        apply: [bpftool.attachMsgVerdict(pins.prog.skMsg, pins.map.socks)],
        undo: [bpftool.detachMsgVerdict(pins.prog.skMsg, pins.map.socks)],
      }
    case 'sockops':
      return {
        title: `Attach sock_ops to ${change.cgroup}`,
        undoTitle: `Detach sock_ops from ${change.cgroup}`,
        apply: [bpftool.cgroupAttach(change.cgroup, pins.prog.sockops)],
        undo: [bpftool.cgroupDetach(change.cgroup, pins.prog.sockops)],
      }
    case 'sysctl':
      return {title: `Set ${change.key}=${change.value}`, undoTitle: `Restore ${change.key}=${change.old}`, apply: [sysctl.set(change.key, change.value, netns)], undo: [sysctl.set(change.key, change.old, netns)]}
    case 'rule':
      return {
        title: `Add ip -${change.family} rule fwmark 0x${change.fwmark.toString(16)} lookup ${change.table}`,
        undoTitle: `Delete ip -${change.family} rule fwmark 0x${change.fwmark.toString(16)} lookup ${change.table}`,
        apply: [ip.ruleAdd(change.family, change.fwmark, change.table, change.priority, netns)],
        undo: [ip.ruleDel(change.family, change.fwmark, change.table, change.priority, netns)],
      }
    case 'route':
      return {
        title: `Add ip -${change.family} route local default dev lo table ${change.table}`,
        undoTitle: `Delete ip -${change.family} route local default dev lo table ${change.table}`,
        apply: [ip.routeAddLocalDefault(change.family, change.table, netns)],
        undo: [ip.routeDelLocalDefault(change.family, change.table, netns)],
      }
    case 'qdisc':
      return {title: `Add a clsact qdisc to ${change.dev}`, undoTitle: `Delete the clsact qdisc of ${change.dev}`, apply: [tc.qdiscAddClsact(change.dev, netns)], undo: [tc.qdiscDelClsact(change.dev, netns)]}
    case 'tc-filter': {
      const [prog, name] =
        change.prog === 'uplink-ingress'
          ? [pins.prog.tcUplinkIngress, 'skfp_tc_uplink_ingress']
          : change.prog === 'lan-ingress'
            ? [pins.prog.tcLanIngress, 'skfp_tc_lan_ingress']
            : change.direction === 'egress'
            ? [pins.prog.tcEgress, 'skfp_tc_egress']
            : [pins.prog.tcLoIngress, 'skfp_tc_lo_ingress']
      return {
        title: `Attach ${name} to ${change.dev} ${change.direction}`,
        undoTitle: `Detach ${name} from ${change.dev} ${change.direction}`,
        apply: [tc.filterAdd(change.dev, change.direction, prog, netns)],
        undo: [tc.filterDel(change.dev, change.direction, netns)],
      }
    }
  }
}
