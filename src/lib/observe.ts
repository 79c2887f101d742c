/** Reads an instance's state from its pins (and only from there): the base of status, up and down. */
import {existsSync, readdirSync} from 'node:fs'
import {decodeConfig, decodeCounters, decodeRecord, KEY_ZERO, type Counters, type DatapathConfig} from './config.js'
import type {Runner} from './exec.js'
import {INSTANCE_NAME, instancePins, PIN_ROOT, type InstancePins} from './pins.js'
import type {InstanceRecord} from './record.js'
import {withDefaults} from './settings.js'
import {missingChanges} from './changes.js'
import {observeIntercept, type InterceptObserved} from './intercept.js'
import * as bpftool from './tools/bpftool.js'

export interface ObservedInstance {
  instance: string
  pins: InstancePins
  /** The instance directory exists in bpffs. */
  exists: boolean
  record?: InstanceRecord
  config?: DatapathConfig
  /** The config map's value size: smaller than CONFIG_SIZE for an instance of an older skfp. */
  configSize?: number
  progs: {sockops?: bpftool.ProgInfo; skMsg?: bpftool.ProgInfo}
  /** sock_ops is attached to the recorded cgroup. */
  sockopsAttached: boolean
  counters?: Counters
  /** Entries in the sockhash: accelerated sockets alive now. */
  sockets?: number
  /** Which recorded interception changes are still in place. */
  intercept?: InterceptObserved
}

export async function observeInstance(runner: Runner, instance: string, root = PIN_ROOT): Promise<ObservedInstance> {
  const fresh = instancePins(instance, root)
  // an older skfp pinned everything of its single object under maps/
  const legacySocks = `${fresh.maps}/skfp_socks`
  const pins = existsSync(legacySocks) ? {...fresh, map: {...fresh.map, socks: legacySocks}} : fresh
  const base: ObservedInstance = {instance, pins, exists: existsSync(pins.dir), progs: {}, sockopsAttached: false}
  if (!base.exists) return base
  const recordBytes = existsSync(pins.map.record) ? await bpftool.mapLookup(runner, pins.map.record, KEY_ZERO) : undefined
  const decoded = recordBytes ? decodeRecord<InstanceRecord>(recordBytes) : undefined
  const record = decoded ? {...decoded, settings: withDefaults(decoded.settings)} : undefined
  const configBytes = existsSync(pins.map.config) ? await bpftool.mapLookup(runner, pins.map.config, KEY_ZERO) : undefined
  const sockops = existsSync(pins.prog.sockops) ? await bpftool.progShowPinned(runner, pins.prog.sockops) : undefined
  const skMsg = existsSync(pins.prog.skMsg) ? await bpftool.progShowPinned(runner, pins.prog.skMsg) : undefined
  const cgroup = record?.settings.cgroup
  const sockopsAttached = !!(sockops && cgroup && existsSync(cgroup) && (await bpftool.cgroupShow(runner, cgroup)).some((a) => a.id === sockops.id))
  return {
    ...base,
    record,
    config: configBytes ? decodeConfig(configBytes) : undefined,
    configSize: configBytes?.byteLength,
    progs: {sockops, skMsg},
    sockopsAttached,
    counters: existsSync(pins.map.counters) ? decodeCounters(await bpftool.perCpuSums(runner, pins.map.counters)) : undefined,
    sockets: existsSync(pins.map.socks) ? await bpftool.mapEntryCount(runner, pins.map.socks) : undefined,
    intercept: record?.settings.intercept ? await observeIntercept(runner, record.settings.intercept, record.changes, record.settings.netns) : undefined,
  }
}

export type InstanceState = 'up' | 'half-up' | 'down'

/** up: recorded and everything recorded is in place; half-up: pins without all of it (a crash, a failed down). */
export function instanceState(o: ObservedInstance): InstanceState {
  if (!o.exists) return 'down'
  if (!o.record) return 'half-up'
  if (o.record.changes.some((c) => c.kind === 'sockops') && (!o.progs.sockops || !o.progs.skMsg)) return 'half-up'
  return missingChanges(o.record.changes, o).length > 0 ? 'half-up' : 'up'
}

export function listInstances(root = PIN_ROOT): string[] {
  if (!existsSync(root)) return []
  return readdirSync(root, {withFileTypes: true})
    .filter((e) => e.isDirectory() && INSTANCE_NAME.test(e.name))
    .map((e) => e.name)
    .sort()
}
