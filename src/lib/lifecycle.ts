/** The services behind up and down: gather facts, decide, plan, run. Commands stay thin. */
import {existsSync, mkdirSync} from 'node:fs'
import {autoOffLine, readRecordPin, readVerdict, runSelfTest, storeVerdict, unloadableVerdict, writeRecordPin, type Verdict} from './doctor.js'
import {build, fastpathObject, interceptObject, isBuilt, objectDir, readersObject, type BuildOptions} from './build.js'
import {assignsReuseport, pinnableSupport, probeDatapath, refusals, REUSEPORT_NOTE, supportKey, type DatapathSupport, type LoadRefusal} from './datapath.js'
import {environmentError} from './errors.js'
import {ExecaRunner, resolveTool, type Runner, type Tool} from './exec.js'
import {gatherInterceptFacts, linkLayer, movedRouting, resolveRouting, type RoutingMoved} from './intercept.js'
import {bootId, bpffsMounted, cgroup2Mount, CGROUP2_FALLBACK, readMounts, requireRoot, validateCgroup, validateNetns} from './host.js'
import {instanceState, observeInstance, type ObservedInstance} from './observe.js'
import {BPFFS, instancePins, PIN_ROOT, SUPPORT_PIN} from './pins.js'
import {Executor, runPlan, type PlanResult, type RunPlanOptions} from './plan.js'
import {planDown} from './down.js'
import {diffSettings, type UpSettings} from './settings.js'
import type {Change} from './record.js'
import * as ip from './tools/ip.js'
import * as tc from './tools/tc.js'
import {busyError, decideUp, halfUpError, planFastpathAttach, planRepair, planUp, refuseUnsettled, repairableChanges} from './up.js'
import {holdMark} from './holder.js'

export interface UpResult {
  instance: string
  /** down: the instance is not up and keepDown was asked (up --follow after a down). */
  action: 'created' | 'replaced' | 'switched' | 'repaired' | 'unchanged' | 'down'
  dryRun: boolean
  fastpath: boolean
  plan: PlanResult['preview']
  /** The uplinks followed the default routes to other interfaces (no --uplink given), or the VPN
   * marks changed: replaced. */
  routingMoved?: RoutingMoved
}

/** The changes a repair put back (its plan without the mark and its release). */
export const changesPutBack = (r: UpResult): number => r.plan.filter((s) => s.id !== 'hold' && s.id !== 'release').length

export interface UpOptions extends RunPlanOptions {
  replace?: boolean
  debugObject?: boolean
  /** Another fastpath object (the benchmark's unguarded build, a test's small sockhash). */
  fastpathObject?: string
  /** Only put right an instance that is there: one that is down stays down (up --follow, which a
   * down ends). */
  keepDown?: boolean
  /** What the kernel loads, when this process has found it already (the self-test's up). */
  support?: DatapathSupport
}

/** Checks that do not change the host: privilege, tools, cgroup, netns. */
export function preflight(settings: UpSettings, tools: Parameters<typeof resolveTool>[0][]): UpSettings {
  requireRoot()
  for (const t of tools) resolveTool(t)
  const mounts = readMounts()
  const cg2 = cgroup2Mount(mounts)
  const cgroup = settings.cgroup ? validateCgroup(settings.cgroup) : cg2 ?? CGROUP2_FALLBACK
  if (settings.netns) validateNetns(settings.netns)
  const i = settings.intercept
  if (i) for (const [flag, list] of [['--intercept-cgroup', i.interceptCgroups], ['--bypass-cgroup', i.bypassCgroups]] as const) for (const c of list) validateCgroup(c, flag)
  return {...settings, cgroup}
}

