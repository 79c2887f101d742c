/** The soak's readings: host socket memory (sockstat), the instance's sockhash, counters and BPF memory. */
import {readFileSync} from 'node:fs'
import type {Runner} from '../exec.js'
import {observeInstance} from '../observe.js'
import {instancePins} from '../pins.js'
import {statusOf} from '../status.js'
import type {SoakSample} from './soak.js'

export async function sample(runner: Runner, instance: string, nsPids: number[], pageSize: number, phase: SoakSample['phase'], t0: number, connections: number): Promise<SoakSample> {
  const host = parseSockstat(readFileSync('/proc/net/sockstat', 'utf8'))
  const tcpInUse = nsPids.map((pid) => parseSockstat(readFileSync(`/proc/${pid}/net/sockstat`, 'utf8')).tcpInUse).reduce((a, b) => a + b, 0)
  const status = statusOf(await observeInstance(runner, instance))
  return {
    tSec: Math.round((performance.now() - t0) / 100) / 10,
    phase,
    tcpMemBytes: host.tcpMemPages * pageSize,
    socketsUsed: host.socketsUsed,
    tcpInUse,
    sockhashEntries: status.fastpath.sockets ?? 0,
    bpfMemBytes: await bpfMemory(runner, instancePins(instance).dir),
    counters: status.counters,
    connections,
  }
}

export function parseSockstat(text: string): {socketsUsed: number; tcpInUse: number; tcpMemPages: number} {
  const field = (re: RegExp) => Number(re.exec(text)?.[1] ?? Number.NaN)
  return {socketsUsed: field(/^sockets: used (\d+)/m), tcpInUse: field(/^TCP: inuse (\d+)/m), tcpMemPages: field(/^TCP:.* mem (\d+)/m)}
}

/** The page size sockstat counts in (4 KiB, 16 KiB or 64 KiB depending on the kernel). */
export function kernelPageSize(): number {
  const kb = /^KernelPageSize:\s+(\d+) kB/m.exec(readFileSync('/proc/self/smaps', 'utf8'))
  return kb ? Number(kb[1]) * 1024 : 4096
}

interface BpfObject {
  id: number
  bytes_memlock?: number
  map_ids?: number[]
  pinned?: string[]
}

/** bytes_memlock of the programs pinned under dir and of every map they use or that is pinned there. */
export async function bpfMemory(runner: Runner, dir: string): Promise<number> {
  const show = async (what: 'prog' | 'map') => JSON.parse((await runner.run({tool: 'bpftool', args: ['-j', '-f', what, 'show']})).stdout || '[]') as BpfObject[]
  const mine = (o: BpfObject) => (o.pinned ?? []).some((p) => p.startsWith(`${dir}/`))
  const progs = (await show('prog')).filter(mine)
  const mapIds = new Set(progs.flatMap((p) => p.map_ids ?? []))
  const maps = (await show('map')).filter((m) => mapIds.has(m.id) || mine(m))
  return [...progs, ...maps].reduce((sum, o) => sum + (o.bytes_memlock ?? 0), 0)
}
