import {Flags} from '@oclif/core'
import {SkfpCommand} from '../lib/base-command.js'
import {EXIT_CODES} from '../lib/errors.js'
import {parseScenarioList, runBench, saveRun} from '../lib/bench/index.js'
import {renderReport} from '../lib/bench/report.js'
import {SCENARIOS, type BenchResult} from '../lib/bench/types.js'

export default class Bench extends SkfpCommand {
  static summary = 'Benchmark loopback, Unix sockets and transparent-proxy paths, with and without the fastpath, in a throwaway sandbox.'
  static description = `Builds its own sandbox (network namespaces, a child cgroup and an instance, all named skfp-bench), runs the scenarios one after another and removes everything, also on failure or Ctrl-C. Scenarios: ${SCENARIOS.join(', ')}. Progress goes to stderr.`
  static examples = ['<%= config.bin %> bench', '<%= config.bin %> bench --duration 10 --out bench-results', '<%= config.bin %> bench --duration 1 --scenarios loopback,loopback-fastpath --json']
  static flags = {
    duration: Flags.integer({default: 5, min: 1, max: 60, description: 'Seconds per throughput run (and per connection-rate run).'}),
    scenarios: Flags.string({description: 'Comma-separated scenario names (default: all).'}),
    out: Flags.string({description: 'Directory to write bench.json and bench.svg to.'}),
  }

  async run(): Promise<BenchResult> {
    const {flags} = await this.parse(Bench)
    const scenarios = parseScenarioList(flags.scenarios)
    const result = await runBench(this.runner(), {seconds: flags.duration, scenarios, say: (line) => process.stderr.write(`${line}\n`)})
    if (flags.out) for (const file of saveRun(flags.out, result)) process.stderr.write(`wrote ${file}\n`)
    this.say(renderReport(result))
    if (result.scenarios.some((s) => 'failed' in s) || !result.clean) process.exitCode = EXIT_CODES.tool
    return result
  }
}