export async function upInstance(wanted: UpSettings, opts: UpOptions = {}, runner: Runner = new ExecaRunner()): Promise<UpResult> {
  const tools: Tool[] = ['bpftool', 'mount', 'umount', ...(wanted.netns ? (['nsenter'] as const) : []), ...(wanted.intercept ? (['tc', 'ip', 'sysctl'] as const) : [])]
  const checked = preflight(wanted, tools)
  const observed = await observeInstance(runner, checked.instance)
  if (observed.holder) throw busyError(checked.instance, observed.holder)
  if (opts.keepDown && !observed.exists) return {instance: checked.instance, action: 'down', dryRun: !!opts.dryRun, fastpath: false, plan: []}
  const settings = await resolveRouting(runner, checked)
  const target = {target: 'bpfel' as const, debug: !!opts.debugObject}
  // no --uplink: the uplinks are the default routes' interfaces, and follow them when they move
  // (another network, the recorded interface gone); the VPN marks follow the policy rules: down and
  // up again with the new ones
  const routingMoved = movedRouting(observed.record?.settings, wanted, settings)
  const replace = !!opts.replace || !!routingMoved
  // half up with only tc changes gone, the same settings: they are put back (nothing to load)
  if (instanceState(observed) === 'half-up' && !replace) return repair(observed, settings, opts, runner)
  // everything is validated (collisions included) before `auto` may run the self-test
  const state = refuseUnsettled(observed, settings.instance, replace)
  let interceptFacts = settings.intercept && state === 'down' ? await gatherInterceptFacts(runner, settings) : undefined
  const support = opts.support ?? (await datapathSupport(runner, target))
  if (support.intercept) throw await loadRefused(runner, target, support, 'skfp cannot load', (s) => s.intercept, 'it needs Linux 5.10 or later with BTF; `skfp doctor` lists what this kernel lacks')
  if (settings.intercept && !opts.dryRun && !assignsReuseport()) (opts.log ?? warn)(`note: ${REUSEPORT_NOTE} (skfp doctor)`)
  const fastpath = await resolveFastpath(settings, support, runner, opts, target)
  const decision = decideUp(observed, settings, fastpath, replace)
  if (decision.kind === 'noop') return {instance: settings.instance, action: 'unchanged', dryRun: !!opts.dryRun, fastpath, plan: []}
  // the fastpath's objects only when it is on (resolveFastpath has refused `on`, or turned `auto` off, where the kernel loads none)
  const objects = {
    intercept: interceptObject(target),
    fastpath: fastpath && support.fastpath ? (opts.fastpathObject ?? fastpathObject(target, support.fastpath)) : undefined,
    readers: fastpath && support.fastpath && support.readersVariant && settings.fastpath !== 'all' ? readersObject(target, support.readersVariant) : undefined,
  }
  const fastpathVariant = objects.fastpath ? support.fastpath : null
  const hold = holdMark()
  if (decision.kind === 'switch-fastpath' || decision.kind === 'attach-fastpath') {
    const steps = decision.kind === 'switch-fastpath' ? decision.steps : planFastpathAttach(observed, settings, {objects, fastpathVariant, hold})
    const result = await runPlan(steps, new Executor(runner), opts)
    return {instance: settings.instance, action: 'switched', dryRun: result.dryRun, fastpath, plan: result.preview}
  }
  const exec = new Executor(runner)
  if (settings.intercept && !interceptFacts) {
    // checked before the running instance goes down, so a collision leaves it running: its own
    // changes (in the same netns: a change names no netns) are not collisions, down removes them
    const old = decision.replace ? observed.record : undefined
    const ours = old && old.settings.netns === settings.netns ? old.changes : undefined
    interceptFacts = await gatherInterceptFacts(runner, settings, ours)
  }
  if (decision.replace && !opts.dryRun) await runPlan(planDown(observed, hold), exec, {...opts, finishOnSignal: true})
  const mounts = readMounts()
  const steps = planUp(settings, {
    pins: instancePins(settings.instance),
    objects,
    fastpathVariant,
    bootId: bootId(),
    bpffsMounted: bpffsMounted(mounts),
    mountCgroup2: cgroup2Mount(mounts) ? undefined : CGROUP2_FALLBACK,
    pinRootExists: existsSync(PIN_ROOT),
    fastpath,
    intercept: interceptFacts,
    hold,
  })
  const result = await runPlan(steps, exec, opts)
  return {instance: settings.instance, action: decision.replace ? 'replaced' : 'created', dryRun: result.dryRun, fastpath, plan: result.preview, ...(routingMoved && {routingMoved})}
}

