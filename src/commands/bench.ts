import {Flags} from '@oclif/core'
import {SkfpCommand} from '../lib/base-command.js'
import {EXIT_CODES} from '../lib/errors.js'
import {parseScenarioList, runBench, saveRun} from '../lib/bench/index.js'
import {renderReport} from '../lib/bench/report.js'
import {parseMinutes, runSoak, type SoakResult} from '../lib/bench/soak.js'
import {renderSoak, saveSoak} from '../lib/bench/soak-report.js'
import {APP_SCENARIOS, SCENARIOS, UDP_SCENARIOS, type BenchResult} from '../lib/bench/types.js'

export default class Bench extends SkfpCommand {
  static summary = 'Benchmark loopback, Unix sockets and transparent-proxy paths, with and without the fastpath, in a throwaway sandbox.'
  static description = `Builds its own sandbox (network namespaces, a child cgroup and an instance, all named skfp-bench), runs the scenarios one after another and removes everything, also on failure or Ctrl-C. Scenarios: ${SCENARIOS.join(', ')}; UDP (datagrams through v2ray, loss counted): ${UDP_SCENARIOS.join(', ')}; real applications (requests/s plain, with skfp's defaults and with --fastpath on): ${APP_SCENARIOS.join(', ')}. With --soak, runs only the soak instead: interception + fastpath + a relay under a mixed load, sampling socket, sockhash and BPF memory, with a leak verdict. Progress goes to stderr.`
  static examples = [
    '<%= config.bin %> bench',
    '<%= config.bin %> bench --duration 10 --out bench-results',
    '<%= config.bin %> bench --duration 1 --runs 1 --scenarios loopback,loopback-fastpath --json',
    '<%= config.bin %> bench --soak 10 --out soak-results',
  ]
  static flags = {
    duration: Flags.integer({default: 5, min: 1, max: 60, description: 'Seconds per throughput run (and per connection-rate run).'}),
    runs: Flags.integer({default: 3, min: 1, max: 9, description: 'Rounds: unpinned throughput runs per scenario, each round taking every scenario in turn (the applications rotate their three modes); the table and the ratios use the median.'}),
    scenarios: Flags.string({description: 'Comma-separated scenario names (default: all).'}),
    out: Flags.string({description: 'Directory to write bench.json and bench.svg to (soak.json and soak.svg with --soak).'}),
    soak: Flags.string({description: 'Run only the soak, for this many minutes (fractions allowed), instead of the scenarios.', exclusive: ['scenarios', 'duration', 'runs']}),
  }

  async run(): Promise<BenchResult | SoakResult> {
    const {flags} = await this.parse(Bench)
    const say = (line: string) => process.stderr.write(`${line}\n`)
    if (flags.soak !== undefined) {
      const result = await runSoak(this.runner(), {minutes: parseMinutes(flags.soak), say})
      if (flags.out) for (const file of saveSoak(flags.out, result)) say(`wrote ${file}`)
      this.say(renderSoak(result))
      if (result.errors > 0 || result.leak || !result.clean) process.exitCode = EXIT_CODES.tool
      return result
    }
    const scenarios = parseScenarioList(flags.scenarios)
    const result = await runBench(this.runner(), {seconds: flags.duration, runs: flags.runs, scenarios, say})
    if (flags.out) for (const file of saveRun(flags.out, result)) say(`wrote ${file}`)
    this.say(renderReport(result))
    if (result.scenarios.some((s) => 'failed' in s) || !result.clean) process.exitCode = EXIT_CODES.tool
    return result
  }
}
