/** Reads an instance's state from its pins (and only from there): the base of status, up and down. */
import {existsSync, readdirSync} from 'node:fs'
import {CFG_ADAPTIVE, decodeConfig, decodeCounters, decodeRecord, KEY_ZERO, type Counters, type DatapathConfig} from './config.js'
import type {Runner} from './exec.js'
import {INSTANCE_NAME, instancePins, PIN_ROOT, type InstancePins} from './pins.js'
import type {InstanceRecord} from './record.js'
import {withDefaults} from './settings.js'
import {missingChanges} from './changes.js'
import {observeIntercept, type InterceptObserved} from './intercept.js'
import * as bpftool from './tools/bpftool.js'
import {liveFollower, liveHolder} from './holder.js'

export interface ObservedInstance {
  instance: string
  pins: InstancePins
  /** The instance directory exists in bpffs. */
  exists: boolean
  record?: InstanceRecord
  config?: DatapathConfig
  /** The config map's value size: smaller than CONFIG_SIZE for an instance of an older skfp. */
  configSize?: number
  progs: {sockops?: bpftool.ProgInfo; skMsg?: bpftool.ProgInfo; finHold?: bpftool.ProgInfo}
  /** The fastpath object's map directory exists (its load has begun). */
  fastpathDir?: boolean
  /** sock_ops is attached to the recorded cgroup. */
  sockopsAttached: boolean
  /** The FIN hold is attached to the recorded cgroup. */
  finHoldAttached: boolean
  counters?: Counters
  /** Entries in the sockhash: accelerated sockets alive now. */
  sockets?: number
  /** Adaptive fastpath: the readers alive now, by state. */
  readers?: bpftool.ReaderStates
  /** Which recorded interception changes are still in place. */
  intercept?: InterceptObserved
  /** Another live skfp that is changing the instance now (an up or a down: holder.ts), by pid. */
  holder?: number
  /** A live `up --follow` of this instance (holder.ts), by pid. */
  follower?: number
}

export async function observeInstance(runner: Runner, instance: string, root = PIN_ROOT): Promise<ObservedInstance> {
  const fresh = instancePins(instance, root)
  // an older skfp pinned everything of its single object under maps/
  const legacySocks = `${fresh.maps}/skfp_socks`
  const pins = existsSync(legacySocks) ? {...fresh, map: {...fresh.map, socks: legacySocks}} : fresh
  const base: ObservedInstance = {instance, pins, exists: existsSync(pins.dir), progs: {}, sockopsAttached: false, finHoldAttached: false}
  if (!base.exists) return base
  // every pin read in one bpftool (each program start costs more than its read on a slow machine)
  const queries: bpftool.Query<unknown>[] = []
  let values: unknown[] = []
  const ifPinned = <T>(pin: string, query: (pin: string) => bpftool.Query<T>): (() => T | undefined) => {
    if (!existsSync(pin)) return () => undefined
    const i = queries.push(query(pin)) - 1
    return () => values[i] as T
  }
  const got = {
    record: ifPinned(pins.map.record, (pin) => bpftool.mapLookup(pin, KEY_ZERO)),
    config: ifPinned(pins.map.config, (pin) => bpftool.mapLookup(pin, KEY_ZERO)),
    sockops: ifPinned(pins.prog.sockops, bpftool.progShowPinned),
    skMsg: ifPinned(pins.prog.skMsg, bpftool.progShowPinned),
    finHold: ifPinned(pins.prog.finHold, bpftool.progShowPinned),
    counters: ifPinned(pins.map.counters, bpftool.perCpuSums),
    sockets: ifPinned(pins.map.socks, bpftool.mapEntryCount),
  }
  values = await bpftool.readAll(runner, queries)
  const recordBytes = got.record()
  const decoded = recordBytes ? decodeRecord<InstanceRecord>(recordBytes) : undefined
  const record = decoded ? {...decoded, settings: withDefaults(decoded.settings)} : undefined
  const [sockops, skMsg, finHold, configBytes, counters] = [got.sockops(), got.skMsg(), got.finHold(), got.config(), got.counters()]
  const config = configBytes ? decodeConfig(configBytes) : undefined
  // one entry per live socket of the sockhash: read only where they mean something
  const cgroup = record?.settings.cgroup
  // independent reads, at once: each is a program started (status is run often, and by every up and down)
  const [readers, attached, intercept] = await Promise.all([
    config && config.flags & CFG_ADAPTIVE && existsSync(pins.map.readers) ? bpftool.read(runner, bpftool.readerStates(pins.map.readers)) : undefined,
    (sockops || finHold) && cgroup && existsSync(cgroup) ? bpftool.cgroupShow(runner, cgroup) : [],
    record?.settings.intercept ? observeIntercept(runner, record.settings.intercept, record.changes, record.settings.netns) : undefined,
  ])
  const sockopsAttached = !!sockops && attached.some((a) => a.id === sockops.id)
  const finHoldAttached = !!finHold && attached.some((a) => a.id === finHold.id)
  return {
    ...base,
    record,
    config,
    configSize: configBytes?.byteLength,
    progs: {sockops, skMsg, finHold},
    fastpathDir: existsSync(pins.fastpathMaps),
    sockopsAttached,
    finHoldAttached,
    counters: counters ? decodeCounters(counters) : undefined,
    sockets: got.sockets(),
    readers,
    intercept,
    // read last: a run that took the lock before the reads above has marked it by now
    holder: liveHolder(pins.dir),
    follower: liveFollower(pins.dir),
  }
}

export type InstanceState = 'up' | 'half-up' | 'down'

/** up: recorded and everything recorded is in place; half-up: pins without all of it (a crash, a failed down). */
export function instanceState(o: ObservedInstance): InstanceState {
  if (!o.exists) return 'down'
  if (!o.record) return 'half-up'
  if (fastpathProblem(o)) return 'half-up'
  return missingChanges(o.record.changes, o).length > 0 ? 'half-up' : 'up'
}

/** What makes the instance half up (nothing when it is not): for status, and for up's refusal. */
export function halfUpProblems(o: ObservedInstance): string[] {
  if (instanceState(o) !== 'half-up') return []
  const problems: string[] = []
  if (!o.record) problems.push('no undo record (up stopped before writing it)')
  const fastpath = fastpathProblem(o)
  if (fastpath) problems.push(fastpath)
  for (const m of missingChanges(o.record?.changes ?? [], o)) problems.push(`${m} is missing`)
  return problems
}

/** The recorded fastpath's programs are not all pinned (a crash in up), or the fastpath's pins are
 * there without the record saying so (a crash while it was being attached to a running instance). */
export function fastpathProblem(o: ObservedInstance): string | undefined {
  const recorded = !!o.record?.changes.some((c) => c.kind === 'sockops')
  if (recorded && (!o.progs.sockops || !o.progs.skMsg)) return 'programs are not all pinned'
  if (o.record && !recorded && (o.progs.skMsg || o.fastpathDir)) return 'the fastpath is half attached (an interrupted switch)'
  return undefined
}

export function listInstances(root = PIN_ROOT): string[] {
  if (!existsSync(root)) return []
  return readdirSync(root, {withFileTypes: true})
    .filter((e) => e.isDirectory() && INSTANCE_NAME.test(e.name))
    .map((e) => e.name)
    .sort()
}