/** A half-up instance whose only missing changes are tc ones (repairableChanges), asked again with
 * its own settings, on interfaces that exist: those changes go back. Else the half-up refusal. */
async function repair(observed: ObservedInstance, settings: UpSettings, opts: UpOptions, runner: Runner): Promise<UpResult> {
  const changes = repairableChanges(observed)
  const record = observed.record
  if (!changes || !record || diffSettings(record.settings, settings).length > 0 || !(await interfacesReady(runner, changes, record.settings.netns)))
    throw halfUpError(observed, settings.instance)
  const result = await runPlan(planRepair(observed, changes, holdMark()), new Executor(runner), opts)
  return {instance: settings.instance, action: 'repaired', dryRun: result.dryRun, fastpath: record.fastpath, plan: result.preview}
}

/** Each interface of these changes exists with the link layer its recorded program reads (an
 * Ethernet one, or one without link-layer header for an *_l3 program: linkLayer), and one whose
 * filter goes back without its qdisc has a clsact qdisc (someone else's, which skfp never recorded). */
async function interfacesReady(runner: Runner, changes: Change[], netns?: string): Promise<boolean> {
  const layers = new Map((await ip.links(runner, netns)).map((l) => [l.ifname, l.ifname === 'lo' ? 'l2' : linkLayer(l)]))
  for (const c of changes) {
    if (c.kind !== 'qdisc' && c.kind !== 'tc-filter') return false
    if (!layers.get(c.dev)) return false
    if (c.kind === 'tc-filter' && layers.get(c.dev) !== (c.l3 ? 'l3' : 'l2')) return false
    if (c.kind === 'tc-filter' && !changes.some((q) => q.kind === 'qdisc' && q.dev === c.dev) && !tc.hasClsact(await tc.qdiscs(runner, c.dev, netns))) return false
  }
  return true
}

const DEFAULT_TARGET: BuildOptions = {target: 'bpfel', debug: false}

interface PinnedSupport {
  key: string
  support: DatapathSupport
}

/** What this kernel loads of the datapath (built first when the objects are missing or stale): what
 * this boot's pin says when it was probed with the same objects and bpftool, else a probe now. Each
 * probe loads every object (seconds on a slow machine); the pin is written beside the verdict. */
export async function datapathSupport(runner: Runner, target: BuildOptions = DEFAULT_TARGET): Promise<DatapathSupport> {
  if (!isBuilt(target)) {
    resolveTool('clang')
    await build(runner, target)
  }
  const pinned = await readRecordPin<PinnedSupport>(runner, SUPPORT_PIN)
  if (pinned && pinned.key === supportKeyOf(target)) return {...pinned.support, fromPin: true}
  return probeDatapath(runner, objectDir(target))
}

const supportKeyOf = (target: BuildOptions) => supportKey(objectDir(target), resolveTool('bpftool'), bootId())

/** Pins what the kernel loads for the rest of the boot (beside the verdict; `down --all` removes both). */
async function pinSupport(runner: Runner, support: DatapathSupport, target: BuildOptions): Promise<void> {
  if (support.fromPin) return
  const record: PinnedSupport = {key: supportKeyOf(target), support: pinnableSupport(support)}
  await writeRecordPin(runner, SUPPORT_PIN, 'skfp_support', record)
}

/** The one-line error for an object this kernel refuses; the loader's output under --verbose (a
 * support read from the pin has none: the objects are probed again for it). */
async function loadRefused(runner: Runner, target: BuildOptions, support: DatapathSupport, what: string, pick: (s: DatapathSupport) => LoadRefusal | null | undefined, hint: string) {
  const fresh = support.fromPin ? await probeDatapath(runner, objectDir(target)) : support
  const r = pick(fresh) ?? pick(support)!
  return environmentError(`${what} on kernel ${support.kernel}: ${r.reason}`, hint, {argv: ['bpftool', 'prog', 'loadall', r.object], stderrTail: r.log.split('\n').slice(-40).join('\n')})
}

