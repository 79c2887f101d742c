/**
 * The kernel self-test of the fastpath (`skfp doctor`, `skfp up --fastpath auto`): in a throwaway
 * netns + child cgroup, the datapath is loaded exactly as `up` loads it, and the probes (probes/
 * skfp-probe.c) run each hazard once over plain TCP and once through the fastpath. It tests the
 * adaptive fastpath where the kernel takes it (the mode auto turns on), else every-reader mode
 * (--fastpath all). The verdict is pinned in bpffs, which does not survive a reboot, and carries the
 * boot id: it is valid until the kernel changes.
 */
import {existsSync} from 'node:fs'
import {release} from 'node:os'
import {programPath} from './root.js'
import {decodeRecord, encodeRecord, KEY_ZERO, RECORD_SIZE} from './config.js'
import type {Runner} from './exec.js'
import {bootId} from './host.js'
import {downInstances} from './teardown.js'
import type {UpOptions, UpResult} from './lifecycle.js'
import type {UpSettings} from './settings.js'
import {VERDICT_PIN} from './pins.js'
import {removeLeftovers, Sandbox} from './sandbox.js'
import {throwIfInterrupted} from './interrupt.js'
import {sandboxSettings} from './settings.js'
import * as bpftool from './tools/bpftool.js'

export const DOCTOR_NAME = 'skfp-doctor'

/** Each probe and the hazard its failure means for applications. */
export const PROBES = {
  splice: 'splice() readers get no data (Go io.Copy between TCP sockets: mihomo, sing-box relays)',
  waitall: 'recv(MSG_WAITALL) returns short',
  'blocking-recv': 'a blocking recv() can fail with EAGAIN once a connection mixes fastpath and TCP data',
  'late-blocking': 'a reader that turns its socket blocking once its connection is on the fastpath gets EAGAIN or loses bytes',
  'slow-reader': "a slow reader's queue is not bounded (host TCP memory pressure)",
  fionread: 'FIONREAD reports wrong queued bytes',
  halfclose: 'half-close or reset is not seen by the peer',
  'port-reuse': "a new connection from the port of a reset one loses its data to the old socket while that one's owner has not closed it",
  dualstack: 'a dual-stack :: listener and an IPv4 client lose data',
  integrity: 'data is corrupted in bulk transfers',
  'two-namespaces': 'identical tuples in two namespaces are mixed up',
} as const
export type ProbeName = keyof typeof PROBES

/** Adaptive mode: probes whose sockets are O_NONBLOCK and polled, like an event loop's, so their
 * readers are promoted and their bytes go by the fastpath (blocking sockets never join it). */
const NONBLOCK_PROBES: readonly ProbeName[] = ['splice', 'slow-reader', 'dualstack', 'integrity', 'two-namespaces']

/** What the adaptive fastpath cannot make safe, run and reported but never a reason to keep it off:
 * no kernel path moves redirected bytes to where splice() reads. */
export const LIMITS = {
  'late-splice': 'a reader that moves from recv() to splice() once promoted finds the redirected bytes only with a later recv() (a proxy that splices after reading a few requests)',
} as const
export type LimitName = keyof typeof LIMITS

export type SelfTestMode = 'adaptive' | 'all'

export interface ProbeOutcome {
  probe: ProbeName | LimitName
  /** Passed through the fastpath. */
  ok: boolean
  /** Passed over plain TCP (a probe that fails there too says nothing about the fastpath). */
  plainOk: boolean
  detail: string
}

/** The verdict: the `skfp doctor --json` contract. */
export interface Verdict {
  bootId: string
  kernel: string
  testedAt: string
  /** adaptive: what --fastpath auto and on load; all: this kernel takes no adaptive fastpath, the
   * probes ran with every reader promoted (--fastpath all). Absent in an older skfp's verdict. */
  mode?: SelfTestMode
  /** Every probe passed through the fastpath: --fastpath auto turns it on (adaptive mode only). */
  fastpathSafe: boolean
  hazards: string[]
  probes: ProbeOutcome[]
  /** Adaptive mode: the known limits (LIMITS), as this kernel shows them. */
  limits?: ProbeOutcome[]
}

interface ProbeJson {
  probe?: string
  ok?: boolean
  detail?: string
  error?: string
}

async function probe(sb: Sandbox, netns: string, name: string, args: string[], outsideCgroup: boolean): Promise<ProbeJson> {
  const r = await sb.run(netns, [programPath('skfp-probe'), name, ...args], {outsideCgroup, allowFailure: true, timeoutMs: 120_000})
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as ProbeJson
  } catch {
    return {ok: false, detail: `no result (exit ${r.exitCode}): ${r.stderr.trim().split('\n').pop() ?? ''}`}
  }
}

