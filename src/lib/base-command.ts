/** What every skfp command shares: --verbose, --json errors, one-line errors with fixed exit codes. */
import {Command, Flags} from '@oclif/core'
import chalk from 'chalk'
import {SkfpError} from './errors.js'
import {installSignalHandlers, interrupted, interruptedError} from './interrupt.js'
import {ExecaRunner} from './exec.js'
import {defaultRenderer} from './plan.js'

export abstract class SkfpCommand extends Command {
  static enableJsonFlag = true
  static baseFlags = {
    verbose: Flags.boolean({description: 'Print every command run, and the command and stderr of a failure.', default: false, helpGroup: 'GLOBAL'}),
  }

  private verboseOn = false

  protected async init(): Promise<void> {
    installSignalHandlers()
    // https://no-color.org: present and not empty turns colour off (chalk itself only reads FORCE_COLOR)
    if (process.env.NO_COLOR) chalk.level = 0
    await super.init()
    this.verboseOn = this.argv.includes('--verbose')
  }

  protected runner(): ExecaRunner {
    return new ExecaRunner(this.verboseOn ? (line) => process.stderr.write(`${line}\n`) : undefined)
  }

  protected planOptions(dryRun: boolean) {
    return {dryRun, renderer: defaultRenderer(this.jsonEnabled())}
  }

  /** Human output (stdout), suppressed under --json. */
  protected say(text: string): void {
    if (!this.jsonEnabled()) process.stdout.write(`${text}\n`)
  }

  protected async catch(thrown: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    const err = asSkfpError(thrown, interrupted(), this.id)
    if (this.jsonEnabled()) this.logJson({error: {kind: err.kind, message: err.message, hint: err.hint, exitCode: err.exitCode, argv: err.argv ?? null}})
    process.stderr.write(`skfp: ${err.line}\n`)
    if (this.verboseOn && err.kind === 'bug' && err.stderrTail) process.stderr.write(`${err.stderrTail}\n`)
    else if (this.verboseOn && err.argv) process.stderr.write(`  command: ${err.argv.join(' ')}\n${err.stderrTail ? `  stderr: ${err.stderrTail.replace(/\n/g, '\n          ')}\n` : ''}`)
    process.exitCode = err.exitCode
    return undefined
  }
}

/**
 * Every failure as one SkfpError, so each has its kind, exit code and one line: whatever failed
 * after a signal failed because of it (a partial rollback keeps its own kind); oclif's parse errors
 * are usage errors; anything else is a bug in skfp (exit 70).
 */
export function asSkfpError(err: unknown, signal: NodeJS.Signals | undefined, command?: string): SkfpError {
  const own = err instanceof SkfpError ? err : undefined
  if (signal && !(own && ['partial', 'interrupted', 'terminated'].includes(own.kind))) return interruptedError(signal)
  if (own) return own
  const e = err as Error & {oclif?: {exit?: number}}
  if (e?.oclif?.exit === 2) {
    // oclif's own parse errors (unknown flag, missing value …): the same one-line usage error; a
    // missing argument's message is a list under "Missing 1 required arg:", so name it instead
    const missing = (e as {args?: {name?: string; description?: string}[]}).args?.filter((a) => a.name)
    const first = missing?.length ? `missing ${missing.map(argumentLabel).join(', ')}` : String(e.message).split('\n')[0].replace(/^\s*›?\s*(Error:\s*)?/, '')
    return new SkfpError('usage', first, `see \`skfp ${command ?? ''} --help\``.replace('  ', ' '))
  }
  const what = e instanceof Error ? e.message || e.name : String(err)
  return new SkfpError('bug', `internal error: ${what}`, 'this is a bug in skfp: report it with the output of --verbose', {stderrTail: e instanceof Error ? e.stack : undefined})
}

/** NAME (its description, lower-cased, without the full stop), as a missing argument is named. */
function argumentLabel(a: {name?: string; description?: string}): string {
  const d = a.description?.replace(/\.$/, '')
  return d ? `${a.name!.toUpperCase()} (${d[0].toLowerCase()}${d.slice(1)})` : a.name!.toUpperCase()
}
