/**
 * `skfp up`: (settings, observed host) → a plan of steps. planUp is pure: the unit tests check
 * its exact argv; upInstance gathers the facts, decides no-op / conflict / plan, and runs it.
 */
import {existsSync} from 'node:fs'
import {CFG_ADAPTIVE, CFG_BYPASS_PRIVATE, CFG_CGROUP_ONLY, CFG_CGROUP_SCOPE, CFG_FASTPATH, CFG_INTERCEPT, CFG_UDP, encodeConfig, encodeRecord, KEY_ZERO, type DatapathConfig} from './config.js'
import {bypassWrites, interceptChanges, type InterceptFacts} from './intercept.js'
import {changeActions, parseMarkText, present, stepId} from './changes.js'
import {conflictError, SkfpError} from './errors.js'
import {attachReaders, sharedMaps, type VariantName} from './datapath.js'
import {BPFFS, PIN_ROOT, type InstancePins} from './pins.js'
import type {Action, Step} from './plan.js'
import type {Change, InstanceRecord} from './record.js'
import type {UpSettings} from './settings.js'
import {diffSettings} from './settings.js'
import * as bpftool from './tools/bpftool.js'
import {markPath} from './holder.js'
import type {ObservedInstance} from './observe.js'
import {fastpathProblem, halfUpProblems, instanceState, type InstanceState} from './observe.js'

export interface UpFacts {
  pins: InstancePins
  /** The objects to load: interception always, the fastpath variant the kernel takes (if any). */
  objects: {intercept: string; fastpath?: string; readers?: string}
  /** Which fastpath variant objects.fastpath is; null: this kernel loads none. */
  fastpathVariant: VariantName | null
  bootId: string
  bpffsMounted: boolean
  /** Where to mount cgroup v2 when the host has no cgroup2 mount. */
  mountCgroup2?: string
  pinRootExists: boolean
  /** What `--fastpath auto` resolved to. */
  fastpath: boolean
  /** Observed in the target netns, when interception is on. */
  intercept?: InterceptFacts
  /** This run's mark in the instance directory while it works (holder.ts). */
  hold: string
}

/** adaptive: the readers object is attached (a reader gets redirected bytes once it has shown how it reads). */
export function datapathConfig(settings: UpSettings, fastpath: boolean, adaptive: boolean, loIfindex = 0): DatapathConfig {
  const i = settings.intercept
  return {
    flags: (fastpath ? CFG_FASTPATH : 0) | (adaptive ? CFG_ADAPTIVE : 0) | (i ? CFG_INTERCEPT : 0) | (i?.bypassPrivate ? CFG_BYPASS_PRIVATE : 0) | (i?.udp ? CFG_UDP : 0) |
      (i && i.interceptCgroups.length + i.bypassCgroups.length ? CFG_CGROUP_SCOPE : 0) | (i?.interceptCgroups.length ? CFG_CGROUP_ONLY : 0),
    proxyMark: settings.proxyMark,
    fwmark: i?.fwmark ?? 0,
    loIfindex: i ? loIfindex : 0,
    proxyAddr4: i?.proxyAddr4 ?? undefined,
    proxyAddr6: i?.proxyAddr6 ?? undefined,
    proxyPort: i?.proxyPort ?? 0,
    proxyDown: i?.proxyDown ?? 'fail-fast',
    fastpathQueue: BigInt(settings.fastpathQueue),
    vpnMarks: (i?.vpnMarks ?? []).map(parseMarkText),
  }
}

/** The fastpath's attachments, in order: msg_verdict before sock_ops (a socket gets its verdict
 * program when it enters the sockhash), the FIN hold too (it guards every socket that joins). */
const fastpathChanges = (cgroup: string): Change[] => [{kind: 'msg-verdict'}, {kind: 'fin-hold', cgroup}, {kind: 'sockops', cgroup}]

export function plannedChanges(settings: UpSettings, fastpathLoaded: boolean, intercept?: InterceptFacts): Change[] {
  const changes: Change[] = fastpathLoaded ? fastpathChanges(settings.cgroup) : []
  if (settings.intercept && intercept) changes.push(...interceptChanges(settings.intercept, intercept))
  return changes
}

