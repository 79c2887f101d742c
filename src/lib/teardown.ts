/** `skfp down` as a service: observe each instance's pins, plan its removal, run it to the end. */
import {existsSync, readdirSync, rmdirSync, rmSync} from 'node:fs'
import {ExecaRunner, resolveTool, type Runner} from './exec.js'
import {requireRoot} from './host.js'
import {instanceState, listInstances, observeInstance, type ObservedInstance} from './observe.js'
import {PIN_ROOT, SUPPORT_PIN, VERDICT_PIN} from './pins.js'
import {Executor, runPlan, type PlanResult, type RunPlanOptions} from './plan.js'
import {planDown} from './down.js'
import {holdMark} from './holder.js'
import {busyError} from './up.js'

export interface DownResult {
  instances: {instance: string; wasState: string; plan: PlanResult['preview']}[]
  dryRun: boolean
}

export async function downInstances(which: {instance?: string; all?: boolean}, opts: RunPlanOptions = {}, runner: Runner = new ExecaRunner()): Promise<DownResult> {
  requireRoot()
  resolveTool('bpftool')
  const names = which.all ? listInstances() : [which.instance ?? 'default']
  const out: DownResult = {instances: [], dryRun: !!opts.dryRun}
  // an up or down at work: nothing is touched (removing pins under it would leave a mess for both);
  // with --all, checked for every instance before the first is taken down, and again for each right
  // before its own plan (what it observed then is what its plan undoes)
  const refuseBusy = (o: ObservedInstance) => {
    if (o.holder) throw busyError(o.instance, o.holder)
  }
  if (names.length > 1) for (const name of names) refuseBusy(await observeInstance(runner, name))
  const hold = holdMark()
  for (const name of names) {
    const o = await observeInstance(runner, name)
    refuseBusy(o)
    const result = await runPlan(planDown(o, hold), new Executor(runner), {...opts, finishOnSignal: true})
    out.instances.push({instance: name, wasState: instanceState(o), plan: result.preview})
  }
  if (opts.dryRun) return out
  // --all removes everything skfp pinned, the self-test verdict of this boot included
  if (which.all) forgetVerdict()
  // an up killed between creating the pin root and its instance directory leaves it empty
  removePinRootIfEmpty()
  return out
}

/** Removes the self-test's verdict of this boot and the datapath support pinned with it (and the pin
 * root, if that leaves it empty). */
export function forgetVerdict(): void {
  for (const pin of [VERDICT_PIN, SUPPORT_PIN]) if (existsSync(pin)) rmSync(pin)
  removePinRootIfEmpty()
}

/** Another up may be creating its instance directory right now: then the root stays. */
function removePinRootIfEmpty(): void {
  try {
    if (readdirSync(PIN_ROOT).length === 0) rmdirSync(PIN_ROOT)
  } catch (error) {
    if (!['ENOENT', 'ENOTEMPTY'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error
  }
}
