import {Flags} from '@oclif/core'
import {SkfpCommand} from '../lib/base-command.js'
import {runDemo, type DemoResult} from '../lib/demo.js'
import {requireRoot} from '../lib/host.js'
import {renderStatus} from '../lib/render.js'

export default class Demo extends SkfpCommand {
  static summary = 'Show the fastpath in a throwaway sandbox (netns + child cgroup): plain TCP vs fastpath, status, down.'
  static description = 'Touches nothing of the host: everything happens in a network namespace and a child cgroup named skfp-demo, removed at the end, also on failure.'
  static examples = ['<%= config.bin %> demo', '<%= config.bin %> demo --duration 5 --json']
  static flags = {
    duration: Flags.integer({default: 3, min: 1, max: 60, description: 'Seconds per iperf3 run.'}),
  }

  async run(): Promise<DemoResult> {
    const {flags} = await this.parse(Demo)
    requireRoot()
    const result = await runDemo(this.runner(), flags.duration, (line) => this.say(line))
    this.say(`\n${renderStatus(result.status)}\n`)
    this.say(`plain ${result.plainGbps.toFixed(1)} Gbit/s → fastpath ${result.fastpathGbps.toFixed(1)} Gbit/s: ${result.ratio.toFixed(2)}×; sandbox removed: ${result.clean ? 'yes' : 'NO'}`)
    return result
  }
}
