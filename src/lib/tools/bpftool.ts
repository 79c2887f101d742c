/** bpftool: command builders (pure, used by plans) and JSON queries. */
import type {Cmd, Runner} from '../exec.js'

const bpftool = (...args: string[]): Cmd => ({tool: 'bpftool', args})
const hexArgs = (bytes: Uint8Array): string[] => [...bytes].map((b) => b.toString(16).padStart(2, '0'))

/** reuse: maps of the object (by name) that are the pinned maps given instead of new ones. */
export const loadAll = (object: string, progDir: string, mapDir: string, reuse: Record<string, string> = {}): Cmd =>
  bpftool('prog', 'loadall', object, progDir, ...Object.entries(reuse).flatMap(([name, pin]) => ['map', 'name', name, 'pinned', pin]), 'pinmaps', mapDir)

export const mapUpdate = (mapPin: string, key: Uint8Array, value: Uint8Array): Cmd =>
  bpftool('map', 'update', 'pinned', mapPin, 'key', 'hex', ...hexArgs(key), 'value', 'hex', ...hexArgs(value))

export const attachMsgVerdict = (progPin: string, mapPin: string): Cmd =>
  bpftool('prog', 'attach', 'pinned', progPin, 'msg_verdict', 'pinned', mapPin)

export const detachMsgVerdict = (progPin: string, mapPin: string): Cmd =>
  bpftool('prog', 'detach', 'pinned', progPin, 'msg_verdict', 'pinned', mapPin)

/** `multi`: skfp's sock_ops runs beside programs others attached, never replaces them. */
export const cgroupAttach = (cgroup: string, progPin: string): Cmd =>
  bpftool('cgroup', 'attach', cgroup, 'sock_ops', 'pinned', progPin, 'multi')

export const cgroupDetach = (cgroup: string, progPin: string): Cmd =>
  bpftool('cgroup', 'detach', cgroup, 'sock_ops', 'pinned', progPin)

export interface ProgInfo {
  id: number
  name: string
  type: string
}

export interface CgroupAttachment {
  id: number
  attach_type: string
  name: string
}

async function json<T>(runner: Runner, args: string[]): Promise<T | undefined> {
  const r = await runner.run({tool: 'bpftool', args: ['-j', ...args]}, {allowFailure: true})
  if (r.exitCode !== 0 || !r.stdout.trim()) return undefined
  return JSON.parse(r.stdout) as T
}

export const progShowPinned = (runner: Runner, pin: string) => json<ProgInfo>(runner, ['prog', 'show', 'pinned', pin])

export async function cgroupShow(runner: Runner, cgroup: string): Promise<CgroupAttachment[]> {
  return (await json<CgroupAttachment[]>(runner, ['cgroup', 'show', cgroup])) ?? []
}

/** The raw value bytes stored under key, or undefined when the map or key is absent. */
export async function mapLookup(runner: Runner, mapPin: string, key: Uint8Array): Promise<Uint8Array | undefined> {
  const entry = await json<{value: string[]}>(runner, ['map', 'lookup', 'pinned', mapPin, 'key', 'hex', ...hexArgs(key)])
  return entry ? parseHexBytes(entry.value) : undefined
}

export interface PerCpuEntry {
  key: number
  values: {cpu: number; value: number}[]
}

/** Sums of a per-CPU array of __u64, indexed by key (from the BTF-formatted dump). */
export async function perCpuSums(runner: Runner, mapPin: string): Promise<bigint[]> {
  const dump = (await json<{formatted: PerCpuEntry}[]>(runner, ['map', 'dump', 'pinned', mapPin])) ?? []
  return sumPerCpu(dump.map((e) => e.formatted))
}

export function sumPerCpu(entries: PerCpuEntry[]): bigint[] {
  const sums: bigint[] = []
  for (const e of entries) sums[e.key] = e.values.reduce((acc, v) => acc + BigInt(v.value), 0n)
  return sums
}

/** Number of entries of a map (for the sockhash: live accelerated sockets). */
export async function mapEntryCount(runner: Runner, mapPin: string): Promise<number | undefined> {
  const dump = await json<unknown[]>(runner, ['map', 'dump', 'pinned', mapPin])
  return dump?.length
}

export function parseHexBytes(values: string[]): Uint8Array {
  return Uint8Array.from(values.map((v) => Number.parseInt(v, 16)))
}