/** Loads the fastpath object beside the intercept object's maps, and attaches the readers' program
 * when there is one (before sock_ops: it acts on the sockets of this instance's maps only). */
function fastpathLoad(pins: InstancePins, objects: UpFacts['objects']): Action[] {
  if (!objects.fastpath) return []
  return [
    bpftool.loadAll(objects.fastpath, pins.progs, pins.fastpathMaps, sharedMaps(pins.maps)),
    ...(objects.readers ? [{fs: 'mkdir' as const, path: pins.links}, attachReaders(objects.readers, pins.links, [pins.maps, pins.fastpathMaps])] : []),
  ]
}

export function buildRecord(settings: UpSettings, facts: Pick<UpFacts, 'bootId' | 'fastpath' | 'fastpathVariant' | 'intercept'>): InstanceRecord {
  return {
    version: 1,
    bootId: facts.bootId,
    settings,
    fastpath: facts.fastpath,
    fastpathVariant: facts.fastpathVariant,
    changes: plannedChanges(settings, facts.fastpathVariant !== null, facts.intercept),
  }
}

export function planUp(settings: UpSettings, facts: UpFacts): Step[] {
  const {pins} = facts
  const record = buildRecord(settings, facts)
  const steps: Step[] = []
  if (!facts.bpffsMounted)
    // bpffs stays mounted after down: other BPF users may pin there too
    steps.push({id: 'mount-bpffs', title: `Mount bpffs at ${BPFFS}`, apply: [{tool: 'mount', args: ['-t', 'bpf', 'bpf', BPFFS]}], undo: []})
  if (facts.mountCgroup2)
    steps.push({
      id: 'mount-cgroup2',
      title: `Mount cgroup v2 at ${facts.mountCgroup2}`,
      apply: [{fs: 'mkdir', path: facts.mountCgroup2, mode: 0o755, existOk: true}, {tool: 'mount', args: ['-t', 'cgroup2', '-o', 'nsdelegate', 'none', facts.mountCgroup2]}],
      undo: [{tool: 'umount', args: [facts.mountCgroup2]}],
    })
  if (!facts.pinRootExists) steps.push({id: 'pin-root', title: `Create ${PIN_ROOT}`, apply: [{fs: 'mkdir', path: PIN_ROOT, existOk: true}], undo: [{fs: 'rmdir-if-empty', path: PIN_ROOT}]})
  steps.push(
    // the directory is the lock; the mark in it says who holds it (holder.ts)
    {id: 'lock', title: `Create the instance directory ${pins.dir}`, apply: [{fs: 'mkdir', path: pins.dir}, {fs: 'mkdir', path: markPath(pins.dir, facts.hold)}], undo: [{fs: 'rm', path: pins.dir}]},
    {
      id: 'load',
      title: `Load and pin the programs and maps (${facts.fastpathVariant ? `fastpath: ${fastpathLabel(facts)}` : 'interception only: the fastpath is off'})`,
      apply: [bpftool.loadAll(facts.objects.intercept, pins.progs, pins.maps), ...fastpathLoad(pins, facts.objects)],
      undo: [],
    },
    {
      id: 'record',
      title: 'Write the undo record and the configuration',
      apply: [
        bpftool.mapUpdate(pins.map.record, KEY_ZERO, encodeRecord(record)),
        ...(settings.intercept ? bypassWrites(settings.intercept, pins) : []),
        bpftool.mapUpdate(pins.map.config, KEY_ZERO, encodeConfig(datapathConfig(settings, facts.fastpath, !!facts.objects.readers, facts.intercept?.loIfindex))),
      ],
      undo: [],
    },
  )
  for (const change of record.changes) steps.push(changeStep(change, pins, settings.netns))
  steps.push(releaseStep(pins, facts.hold))
  return steps
}

/** The last step of a run that marked the instance: the mark goes (a crash before it leaves a mark
 * whose process is gone, which means nothing). */
export const releaseStep = (pins: InstancePins, hold: string): Step => ({id: 'release', title: 'Release the instance', apply: [{fs: 'rm', path: markPath(pins.dir, hold)}], undo: []})

