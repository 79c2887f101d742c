/** `skfp status`: the observed pins → the documented --json shape. */
import {CFG_FASTPATH, type Counters} from './config.js'
import {instanceState, type InstanceState, type ObservedInstance} from './observe.js'
import type {UpSettings} from './settings.js'

/** The `skfp status --json` contract (one entry per instance). */
export interface InstanceStatus {
  instance: string
  state: InstanceState
  /** What is missing or left over when the state is half-up. */
  problems: string[]
  settings: UpSettings | null
  fastpath: {enabled: boolean; sockets: number | null}
  programs: {
    sockops: {id: number; attached: boolean; cgroup: string | null} | null
    skMsg: {id: number} | null
  }
  counters: Counters | null
  pinDir: string
}

export function statusOf(o: ObservedInstance): InstanceStatus {
  const state = instanceState(o)
  const problems: string[] = []
  if (state === 'half-up') {
    if (!o.record) problems.push('no undo record (up stopped before writing it)')
    if (!o.progs.sockops || !o.progs.skMsg) problems.push('programs are not all pinned')
    if (o.record?.changes.some((c) => c.kind === 'sockops') && !o.sockopsAttached) problems.push('sock_ops is not attached to its cgroup')
  }
  return {
    instance: o.instance,
    state,
    problems,
    settings: o.record?.settings ?? null,
    fastpath: {enabled: !!(o.config && o.config.flags & CFG_FASTPATH), sockets: o.sockets ?? null},
    programs: {
      sockops: o.progs.sockops ? {id: o.progs.sockops.id, attached: o.sockopsAttached, cgroup: o.record?.settings.cgroup ?? null} : null,
      skMsg: o.progs.skMsg ? {id: o.progs.skMsg.id} : null,
    },
    counters: o.counters ?? null,
    pinDir: o.pins.dir,
  }
}
