/**
 * Plans: a list of steps, each with the exact actions it applies and the actions that undo it.
 * `runPlan` shows listr2 progress on stderr, and on failure or Ctrl-C unwinds every applied step
 * in reverse. Dry-run prints the argv of every action instead of running it.
 */
import {Listr, ListrLogger, ProcessOutput} from 'listr2'
import {mkdirSync, rmSync, rmdirSync, readdirSync, chmodSync} from 'node:fs'
import {SkfpError} from './errors.js'
import {argvOf, type Cmd, type Runner} from './exec.js'
import {interrupted, interruptedError, interruptibleSleep, throwIfInterrupted} from './interrupt.js'

export type FsAction = {fs: 'mkdir'; path: string; mode?: number; existOk?: boolean} | {fs: 'rm'; path: string} | {fs: 'rmdir-if-empty'; path: string}
export type Action = Cmd | FsAction

export interface Step {
  /** Stable name: used by tests and by SKFP_CRASH_AFTER. */
  id: string
  title: string
  apply: Action[]
  undo: Action[]
  /** Its actions may fail harmlessly (the thing is already gone or not there yet). */
  tolerant?: boolean
}

export const isFs = (a: Action): a is FsAction => 'fs' in a

export function previewAction(a: Action): string[] {
  if (!isFs(a)) return argvOf(a)
  if (a.fs === 'mkdir') return ['mkdir', '-m', (a.mode ?? 0o700).toString(8).padStart(4, '0'), a.path]
  if (a.fs === 'rm') return ['rm', '-r', a.path]
  return ['rmdir', '--ignore-fail-on-non-empty', a.path]
}

/** Performs actions: commands through the runner, bpffs directory work in-process. */
export class Executor {
  constructor(readonly runner: Runner) {}

  async perform(a: Action, tolerant = false): Promise<void> {
    if (!isFs(a)) {
      await this.runner.run(a, {allowFailure: tolerant})
      return
    }
    try {
      if (a.fs === 'mkdir') {
        mkdirSync(a.path, {mode: a.mode ?? 0o700}) // fails when it exists: that is the instance lock
        chmodSync(a.path, a.mode ?? 0o700)
      } else if (a.fs === 'rm') rmSync(a.path, {recursive: true, force: true})
      else if (readdirSync(a.path).length === 0) rmdirSync(a.path)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (tolerant || (a.fs === 'rmdir-if-empty' && code === 'ENOENT') || (a.fs === 'mkdir' && a.existOk && code === 'EEXIST')) return
      if (a.fs === 'mkdir' && code === 'EEXIST')
        throw new SkfpError('conflict', `${a.path} already exists`, 'another skfp is working on this instance; wait for it, or run `skfp down` if it crashed')
      throw new SkfpError('tool', `${previewAction(a).join(' ')} failed: ${(error as Error).message}`, 'check that bpffs is mounted at /sys/fs/bpf')
    }
  }
}

export interface RunPlanOptions {
  dryRun?: boolean
  /** listr2 renderer: 'default' on a terminal, 'simple' otherwise, 'silent' under --json. */
  renderer?: 'default' | 'simple' | 'silent'
  /** A signal does not stop this plan (down: its steps have no undo, so it goes on to the end). */
  finishOnSignal?: boolean
  /** Print a line to stderr (dry-run listing, rollback notes). */
  log?: (line: string) => void
}

export interface PlanResult {
  applied: string[]
  dryRun: boolean
  preview: {id: string; title: string; argv: string[][]}[]
}

export function previewPlan(steps: Step[]): PlanResult['preview'] {
  return steps.map((s) => ({id: s.id, title: s.title, argv: s.apply.map(previewAction)}))
}

/** skfp's listr2 set-up: one step after another, on stderr, never listr2's own signal handler (it
 * exits the process on SIGINT, before an unwind or a clean-up could run). */
export function listrOptions(renderer: 'default' | 'simple' | 'silent' = 'simple'): never {
  const output = new ProcessOutput(process.stderr, process.stderr)
  return {
    concurrent: false,
    exitOnError: true,
    registerSignalListeners: false,
    renderer,
    fallbackRenderer: 'simple',
    rendererOptions: {logger: new ListrLogger({processOutput: output})},
    fallbackRendererOptions: {logger: new ListrLogger({processOutput: output})},
  } as never
}

export function defaultRenderer(json: boolean): 'default' | 'simple' | 'silent' {
  if (json) return 'silent'
  return process.stderr.isTTY ? 'default' : 'simple'
}

export async function runPlan(steps: Step[], exec: Executor, opts: RunPlanOptions = {}): Promise<PlanResult> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`))
  const preview = previewPlan(steps)
  if (opts.dryRun) return {applied: [], dryRun: true, preview}

  const applied: Step[] = []
  const crashAfter = process.env.SKFP_CRASH_AFTER // test-only: simulates a crash (kill -9) after that step
  const [pauseAfter, pauseMs] = (process.env.SKFP_PAUSE_AFTER ?? '').split(':') // test-only: STEP:MS holds the run there
  const list = new Listr(
    steps.map((step) => ({
      title: step.title,
      task: async () => {
        if (!opts.finishOnSignal) throwIfInterrupted()
        for (const [i, action] of step.apply.entries()) {
          await exec.perform(action, step.tolerant)
          // undone from its first applied action on (tolerantly if it fails halfway); a step whose
          // first action failed changed nothing, and undoing it could remove what another run made
          if (i === 0) applied.push(step)
        }
        if (crashAfter === step.id) process.kill(process.pid, 'SIGKILL')
        if (pauseAfter === step.id) {
          process.stderr.write(`skfp: paused after ${step.id}\n`)
          await interruptibleSleep(Number(pauseMs))
          if (!opts.finishOnSignal) throwIfInterrupted()
        }
      },
    })),
    listrOptions(opts.renderer),
  )
  try {
    await list.run()
    return {applied: applied.map((s) => s.id), dryRun: false, preview}
  } catch (error) {
    const failures = await unwind(applied, exec, log)
    if (failures.length > 0)
      throw new SkfpError('partial', `${(error as Error).message}; rolling back left ${failures.join(', ')}`, 'run `skfp down` to remove what is left', {
        argv: (error as SkfpError).argv,
        stderrTail: (error as SkfpError).stderrTail,
      })
    // a step that failed because the signal also reached its program was interrupted, not broken
    const signal = interrupted()
    throw signal ? interruptedError(signal) : error
  }
}

/** Undoes steps in reverse; the last one may be half-applied, so its undo is tolerant. */
async function unwind(applied: Step[], exec: Executor, log: (line: string) => void): Promise<string[]> {
  const failures: string[] = []
  for (let i = applied.length - 1; i >= 0; i--) {
    const step = applied[i]
    const tolerant = step.tolerant || i === applied.length - 1
    for (const action of step.undo) {
      try {
        await exec.perform(action, tolerant)
      } catch {
        failures.push(`${step.id}: ${previewAction(action).join(' ')}`)
      }
    }
    log(`rolled back: ${step.title}`)
  }
  return failures
}