/** The instance's state, unless another skfp is changing it, or it is half up and this is no
 * --replace (down, then up, which finishes a half-up instance as `down` does): then up is refused,
 * naming what is missing (before it probes the kernel). */
export function refuseUnsettled(observed: ObservedInstance, instance: string, replace = false): InstanceState {
  if (observed.holder) throw busyError(instance, observed.holder)
  const state = instanceState(observed)
  if (state === 'half-up' && !replace) throw halfUpError(observed, instance)
  return state
}

export function halfUpError(observed: ObservedInstance, instance: string) {
  const problems = halfUpProblems(observed)
  const shown = problems.slice(0, 2).join('; ') + (problems.length > 2 ? `; ${problems.length - 2} more (skfp status)` : '')
  return conflictError(`instance ${instance} is half up: ${shown}`, `run \`skfp down --instance ${instance}\` first (it removes what is left: of a crash, an interrupted run, or changes removed under it), or up again with --replace`)
}

/** The recorded changes an `up` with the same settings puts back on a half-up instance: when each
 * missing one is a clsact qdisc or a tc filter (an interface deleted and created again, a crash among
 * up's tc steps) and everything else is in place. undefined: not so (then `down` or `--replace`). */
export function repairableChanges(o: ObservedInstance): Change[] | undefined {
  if (!o.record || fastpathProblem(o)) return undefined
  const missing = o.record.changes.filter((c) => !present(c, o))
  return missing.length > 0 && missing.every((c) => c.kind === 'qdisc' || c.kind === 'tc-filter') ? missing : undefined
}

/** Puts those changes back, in the recorded order (a qdisc before its filters), each with its undo;
 * marked like any up (holder.ts). */
export function planRepair(o: ObservedInstance, changes: Change[], hold: string): Step[] {
  const {pins} = o
  return [
    {id: 'hold', title: 'Mark the instance as being changed', apply: [{fs: 'mkdir', path: markPath(pins.dir, hold)}], undo: [{fs: 'rm', path: markPath(pins.dir, hold)}]},
    ...changes.map((change) => changeStep(change, pins, o.record!.settings.netns)),
    releaseStep(pins, hold),
  ]
}

/** Another live skfp is changing the instance (holder.ts): a refusal that ends when it is done. */
export class BusyError extends SkfpError {
  constructor(instance: string, readonly pid: number) {
    super('conflict', `instance ${instance} is being changed by another skfp (pid ${pid})`, 'wait for it to finish, or stop it (Ctrl-C rolls an up back)')
  }
}

export const busyError = (instance: string, pid: number) => new BusyError(instance, pid)

function changeStep(change: Change, pins: InstancePins, netns?: string): Step {
  const a = changeActions(change, pins, netns)
  return {id: stepId(change), title: a.title, apply: a.apply, undo: a.undo}
}

const fastpathLabel = (facts: Pick<UpFacts, 'fastpathVariant' | 'objects'>) => `${facts.fastpathVariant}${facts.objects.readers ? ', adaptive' : ''}`

export type UpDecision = {kind: 'noop'} | {kind: 'plan'; replace: boolean} | {kind: 'switch-fastpath'; steps: Step[]} | {kind: 'attach-fastpath'}

/**
 * up on a running instance: same settings → nothing to do; only the fastpath mode differs → flip it
 * in place (the kill switch: ordering-safe, live sockets are never touched), or, on an instance that
 * started with the fastpath off (none of its programs loaded), attach it (planFastpathAttach); other
 * settings → refuse. --replace: down, then up, always.
 */
