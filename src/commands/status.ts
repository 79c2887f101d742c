import {Flags} from '@oclif/core'
import {SkfpCommand} from '../lib/base-command.js'
import {usageError} from '../lib/errors.js'
import {resolveTool} from '../lib/exec.js'
import {requireRoot} from '../lib/host.js'
import {renderStatus} from '../lib/render.js'
import {instanceStatuses, watchStatus, type InstanceStatus} from '../lib/status.js'
import {readVerdict, type Verdict} from '../lib/doctor.js'

export default class Status extends SkfpCommand {
  static summary = 'Show what an instance has loaded and attached, its counters and sockets, from the pins only.'
  static examples = [
    '<%= config.bin %> status',
    '<%= config.bin %> status --instance lab --json',
    '<%= config.bin %> status --all',
    '<%= config.bin %> status --watch --interval 1   # counters and their rates, refreshed until Ctrl-C',
  ]
  static flags = {
    instance: Flags.string({default: 'default', description: 'Instance name.'}),
    all: Flags.boolean({default: false, description: 'Every instance under /sys/fs/bpf/skfp.'}),
    watch: Flags.boolean({default: false, description: 'Refresh the counters and show their rates per second, until Ctrl-C.'}),
    interval: Flags.integer({default: 2, min: 1, max: 3600, description: 'Seconds between refreshes with --watch.'}),
    count: Flags.integer({min: 1, description: 'With --watch: stop after this many refreshes.'}),
  }

  async run(): Promise<{instances: InstanceStatus[]; selfTest: Verdict | null} | void> {
    const {flags} = await this.parse(Status)
    requireRoot()
    resolveTool('bpftool')
    const runner = this.runner()
    if (flags.watch) {
      if (this.jsonEnabled()) throw usageError('--watch is for a terminal', 'for scripts, run `skfp status --json` at the interval you want')
      await watchStatus(runner, flags, (screen) => process.stdout.write(`${process.stdout.isTTY ? '\u001b[H\u001b[2J' : ''}${screen}\n`))
      return
    }
    const instances = await instanceStatuses(runner, flags)
    const selfTest = (await readVerdict(runner)) ?? null
    if (!this.jsonEnabled()) this.say(instances.map((s) => renderStatus(s)).join('\n\n') || 'no instance is up')
    this.say(selfTest ? `fastpath self-test of this boot: ${selfTest.fastpathSafe ? 'safe' : `hazards: ${selfTest.hazards.join('; ')}`}` : 'fastpath self-test: not run on this boot (skfp doctor)')
    return {instances, selfTest}
  }
}
