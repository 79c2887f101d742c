/** The services behind up and down: gather facts, decide, plan, run. Commands stay thin. */
import {existsSync, mkdirSync} from 'node:fs'
import {autoOffLine, readVerdict, runSelfTest, storeVerdict, unloadableVerdict, type Verdict} from './doctor.js'
import {build, fastpathObject, interceptObject, isBuilt, objectDir, type BuildOptions} from './build.js'
import {assignsReuseport, probeDatapath, refusals, REUSEPORT_NOTE, type DatapathSupport} from './datapath.js'
import {environmentError} from './errors.js'
import {ExecaRunner, resolveTool, type Runner, type Tool} from './exec.js'
import {gatherInterceptFacts, resolveUplinks} from './intercept.js'
import {bootId, bpffsMounted, cgroup2Mount, CGROUP2_FALLBACK, readMounts, requireRoot, validateCgroup, validateNetns} from './host.js'
import {instanceState, observeInstance} from './observe.js'
import {BPFFS, instancePins, PIN_ROOT} from './pins.js'
import {Executor, runPlan, type PlanResult, type RunPlanOptions} from './plan.js'
import {planDown} from './down.js'
import type {UpSettings} from './settings.js'
import {decideUp, planUp} from './up.js'

export interface UpResult {
  instance: string
  action: 'created' | 'replaced' | 'switched' | 'unchanged'
  dryRun: boolean
  fastpath: boolean
  plan: PlanResult['preview']
}

export interface UpOptions extends RunPlanOptions {
  replace?: boolean
  debugObject?: boolean
  /** Another fastpath object (the benchmark's unguarded build, a test's small sockhash). */
  fastpathObject?: string
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
  const settings = await resolveUplinks(runner, preflight(wanted, tools))
  const target = {target: 'bpfel' as const, debug: !!opts.debugObject}
  const observed = await observeInstance(runner, settings.instance)
  // everything is validated (collisions included) before `auto` may run the self-test
  let interceptFacts = settings.intercept && instanceState(observed) === 'down' ? await gatherInterceptFacts(runner, settings) : undefined
  const support = await datapathSupport(runner, target)
  if (support.intercept) throw loadRefused(support, 'skfp cannot load', support.intercept, 'it needs Linux 5.10 or later with BTF; `skfp doctor` lists what this kernel lacks')
  if (settings.intercept && !opts.dryRun && !assignsReuseport()) (opts.log ?? warn)(`note: ${REUSEPORT_NOTE} (skfp doctor)`)
  const fastpath = await resolveFastpath(settings, support, runner, opts)
  const decision = decideUp(observed, settings, fastpath, !!opts.replace)
  if (decision.kind === 'noop') return {instance: settings.instance, action: 'unchanged', dryRun: !!opts.dryRun, fastpath, plan: []}
  if (decision.kind === 'switch-fastpath') {
    const result = await runPlan(decision.steps, new Executor(runner), opts)
    return {instance: settings.instance, action: 'switched', dryRun: result.dryRun, fastpath, plan: result.preview}
  }
  const exec = new Executor(runner)
  if (decision.replace && !opts.dryRun) await runPlan(planDown(observed), exec, {...opts, finishOnSignal: true})
  if (settings.intercept && !interceptFacts) {
    // a dry run did not take the running instance down: its own changes are not collisions
    const ours = decision.replace && opts.dryRun ? observed.record?.changes : undefined
    interceptFacts = await gatherInterceptFacts(runner, settings, ours)
  }
  const mounts = readMounts()
  const steps = planUp(settings, {
    pins: instancePins(settings.instance),
    objects: {intercept: interceptObject(target), fastpath: support.fastpath ? (opts.fastpathObject ?? fastpathObject(target, support.fastpath)) : undefined},
    fastpathVariant: support.fastpath,
    bootId: bootId(),
    bpffsMounted: bpffsMounted(mounts),
    mountCgroup2: cgroup2Mount(mounts) ? undefined : CGROUP2_FALLBACK,
    pinRootExists: existsSync(PIN_ROOT),
    fastpath,
    intercept: interceptFacts,
  })
  const result = await runPlan(steps, exec, opts)
  return {instance: settings.instance, action: decision.replace ? 'replaced' : 'created', dryRun: result.dryRun, fastpath, plan: result.preview}
}

/** What this kernel loads of the datapath (built first when the objects are missing or stale). */
export async function datapathSupport(runner: Runner, target: BuildOptions = {target: 'bpfel', debug: false}): Promise<DatapathSupport> {
  if (!isBuilt(target)) {
    resolveTool('clang')
    await build(runner, target)
  }
  return probeDatapath(runner, objectDir(target))
}

/** The one-line error for an object this kernel refuses; the loader's output under --verbose. */
function loadRefused(support: DatapathSupport, what: string, r: DatapathSupport['refused'][number], hint: string) {
  return environmentError(`${what} on kernel ${support.kernel}: ${r.reason}`, hint, {argv: ['bpftool', 'prog', 'loadall', r.object], stderrTail: r.log.split('\n').slice(-40).join('\n')})
}

/** on/off as given; auto follows the kernel self-test's verdict (run now if this boot has none). */
async function resolveFastpath(settings: UpSettings, support: DatapathSupport, runner: Runner, opts: UpOptions): Promise<boolean> {
  if (settings.fastpath === 'off') return false
  if (!support.fastpath) {
    const last = support.refused[support.refused.length - 1]
    if (settings.fastpath === 'on')
      throw loadRefused(support, 'the fastpath cannot load', last, 'interception works without it: use --fastpath off (or auto); `skfp doctor` lists what this kernel lacks')
    ;(opts.log ?? warn)(`fastpath off: it cannot load on kernel ${support.kernel} (${refusals(support)}); interception works without it`)
    return false
  }
  if (settings.fastpath === 'on') return true
  const existing = await readVerdict(runner)
  if (!existing && opts.dryRun) {
    ;(opts.log ?? warn)('--fastpath auto: the kernel self-test would run first (skfp doctor)')
    return false
  }
  const verdict = existing ?? (await ensureVerdict(runner, {log: opts.renderer === 'silent' ? () => {} : warn}, support))
  if (!verdict.fastpathSafe) (opts.log ?? warn)(autoOffLine(verdict))
  return verdict.fastpathSafe
}

const warn = (line: string) => process.stderr.write(`${line}\n`)

/** The pinned verdict of this boot, or a fresh self-test (pinned for the rest of the boot). */
export async function ensureVerdict(runner: Runner, opts: {rerun?: boolean; log?: (line: string) => void} = {}, support?: DatapathSupport): Promise<Verdict> {
  requireRoot()
  const existing = opts.rerun ? undefined : await readVerdict(runner)
  if (existing) return existing
  const loads = support ?? (await datapathSupport(runner))
  let verdict: Verdict
  if (!loads.fastpath) verdict = unloadableVerdict(`the fastpath cannot load (${refusals(loads)})`)
  else {
    opts.log?.('running the kernel self-test of the fastpath in a sandbox…')
    verdict = await runSelfTest(runner, upInstance, opts.log)
  }
  // the verdict is a pin: bpffs first (as up mounts it; it stays mounted). Without it the pin root
  // would be a directory in sysfs, where mkdir never succeeds
  if (!bpffsMounted()) await runner.run({tool: 'mount', args: ['-t', 'bpf', 'bpf', BPFFS]})
  mkdirSync(PIN_ROOT, {recursive: true, mode: 0o700})
  await storeVerdict(runner, verdict)
  return verdict
}