export function decideUp(observed: ObservedInstance, settings: UpSettings, fastpath: boolean, replace: boolean): UpDecision {
  const state = refuseUnsettled(observed, settings.instance, replace)
  if (state === 'down') return {kind: 'plan', replace: false}
  // down, then up, whatever differs: new programs after an upgrade, a cgroup created again, fresh counters
  if (replace) return {kind: 'plan', replace: true}
  const record = observed.record!
  const loaded = !!observed.progs.skMsg
  // the adaptive modes need the readers' program, attached with the fastpath (not with --fastpath all)
  const switchable = !fastpath || !loaded || settings.fastpath === 'all' || readersAttached(observed)
  const differences = diffSettings({...record.settings, fastpath: switchable ? settings.fastpath : record.settings.fastpath}, settings)
  if (differences.length > 0) throw conflictError(`instance ${settings.instance} runs with other settings (${differences.join('; ')})`, 'pass --replace to apply them, or `skfp down` first')
  if (record.settings.fastpath === settings.fastpath && record.fastpath === fastpath) return {kind: 'noop'}
  if (fastpath && !loaded) return {kind: 'attach-fastpath'}
  return {kind: 'switch-fastpath', steps: planFastpathSwitch(observed, settings, fastpath)}
}

/**
 * Attaches the fastpath to a running instance that started without it, as a fresh up would have:
 * load (its first action, creating the fastpath's map directory, is the lock against a second
 * switch; the next marks who holds it), record, the attachments, release; each undone on failure or
 * a signal, leaving the instance as it was. A crash in between leaves it half up (observe.ts), for
 * `down`.
 */
export function planFastpathAttach(observed: ObservedInstance, settings: UpSettings, facts: Pick<UpFacts, 'objects' | 'fastpathVariant' | 'hold'>): Step[] {
  const {pins} = observed
  const old = observed.record!
  const changes = fastpathChanges(settings.cgroup)
  const record: InstanceRecord = {...old, settings, fastpath: true, fastpathVariant: facts.fastpathVariant, changes: [...changes, ...old.changes]}
  return [
    {
      id: 'load',
      title: `Load and pin the fastpath (${fastpathLabel(facts)})`,
      apply: [{fs: 'mkdir', path: pins.fastpathMaps}, {fs: 'mkdir', path: markPath(pins.dir, facts.hold)}, ...fastpathLoad(pins, facts.objects)],
      // unpinning the readers' links detaches them; the programs go with their last reference
      undo: [{fs: 'rm', path: pins.links}, ...[pins.prog.sockops, pins.prog.skMsg, pins.prog.finHold].map((path) => ({fs: 'rm' as const, path})), {fs: 'rm', path: pins.fastpathMaps}, {fs: 'rm', path: markPath(pins.dir, facts.hold)}],
    },
    rewriteStep(observed, 'record', 'Write the undo record and the configuration', record, true, !!facts.objects.readers),
    ...changes.map((change) => changeStep(change, pins, settings.netns)),
    releaseStep(pins, facts.hold),
  ]
}

const readersAttached = (observed: ObservedInstance) => existsSync(observed.pins.links)

/** Rewrites the record and the config flags; sock_ops stops adding sockets, sk_msg stops redirecting
 * (off), or new sockets start watched (on, auto) or promoted (all). */
export function planFastpathSwitch(observed: ObservedInstance, settings: UpSettings, fastpath: boolean): Step[] {
  const record: InstanceRecord = {...observed.record!, settings, fastpath}
  const adaptive = settings.fastpath !== 'all' && readersAttached(observed)
  return [rewriteStep(observed, 'switch-fastpath', `Switch the fastpath ${fastpath ? 'on' : 'off'}`, record, fastpath, adaptive)]
}

/** Writes a new record and the config with these fastpath flags (the rest as they are); its undo
 * writes both back. */
function rewriteStep(observed: ObservedInstance, id: string, title: string, record: InstanceRecord, fastpath: boolean, adaptive: boolean): Step {
  const {pins} = observed
  const config = observed.config!
  const flags = (config.flags & ~(CFG_FASTPATH | CFG_ADAPTIVE)) | (fastpath ? CFG_FASTPATH : 0) | (adaptive ? CFG_ADAPTIVE : 0)
  return {
    id,
    title,
    apply: [bpftool.mapUpdate(pins.map.record, KEY_ZERO, encodeRecord(record)), bpftool.mapUpdate(pins.map.config, KEY_ZERO, encodeConfig({...config, flags}, observed.configSize))],
    undo: [bpftool.mapUpdate(pins.map.config, KEY_ZERO, encodeConfig(config, observed.configSize)), bpftool.mapUpdate(pins.map.record, KEY_ZERO, encodeRecord(observed.record))],
  }
}
