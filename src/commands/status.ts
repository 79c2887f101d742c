import {Flags} from '@oclif/core'
import {SkfpCommand} from '../lib/base-command.js'
import {resolveTool} from '../lib/exec.js'
import {requireRoot} from '../lib/host.js'
import {listInstances, observeInstance} from '../lib/observe.js'
import {validateInstance} from '../lib/pins.js'
import {renderStatus} from '../lib/render.js'
import {statusOf, type InstanceStatus} from '../lib/status.js'
import {readVerdict, type Verdict} from '../lib/doctor.js'

export default class Status extends SkfpCommand {
  static summary = 'Show what an instance has loaded and attached, its counters and sockets, from the pins only.'
  static examples = ['<%= config.bin %> status', '<%= config.bin %> status --instance lab --json', '<%= config.bin %> status --all']
  static flags = {
    instance: Flags.string({default: 'default', description: 'Instance name.'}),
    all: Flags.boolean({default: false, description: 'Every instance under /sys/fs/bpf/skfp.'}),
  }

  async run(): Promise<{instances: InstanceStatus[]; selfTest: Verdict | null}> {
    const {flags} = await this.parse(Status)
    requireRoot()
    resolveTool('bpftool')
    const names = flags.all ? listInstances() : [validateInstance(flags.instance)]
    const runner = this.runner()
    const instances = await Promise.all(names.map(async (n) => statusOf(await observeInstance(runner, n))))
    const selfTest = (await readVerdict(runner)) ?? null
    if (!this.jsonEnabled()) this.say(instances.map(renderStatus).join('\n\n') || 'no instance is up')
    this.say(selfTest ? `fastpath self-test of this boot: ${selfTest.fastpathSafe ? 'safe' : `hazards: ${selfTest.hazards.join('; ')}`}` : 'fastpath self-test: not run on this boot (skfp doctor)')
    return {instances, selfTest}
  }
}
