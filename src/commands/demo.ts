import {Flags} from '@oclif/core'
import {SkfpCommand} from '../lib/base-command.js'
import {defaultRenderer} from '../lib/plan.js'
import {DEMO_NAME, runDemo, type DemoResult} from '../lib/demo.js'
import {requireRoot} from '../lib/host.js'
import {renderStatus} from '../lib/render.js'

export default class Demo extends SkfpCommand {
  static summary = 'Show the whole product in a throwaway sandbox: the fastpath against plain TCP, and interception through v2ray.'
  static description = `Touches nothing of the host: everything happens in network namespaces and a child cgroup named ${DEMO_NAME}, removed at the end, also on failure and Ctrl-C. One line per step on stderr; --json prints the figures, the proxy's log line and the skfp up line for a real host.`
  static examples = ['<%= config.bin %> demo', '<%= config.bin %> demo --duration 5 --json']
  static flags = {
    duration: Flags.integer({default: 3, min: 1, max: 60, description: 'Seconds per iperf3 run.'}),
    name: Flags.string({default: DEMO_NAME, description: 'Name of the sandbox and its instances ([a-z0-9-], at most 29 characters).'}),
  }

  async run(): Promise<DemoResult> {
    const {flags} = await this.parse(Demo)
    requireRoot()
    const result = await runDemo(this.runner(), {seconds: flags.duration, name: flags.name, renderer: defaultRenderer(this.jsonEnabled())})
    this.say(`\n${renderStatus(result.status)}\n`)
    const i = result.intercept
    this.say(`fastpath: plain ${result.plainGbps.toFixed(1)} Gbit/s → ${result.fastpathGbps.toFixed(1)} Gbit/s (${result.ratio.toFixed(2)}×)`)
    this.say(`interception: ${i.requests} requests to ${i.originalDestination} through v2ray; ${i.plainGbps.toFixed(2)} Gbit/s through it${i.fastpathGbps === null ? '' : `, ${i.fastpathGbps.toFixed(2)} with the fastpath`}`)
    this.say(`on a real host: ${i.upLine}`)
    this.say(`sandbox removed: ${result.clean ? 'yes' : 'NO'}`)
    return result
  }
}
