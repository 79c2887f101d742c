/** `skfp status`: the observed pins → the documented --json shape. */
import {CFG_FASTPATH, type Counters} from './config.js'
import {hookKey} from './intercept.js'
import {instanceState, missingIntercept, type InstanceState, type ObservedInstance} from './observe.js'
import type {UpSettings} from './settings.js'

/** The `skfp status --json` contract (one entry per instance). */
export interface InstanceStatus {
  instance: string
  state: InstanceState
  /** What is missing or left over when the state is half-up. */
  problems: string[]
  settings: UpSettings | null
  /** variant: which fastpath object this instance loaded (null: the kernel takes none). */
  fastpath: {enabled: boolean; sockets: number | null; variant: string | null}
  programs: {
    sockops: {id: number; attached: boolean; cgroup: string | null} | null
    skMsg: {id: number} | null
  }
  /** null when interception is off. */
  intercept: {
    uplinks: {dev: string; attached: boolean}[]
    loAttached: boolean
    rules: {v4: boolean | null; v6: boolean | null}
    routes: {v4: boolean | null; v6: boolean | null}
    proxy: {port: number; addr4: string | null; addr6: string | null; listening: {v4: boolean | null; v6: boolean | null}}
    proxyDown: string
  } | null
  counters: Counters | null
  pinDir: string
}

export function statusOf(o: ObservedInstance): InstanceStatus {
  const state = instanceState(o)
  const problems: string[] = []
  if (state === 'half-up') {
    if (!o.record) problems.push('no undo record (up stopped before writing it)')
    if (o.record?.changes.some((c) => c.kind === 'sockops') && (!o.progs.sockops || !o.progs.skMsg)) problems.push('programs are not all pinned')
    if (o.record?.changes.some((c) => c.kind === 'sockops') && !o.sockopsAttached) problems.push('sock_ops is not attached to its cgroup')
    for (const m of missingIntercept(o)) problems.push(`${m} is missing`)
  }
  return {
    instance: o.instance,
    state,
    problems,
    settings: o.record?.settings ?? null,
    fastpath: {
      enabled: !!(o.config && o.config.flags & CFG_FASTPATH),
      sockets: o.sockets ?? null,
      variant: o.record ? (o.record.fastpathVariant === undefined ? 'kfunc' : o.record.fastpathVariant) : null,
    },
    programs: {
      sockops: o.progs.sockops ? {id: o.progs.sockops.id, attached: o.sockopsAttached, cgroup: o.record?.settings.cgroup ?? null} : null,
      skMsg: o.progs.skMsg ? {id: o.progs.skMsg.id} : null,
    },
    intercept: interceptStatus(o),
    counters: o.counters ?? null,
    pinDir: o.pins.dir,
  }
}

function interceptStatus(o: ObservedInstance): InstanceStatus['intercept'] {
  const i = o.record?.settings.intercept
  const seen = o.intercept
  if (!i || !seen) return null
  const fam = (f: 4 | 6, v: Record<4 | 6, boolean>) => ((f === 4 ? i.proxyAddr4 : i.proxyAddr6) ? v[f] : null)
  return {
    uplinks: i.uplinks.map((dev) => ({dev, attached: !!seen.filters[hookKey(dev, 'egress')]})),
    loAttached: !!seen.filters[hookKey('lo', 'ingress')],
    rules: {v4: fam(4, seen.rules), v6: fam(6, seen.rules)},
    routes: {v4: fam(4, seen.routes), v6: fam(6, seen.routes)},
    proxy: {port: i.proxyPort, addr4: i.proxyAddr4, addr6: i.proxyAddr6, listening: {v4: fam(4, seen.listening), v6: fam(6, seen.listening)}},
    proxyDown: i.proxyDown,
  }
}
