/** What every skfp command shares: --verbose, --json errors, one-line errors with fixed exit codes. */
import {Command, Flags} from '@oclif/core'
import {SkfpError} from './errors.js'
import {ExecaRunner} from './exec.js'
import {defaultRenderer} from './plan.js'

export abstract class SkfpCommand extends Command {
  static enableJsonFlag = true
  static baseFlags = {
    verbose: Flags.boolean({description: 'Print every command run, and the command and stderr of a failure.', default: false, helpGroup: 'GLOBAL'}),
  }

  private verboseOn = false

  protected async init(): Promise<void> {
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

  protected async catch(err: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    if (!(err instanceof SkfpError)) {
      if (err.oclif?.exit !== 2) return super.catch(err)
      // oclif's own parse errors (unknown flag, missing value …): the same one-line usage error
      const first = err.message.split('\n')[0].replace(/^\s*›?\s*(Error:\s*)?/, '')
      return this.catch(new SkfpError('usage', first, `see \`skfp ${this.id ?? ''} --help\``.replace('  ', ' ')))
    }
    if (this.jsonEnabled()) this.logJson({error: {kind: err.kind, message: err.message, hint: err.hint, exitCode: err.exitCode, argv: err.argv ?? null}})
    process.stderr.write(`skfp: ${err.line}\n`)
    if (this.verboseOn && err.argv) process.stderr.write(`  command: ${err.argv.join(' ')}\n${err.stderrTail ? `  stderr: ${err.stderrTail.replace(/\n/g, '\n          ')}\n` : ''}`)
    process.exitCode = err.exitCode
    return undefined
  }
}
