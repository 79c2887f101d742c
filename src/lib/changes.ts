/** How each recorded change is applied and undone: one table shared by `up`, its rollback and `down`. */
import type {Cmd} from './exec.js'
import type {InstancePins} from './pins.js'
import type {Change} from './record.js'
import * as bpftool from './tools/bpftool.js'

export interface ChangeActions {
  title: string
  apply: Cmd[]
  undo: Cmd[]
}

export function changeActions(change: Change, pins: InstancePins, netns?: string): ChangeActions {
  const inNs = (cmd: Cmd): Cmd => (netns ? {...cmd, netns} : cmd)
  switch (change.kind) {
    case 'msg-verdict':
      return {
        title: 'Attach sk_msg to the sockhash',
        apply: [bpftool.attachMsgVerdict(pins.prog.skMsg, pins.map.socks)],
        undo: [bpftool.detachMsgVerdict(pins.prog.skMsg, pins.map.socks)],
      }
    case 'sockops':
      return {
        title: `Attach sock_ops to ${change.cgroup}`,
        apply: [bpftool.cgroupAttach(change.cgroup, pins.prog.sockops)],
        undo: [bpftool.cgroupDetach(change.cgroup, pins.prog.sockops)],
      }
    default:
      // interception changes: tc, ip and sysctl (see the interception issue)
      void inNs
      throw new Error(`change ${change.kind} is not supported yet`)
  }
}
