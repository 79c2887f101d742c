/** tc: clsact qdiscs and skfp's bpf filters (fixed pref and handle, so skfp finds exactly its own). */
import {SkfpError, tail} from '../errors.js'
import {ownNetns, type Cmd, type Runner} from '../exec.js'
import {arrayOf, hasFields, isObject, parseChecked, type Check} from './output.js'

/** Every skfp filter sits at this pref with this handle: never 49152, which tc gives filters added without one. */
export const FILTER_PREF = 1487
export const FILTER_HANDLE = '0x5cf0'

export type Direction = 'ingress' | 'egress'

/** Inside a netns, tc enters it itself (exec.ownNetns), except where a pin is named (filterAdd). */
const tc = (args: string[], netns?: string): Cmd => ownNetns('tc', args, netns)

export const qdiscAddClsact = (dev: string, netns?: string) => tc(['qdisc', 'add', 'dev', dev, 'clsact'], netns)
export const qdiscDelClsact = (dev: string, netns?: string) => tc(['qdisc', 'del', 'dev', dev, 'clsact'], netns)
export const filterAdd = (dev: string, dir: Direction, progPin: string, netns?: string): Cmd => ({
  tool: 'tc',
  args: ['filter', 'add', 'dev', dev, dir, 'prio', String(FILTER_PREF), 'handle', FILTER_HANDLE, 'bpf', 'direct-action', 'object-pinned', progPin],
  netns, // through nsenter: it names a pin
})
export const filterDel = (dev: string, dir: Direction, netns?: string) => tc(['filter', 'del', 'dev', dev, dir, 'pref', String(FILTER_PREF), 'handle', FILTER_HANDLE, 'bpf'], netns)

export interface Filter {
  pref: number
  kind: string
  options?: {handle?: string; bpf_name?: string; prog?: {id: number}}
}

export interface Qdisc {
  kind: string
  handle: string
}

/** A device without a clsact qdisc (or gone) has no filters; any other failure is an error. */
const NOTHING_THERE = /Cannot find specified qdisc|Cannot find device|Parent Qdisc doesn't exists|No such device/

async function json<T>(runner: Runner, args: string[], item: Check, netns?: string): Promise<T[]> {
  const r = await runner.run(tc(['-j', ...args], netns), {allowFailure: true})
  if (r.exitCode !== 0) {
    if (NOTHING_THERE.test(r.stderr)) return []
    throw new SkfpError('tool', `tc ${args.slice(0, 4).join(' ')} failed (exit ${r.exitCode})`, tail(r.stderr, 1) || 'see --verbose', {stderrTail: tail(r.stderr)})
  }
  return r.stdout.trim() ? parseChecked<T[]>(r.stdout, arrayOf(item), `tc -j ${args.slice(0, 4).join(' ')}`) : []
}

/** The filters of one hook (tc prints each filter twice: a header and one with options). */
export const filters = (runner: Runner, dev: string, dir: Direction, netns?: string) =>
  json<Filter>(runner, ['filter', 'show', 'dev', dev, dir], (f) => isObject(f) && typeof f.kind === 'string' && (f.pref === undefined || typeof f.pref === 'number'), netns)
export const qdiscs = (runner: Runner, dev: string, netns?: string) => json<Qdisc>(runner, ['qdisc', 'show', 'dev', dev], hasFields({kind: 'string'}), netns)

export const isSkfpFilter = (f: Filter) => f.pref === FILTER_PREF && f.kind === 'bpf' && f.options?.handle === FILTER_HANDLE
/** Filters that are not skfp's (a qdisc with any is not skfp's to remove). */
export const foreignFilters = (list: Filter[]) => list.filter((f) => f.options && !isSkfpFilter(f))
export const hasClsact = (list: Qdisc[]) => list.some((q) => q.kind === 'clsact')
