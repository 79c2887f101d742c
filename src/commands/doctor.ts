import {Flags} from '@oclif/core'
import {SkfpCommand} from '../lib/base-command.js'
import {checkEnvironment, type EnvironmentCheck} from '../lib/environment.js'
import {datapathSupport, ensureVerdict} from '../lib/lifecycle.js'
import {kernelReport, type KernelReport} from '../lib/datapath.js'
import type {Verdict} from '../lib/doctor.js'
import {renderKernelReport, renderVerdict} from '../lib/render.js'

export default class Doctor extends SkfpCommand {
  static summary = 'Check the host, and run the kernel self-test of the fastpath in a throwaway sandbox.'
  static description = 'The self-test loads the datapath exactly as `up` does, in a network namespace and a child cgroup, and runs each hazard probe over plain TCP and through the fastpath. Its verdict is pinned in bpffs for the current boot; `up --fastpath auto` follows it.'
  static examples = ['<%= config.bin %> doctor', '<%= config.bin %> doctor --rerun --json']
  static flags = {
    rerun: Flags.boolean({default: false, description: 'Run the self-test again even if this boot has a verdict.'}),
  }

  async run(): Promise<{checks: EnvironmentCheck[]; kernel: KernelReport; verdict: Verdict}> {
    const {flags} = await this.parse(Doctor)
    const runner = this.runner()
    const checks = checkEnvironment()
    for (const c of checks) this.say(`${c.ok ? 'ok  ' : 'FAIL'}  ${c.name}${c.ok ? '' : `: ${c.hint}`}`)
    const support = await datapathSupport(runner)
    const kernel = kernelReport(support)
    this.say(renderKernelReport(kernel))
    const verdict = await ensureVerdict(runner, {rerun: flags.rerun, log: (line) => this.say(line)}, support)
    this.say(renderVerdict(verdict))
    return {checks, kernel, verdict}
  }
}