/** on/off as given; auto follows the kernel self-test's verdict (run now if this boot has none). */
async function resolveFastpath(settings: UpSettings, support: DatapathSupport, runner: Runner, opts: UpOptions, target: BuildOptions): Promise<boolean> {
  if (settings.fastpath === 'off') return false
  if (!support.fastpath) {
    if (settings.fastpath === 'on' || settings.fastpath === 'all')
      throw await loadRefused(runner, target, support, 'the fastpath cannot load', (s) => s.refused[s.refused.length - 1], 'interception works without it: use --fastpath off (or auto); `skfp doctor` lists what this kernel lacks')
    ;(opts.log ?? warn)(`fastpath off: it cannot load on kernel ${support.kernel} (${refusals(support)}); interception works without it`)
    return false
  }
  if (settings.fastpath === 'all') return true
  if (settings.fastpath === 'on' && support.readers !== null)
    throw await loadRefused(runner, target, support, 'the adaptive fastpath cannot load', (s) => s.readers, '--fastpath all redirects to every reader without watching how it reads (splice() and MSG_WAITALL readers break); `skfp doctor` lists what this kernel lacks')
  if (settings.fastpath === 'on') return true
  if (support.readers !== null) {
    ;(opts.log ?? warn)(`fastpath off: --fastpath auto needs the adaptive fastpath, which kernel ${support.kernel} refuses (${support.readers?.reason ?? 'not probed'}); --fastpath all redirects to every reader, for applications known not to use splice() or MSG_WAITALL`)
    return false
  }
  // a verdict of every-reader mode (an older skfp's) says nothing about the adaptive fastpath
  const pinned = await readVerdict(runner)
  const existing = pinned?.mode === 'adaptive' ? pinned : undefined
  if (!existing && opts.dryRun) {
    ;(opts.log ?? warn)('--fastpath auto: the kernel self-test would run first (skfp doctor)')
    return false
  }
  const verdict = existing ?? (await ensureVerdict(runner, {rerun: !!pinned, log: opts.renderer === 'silent' ? () => {} : warn}, support, target))
  if (!verdict.fastpathSafe) (opts.log ?? warn)(autoOffLine(verdict))
  return verdict.fastpathSafe
}

const warn = (line: string) => process.stderr.write(`${line}\n`)

/** The pinned verdict of this boot, or a fresh self-test (pinned for the rest of the boot, with what
 * the kernel loads). */
export async function ensureVerdict(runner: Runner, opts: {rerun?: boolean; log?: (line: string) => void} = {}, support?: DatapathSupport, target = DEFAULT_TARGET): Promise<Verdict> {
  requireRoot()
  const existing = opts.rerun ? undefined : await readVerdict(runner)
  if (existing) return existing
  const loads = support ?? (await datapathSupport(runner, target))
  let verdict: Verdict
  if (!loads.fastpath) verdict = unloadableVerdict(`the fastpath cannot load (${refusals(loads)})`)
  else {
    opts.log?.('running the kernel self-test of the fastpath in a sandbox…')
    // its up loads what this run found the kernel takes, without probing again
    verdict = await runSelfTest(runner, (s, o, r) => upInstance(s, {...o, support: loads}, r), opts.log, loads.readers === null ? 'adaptive' : 'all')
  }
  // the verdict is a pin: bpffs first (as up mounts it; it stays mounted). Without it the pin root
  // would be a directory in sysfs, where mkdir never succeeds
  if (!bpffsMounted()) await runner.run({tool: 'mount', args: ['-t', 'bpf', 'bpf', BPFFS]})
  mkdirSync(PIN_ROOT, {recursive: true, mode: 0o700})
  await pinSupport(runner, loads, target)
  await storeVerdict(runner, verdict)
  return verdict
}