async function runProbe(sb: Sandbox, nsA: string, nsB: string, name: ProbeName | LimitName, outsideCgroup: boolean, mode: SelfTestMode): Promise<ProbeJson> {
  const sized = ['blocking-recv', 'slow-reader'].includes(name) ? ['--bytes', '128M'] : []
  const nonblock = mode === 'adaptive' && (NONBLOCK_PROBES as readonly string[]).includes(name) ? ['--nonblock'] : []
  if (name !== 'two-namespaces') return probe(sb, nsA, name, [...sized, ...nonblock], outsideCgroup)
  // the same fixed port on both sides of two namespaces at once
  const args = ['--bytes', '16M', '--port', '7301', ...nonblock]
  const [a, b] = await Promise.all([probe(sb, nsA, 'integrity', args, outsideCgroup), probe(sb, nsB, 'integrity', args, outsideCgroup)])
  return {ok: !!a.ok && !!b.ok, detail: `${a.detail ?? a.error}; ${b.detail ?? b.error}`}
}

/** up is passed in: the self-test loads the datapath exactly as `up` does (and lifecycle runs the self-test). */
export type UpFn = (settings: UpSettings, opts: UpOptions, runner: Runner) => Promise<UpResult>

export async function runSelfTest(runner: Runner, up: UpFn, log: (line: string) => void = () => {}, mode: SelfTestMode = 'adaptive'): Promise<Verdict> {
  await removeLeftovers(runner, DOCTOR_NAME)
  const sb = await Sandbox.create(runner, DOCTOR_NAME)
  try {
    const nsA = await sb.addNetns('a')
    const nsB = await sb.addNetns('b')
    await up(sandboxSettings(DOCTOR_NAME, sb.cgroup, nsA, {fastpath: mode === 'adaptive' ? 'on' : 'all'}), {renderer: 'silent', log: () => {}}, runner)
    const run = async (name: ProbeName | LimitName, kind: string): Promise<ProbeOutcome> => {
      throwIfInterrupted()
      const plain = await runProbe(sb, nsA, nsB, name, true, mode)
      const fast = await runProbe(sb, nsA, nsB, name, false, mode)
      // a probe killed by Ctrl-C has no result: it is no failure of the kernel's
      throwIfInterrupted()
      const outcome = {probe: name, ok: !!fast.ok, plainOk: !!plain.ok, detail: (fast.detail ?? fast.error ?? '').slice(0, 200)} // fits the pinned record
      log(`${outcome.ok ? 'pass' : kind}  ${name}${outcome.ok ? '' : `: ${outcome.detail}`}`)
      return outcome
    }
    const probes: ProbeOutcome[] = []
    for (const name of Object.keys(PROBES) as ProbeName[]) probes.push(await run(name, 'FAIL'))
    const limits: ProbeOutcome[] = []
    if (mode === 'adaptive') for (const name of Object.keys(LIMITS) as LimitName[]) limits.push(await run(name, 'limit'))
    await downInstances({instance: DOCTOR_NAME}, {renderer: 'silent', log: () => {}}, runner)
    const hazards = probes.filter((p) => !p.ok).map((p) => PROBES[p.probe as ProbeName])
    return {bootId: bootId(), kernel: release(), testedAt: new Date().toISOString(), mode, fastpathSafe: hazards.length === 0, hazards, probes, limits}
  } finally {
    await sb.destroy()
  }
}

/** The verdict on a kernel that loads no fastpath variant: nothing to probe. */
export function unloadableVerdict(hazard: string): Verdict {
  return {bootId: bootId(), kernel: release(), testedAt: new Date().toISOString(), fastpathSafe: false, hazards: [hazard], probes: []}
}

/** The pinned verdict, when it was made on this boot. */
export async function readVerdict(runner: Runner): Promise<Verdict | undefined> {
  const v = await readRecordPin<Verdict>(runner, VERDICT_PIN)
  return v && v.bootId === bootId() ? v : undefined
}

export const storeVerdict = (runner: Runner, v: Verdict): Promise<void> => writeRecordPin(runner, VERDICT_PIN, 'skfp_verdict', v)

/** A JSON record pinned as a one-entry array map (the verdict, the datapath support). */
export async function readRecordPin<T>(runner: Runner, pin: string): Promise<T | undefined> {
  if (!existsSync(pin)) return undefined
  const bytes = await bpftool.read(runner, bpftool.mapLookup(pin, KEY_ZERO))
  return bytes ? decodeRecord<T>(bytes) : undefined
}

export async function writeRecordPin(runner: Runner, pin: string, name: string, value: unknown): Promise<void> {
  const bytes = encodeRecord(value)
  if (!existsSync(pin)) await runner.run({tool: 'bpftool', args: ['map', 'create', pin, 'type', 'array', 'key', '4', 'value', String(RECORD_SIZE), 'entries', '1', 'name', name]})
  await runner.run({tool: 'bpftool', args: ['map', 'update', 'pinned', pin, 'key', 'hex', '00', '00', '00', '00', 'value', 'hex', ...hex(bytes)]})
}

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, '0'))

/** The one line `up --fastpath auto` prints when the verdict keeps the fastpath off. */
export function autoOffLine(v: Verdict): string {
  return `fastpath off: the kernel self-test found that on ${v.kernel} ${v.hazards.join('; ')}. For applications known not to use splice() or MSG_WAITALL, force it with --fastpath on and scope it to them with --cgroup`
}
