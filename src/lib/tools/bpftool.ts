/** bpftool: command builders (pure, used by plans) and JSON queries. */
import type {Cmd, Runner} from '../exec.js'
import {arrayOf, hasFields, isObject, parseChecked, type Check} from './output.js'

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

/** An observation: a failure is an error (the callers check that a pin exists first), never "nothing". */
async function json<T>(runner: Runner, args: string[], check: Check, empty?: T): Promise<T> {
  const r = await runner.run({tool: 'bpftool', args: ['-j', ...args]})
  if (!r.stdout.trim() && empty !== undefined) return empty
  return parseChecked<T>(r.stdout, check, `bpftool -j ${args.slice(0, 3).join(' ')}`)
}

const isProg = hasFields({id: 'number', name: 'string', type: 'string'})
const isAttachment = hasFields({id: 'number'})

export const progShowPinned = (runner: Runner, pin: string) => json<ProgInfo>(runner, ['prog', 'show', 'pinned', pin], isProg)

/** What is attached to a cgroup (bpftool prints nothing for a cgroup with nothing attached). */
export const cgroupShow = (runner: Runner, cgroup: string) => json<CgroupAttachment[]>(runner, ['cgroup', 'show', cgroup], arrayOf(isAttachment), [])

/** The raw value bytes stored under key (callers look up keys of ARRAY maps, which always exist). */
export async function mapLookup(runner: Runner, mapPin: string, key: Uint8Array): Promise<Uint8Array> {
  const entry = await json<{value: string[]}>(runner, ['map', 'lookup', 'pinned', mapPin, 'key', 'hex', ...hexArgs(key)], (v) => isObject(v) && arrayOf((x) => typeof x === 'string')(v.value))
  return parseHexBytes(entry.value)
}

export interface PerCpuEntry {
  key: number
  values: {cpu: number; value: number | bigint}[]
}

/** Sums of a per-CPU array of __u64, indexed by key. bpftool prints each entry BTF-formatted, or,
 * where the kernel took the object without its BTF (5.10 refuses an empty DATASEC), as raw
 * little-endian hex bytes: both are read. */
export async function perCpuSums(runner: Runner, mapPin: string): Promise<bigint[]> {
  const isFormatted = (e: Record<string, unknown>) =>
    isObject(e.formatted) && typeof e.formatted.key === 'number' && arrayOf(hasFields({cpu: 'number', value: 'number'}))(e.formatted.values)
  const isHex = arrayOf((x) => typeof x === 'string')
  const isRaw = (e: Record<string, unknown>) => isHex(e.key) && arrayOf((v) => isObject(v) && typeof v.cpu === 'number' && isHex(v.value))(e.values)
  const dump = await json<Record<string, unknown>[]>(runner, ['map', 'dump', 'pinned', mapPin], arrayOf((e) => isObject(e) && (isFormatted(e) || isRaw(e))), [])
  return sumPerCpu(dump.map(perCpuEntry))
}

const littleEndian = (hex: string[]): bigint => parseHexBytes(hex).reduceRight((acc, b) => (acc << 8n) | BigInt(b), 0n)

function perCpuEntry(e: Record<string, unknown>): PerCpuEntry {
  if (e.formatted) return e.formatted as PerCpuEntry
  const values = e.values as {cpu: number; value: string[]}[]
  return {key: Number(littleEndian(e.key as string[])), values: values.map((v) => ({cpu: v.cpu, value: littleEndian(v.value)}))}
}

export function sumPerCpu(entries: PerCpuEntry[]): bigint[] {
  const sums: bigint[] = []
  for (const e of entries) sums[e.key] = e.values.reduce((acc, v) => acc + BigInt(v.value), 0n)
  return sums
}

/** Number of entries of a map (for the sockhash: live accelerated sockets). */
export async function mapEntryCount(runner: Runner, mapPin: string): Promise<number> {
  return (await json<unknown[]>(runner, ['map', 'dump', 'pinned', mapPin], Array.isArray, [])).length
}

export function parseHexBytes(values: string[]): Uint8Array {
  return Uint8Array.from(values.map((v) => Number.parseInt(v, 16)))
}
