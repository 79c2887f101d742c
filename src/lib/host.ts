/** Facts about the host that planners need: mounts, cgroups, namespaces, privilege. */
import {existsSync, readFileSync, statSync, statfsSync} from 'node:fs'
import {resolve} from 'node:path'
import {BPFFS} from './pins.js'
import {environmentError, usageError} from './errors.js'

const CGROUP2_SUPER_MAGIC = 0x63677270

export interface Mount {
  source: string
  target: string
  type: string
}

export function parseMounts(text: string): Mount[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [source, target, type] = line.split(' ')
      return {source, target: target.replace(/\\040/g, ' '), type}
    })
}

export const readMounts = (): Mount[] => parseMounts(readFileSync('/proc/mounts', 'utf8'))

export function bpffsMounted(mounts: Mount[] = readMounts()): boolean {
  return mounts.some((m) => m.type === 'bpf' && m.target === BPFFS)
}

/** The cgroup v2 mount point, wherever the distribution put it (hybrid layouts use .../unified). */
export function cgroup2Mount(mounts: Mount[] = readMounts()): string | undefined {
  return mounts.find((m) => m.type === 'cgroup2')?.target
}

/** Where skfp mounts cgroup v2 when the host has none (as the seed's README does). */
export const CGROUP2_FALLBACK = '/sys/fs/cgroup/unified'

export function requireRoot(): void {
  if (process.getuid?.() !== 0) throw environmentError('skfp needs root', 'run it with sudo, or as root')
}

/** An absolute cgroup v2 directory, or a one-line error. */
export function validateCgroup(path: string, flag = '--cgroup'): string {
  const abs = resolve(path)
  let isDir = false
  try {
    isDir = statSync(abs).isDirectory()
  } catch {
    throw usageError(`cgroup ${abs} does not exist`, `create it (mkdir under the cgroup v2 mount) or pass an existing one with ${flag}`)
  }
  if (!isDir) throw usageError(`cgroup ${abs} is not a directory`, `pass a cgroup v2 directory with ${flag}`)
  if (statfsSync(abs).type !== CGROUP2_SUPER_MAGIC)
    throw usageError(`${abs} is not a cgroup v2 directory`, `pass a directory under the cgroup2 mount (see /proc/mounts) with ${flag}`)
  return abs
}


export function validateNetns(name: string): string {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name) || name.startsWith('-') || name === '.' || name === '..')
    throw usageError(`bad netns name ${JSON.stringify(name)}`, 'use the name shown by `ip netns list`')
  if (!existsSync(`/run/netns/${name}`)) throw usageError(`netns ${name} does not exist`, 'create it with `ip netns add NAME`, or check `ip netns list`')
  return name
}

export function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    return 'unknown'
  }
}
