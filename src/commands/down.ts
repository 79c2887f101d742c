import {Flags} from '@oclif/core'
import {SkfpCommand} from '../lib/base-command.js'
import {renderPlan} from '../lib/render.js'
import {downInstances, type DownResult} from '../lib/teardown.js'
import {validateInstance} from '../lib/pins.js'

export default class Down extends SkfpCommand {
  static summary = 'Detach and unpin everything an instance added, from its pins alone.'
  static description = 'Succeeds when nothing is up, and finishes a half-done up or down. Live fastpath connections keep working on the unpinned programs until they close; no data is dropped.'
  static examples = ['<%= config.bin %> down', '<%= config.bin %> down --instance lab', '<%= config.bin %> down --all --dry-run']
  static flags = {
    instance: Flags.string({default: 'default', description: 'Instance name.'}),
    all: Flags.boolean({default: false, description: 'Every instance under /sys/fs/bpf/skfp.'}),
    'dry-run': Flags.boolean({default: false, description: 'Print every command it would run; change nothing.'}),
  }

  async run(): Promise<DownResult> {
    const {flags} = await this.parse(Down)
    const result = await downInstances({instance: validateInstance(flags.instance), all: flags.all}, this.planOptions(flags['dry-run']), this.runner())
    for (const i of result.instances) {
      if (result.dryRun) this.say(renderPlan(i.plan))
      else this.say(i.wasState === 'down' ? `instance ${i.instance} was not up` : `instance ${i.instance} is down`)
    }
    return result
  }
}
