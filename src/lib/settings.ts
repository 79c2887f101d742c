/** `skfp up` flags → validated settings. Everything is checked before anything changes. */
import {usageError} from './errors.js'
import {validateInstance} from './pins.js'

export const FASTPATH_MODES = ['on', 'off', 'auto'] as const
export type FastpathMode = (typeof FASTPATH_MODES)[number]

export const DEFAULT_FASTPATH_QUEUE = 4 * 1024 * 1024

export interface UpSettings {
  instance: string
  /** Absolute cgroup v2 directory; the cgroup v2 root when not given. */
  cgroup: string
  netns?: string
  proxyMark: number
  fastpath: FastpathMode
  fastpathQueue: number
}

export function parseInteger(name: string, text: string | number, min: number, max: number): number {
  const s = String(text).trim()
  const n = /^(0x[0-9a-f]+|\d+)$/i.test(s) ? Number(s) : Number.NaN
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw usageError(`--${name} ${JSON.stringify(String(text))} is out of range`, `give a whole number from ${min} to ${max}${max > 65535 ? ' (decimal or 0x hex)' : ''}`)
  return n
}

export const parseMark = (name: string, text: string | number) => parseInteger(name, text, 0, 0xffffffff)

export interface RawUpFlags {
  instance: string
  cgroup: string
  netns?: string
  'proxy-mark': string
  fastpath: string
  'fastpath-queue': string
}

/** Pure validation; cgroup and netns existence are checked by the caller (they touch the host). */
export function parseUpFlags(flags: RawUpFlags): UpSettings {
  validateInstance(flags.instance)
  if (!FASTPATH_MODES.includes(flags.fastpath as FastpathMode))
    throw usageError(`--fastpath ${JSON.stringify(flags.fastpath)} is not a mode`, 'use on, off or auto')
  return {
    instance: flags.instance,
    cgroup: flags.cgroup,
    netns: flags.netns,
    proxyMark: parseMark('proxy-mark', flags['proxy-mark']),
    fastpath: flags.fastpath as FastpathMode,
    fastpathQueue: parseInteger('fastpath-queue', flags['fastpath-queue'], 64 * 1024, 1024 * 1024 * 1024),
  }
}

/** Human-readable differences between two settings (for `up` on a running instance). */
export function diffSettings(running: UpSettings, wanted: UpSettings): string[] {
  const keys = new Set([...Object.keys(running), ...Object.keys(wanted)]) as Set<keyof UpSettings>
  const out: string[] = []
  for (const k of keys) {
    const a = JSON.stringify(running[k])
    const b = JSON.stringify(wanted[k])
    if (a !== b) out.push(`${k}: ${a ?? 'unset'} → ${b ?? 'unset'}`)
  }
  return out
}
