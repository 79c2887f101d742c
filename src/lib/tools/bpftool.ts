/** bpftool: command builders (pure, used by plans) and JSON queries. */
import {endianness} from 'node:os'
import {SkfpError, tail} from '../errors.js'
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

/** skfp's cgroup hooks: sock_ops and the FIN hold (cgroup_skb ingress). */
export type CgroupHook = 'sock_ops' | 'ingress'

/** `multi`: skfp's programs run beside programs others attached, never replace them. */
export const cgroupAttach = (cgroup: string, hook: CgroupHook, progPin: string): Cmd =>
  bpftool('cgroup', 'attach', cgroup, hook, 'pinned', progPin, 'multi')

export const cgroupDetach = (cgroup: string, hook: CgroupHook, progPin: string): Cmd =>
  bpftool('cgroup', 'detach', cgroup, hook, 'pinned', progPin)

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

/** A read: bpftool's arguments (without -j) and how its JSON output becomes a value. Run alone with
 * `read`, or several in one bpftool with `readAll`. */
export interface Query<T> {
  args: string[]
  parse(json: unknown): T
}

/** A failure is an error (the callers check that a pin exists first), never "nothing"; `empty`: what
 * no output at all means. */
function query<T>(args: string[], check: Check, empty?: T): Query<T> {
  const what = `bpftool -j ${args.slice(0, 3).join(' ')}`
  return {
    args,
    parse(json) {
      if (json === undefined && empty !== undefined) return empty
      if (!check(json)) throw new SkfpError('tool', `${what} printed JSON of an unexpected shape`, 'check the tool version: skfp reads its -j output', {stderrTail: JSON.stringify(json)?.slice(0, 400)})
      return json as T
    },
  }
}

/** The same read, its value passed through f. */
const mapped = <T, U>(q: Query<T>, f: (value: T) => U): Query<U> => ({args: q.args, parse: (json) => f(q.parse(json))})

export async function read<T>(runner: Runner, q: Query<T>): Promise<T> {
  const r = await runner.run({tool: 'bpftool', args: ['-j', ...q.args]})
  return q.parse(r.stdout.trim() ? parseChecked<unknown>(r.stdout, () => true, `bpftool -j ${q.args.slice(0, 3).join(' ')}`) : undefined)
}

/** What `bpftool batch` splits on, or drops from '#' on: such queries run one by one. */
const BATCH_SAFE = /^[\w/.:@+,=-]+$/
const isBatchResult = arrayOf((v) => isObject(v) && Array.isArray(v.command))

/** Several reads in one bpftool (`batch file -`): under emulation or on a slow router each program
 * start costs more than the read itself. Results in the order of the queries. */
export async function readAll(runner: Runner, qs: Query<unknown>[]): Promise<unknown[]> {
  if (qs.length < 2 || !qs.every((q) => q.args.every((a) => BATCH_SAFE.test(a)))) return Promise.all(qs.map((q) => read(runner, q)))
  const r = await runner.run({tool: 'bpftool', args: ['-j', 'batch', 'file', '-']}, {input: qs.map((q) => q.args.join(' ')).join('\n') + '\n', allowFailure: true})
  const results = parseChecked<{command: string[]; output?: unknown}[]>(r.stdout || '[]', isBatchResult, 'bpftool -j batch')
  const failed = results.find((x) => isObject(x.output) && typeof x.output.error === 'string')
  if (failed || r.exitCode !== 0 || results.length !== qs.length) {
    const why = failed ? String((failed.output as {error: string}).error) : tail(r.stderr, 1) || `exit ${r.exitCode}`
    throw new SkfpError('tool', `bpftool ${(failed?.command ?? ['batch']).slice(0, 3).join(' ')} failed`, why, {stderrTail: tail(r.stderr)})
  }
  return results.map((x, i) => qs[i].parse(x.output))
}

const isProg = hasFields({id: 'number', name: 'string', type: 'string'})
const isAttachment = hasFields({id: 'number'})

export const progShowPinned = (pin: string) => query<ProgInfo>(['prog', 'show', 'pinned', pin], isProg)

/** What is attached to a cgroup (bpftool prints nothing for a cgroup with nothing attached). Not in a
 * batch: bpftool 7.1's batch mode fails it (bad file descriptor). */
export const cgroupShow = (runner: Runner, cgroup: string) => read(runner, query<CgroupAttachment[]>(['cgroup', 'show', cgroup], arrayOf(isAttachment), []))

/** The raw value bytes stored under key (callers look up keys of ARRAY maps, which always exist). */
export function mapLookup(mapPin: string, key: Uint8Array): Query<Uint8Array> {
  const q = query<{value: string[]}>(['map', 'lookup', 'pinned', mapPin, 'key', 'hex', ...hexArgs(key)], (v) => isObject(v) && arrayOf((x) => typeof x === 'string')(v.value))
  return mapped(q, (entry) => parseHexBytes(entry.value))
}

export interface PerCpuEntry {
  key: number
  values: {cpu: number; value: number | bigint}[]
}

/** Sums of a per-CPU array of __u64, indexed by key. bpftool prints each entry BTF-formatted, or,
 * where the kernel took the object without its BTF (5.10 refuses an empty DATASEC), as raw
 * little-endian hex bytes: both are read. */
export function perCpuSums(mapPin: string): Query<bigint[]> {
  const isFormatted = (e: Record<string, unknown>) =>
    isObject(e.formatted) && typeof e.formatted.key === 'number' && arrayOf(hasFields({cpu: 'number', value: 'number'}))(e.formatted.values)
  const isHex = arrayOf((x) => typeof x === 'string')
  const isRaw = (e: Record<string, unknown>) => isHex(e.key) && arrayOf((v) => isObject(v) && typeof v.cpu === 'number' && isHex(v.value))(e.values)
  const q = query<Record<string, unknown>[]>(['map', 'dump', 'pinned', mapPin], arrayOf((e) => isObject(e) && (isFormatted(e) || isRaw(e))), [])
  return mapped(q, (dump) => sumPerCpu(dump.map(perCpuEntry)))
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
export function mapEntryCount(mapPin: string): Query<number> {
  return mapped(query<unknown[]>(['map', 'dump', 'pinned', mapPin], Array.isArray, []), (entries) => entries.length)
}

/** Live readers of the adaptive fastpath by state (struct skfp_reader: a host-order __u64 at offset 24;
 * entries go when their socket closes). A reader demoted after its promotion counts as barred. */
export interface ReaderStates {
  watched: number
  promoted: number
  barred: number
  released: number
}
const READER_STATE_OFFSET = 24
const READER_STATES = ['watched', 'promoted', 'barred', 'released', 'barred'] as const

export function readerStates(mapPin: string): Query<ReaderStates> {
  const q = query<{value: string[]}[]>(['map', 'dump', 'pinned', mapPin], arrayOf((e) => isObject(e) && arrayOf((x) => typeof x === 'string')(e.value)), [])
  return mapped(q, (entries) => {
    const n: ReaderStates = {watched: 0, promoted: 0, barred: 0, released: 0}
    for (const e of entries) {
      const bytes = parseHexBytes(e.value.slice(READER_STATE_OFFSET, READER_STATE_OFFSET + 8))
      if (bytes.length < 8) continue
      const state = READER_STATES[Number(new DataView(bytes.buffer).getBigUint64(0, endianness() === 'LE'))]
      if (state) n[state]++
    }
    return n
  })
}

export function parseHexBytes(values: string[]): Uint8Array {
  return Uint8Array.from(values.map((v) => Number.parseInt(v, 16)))
}
