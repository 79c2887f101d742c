import {Flags} from '@oclif/core'
import {SkfpCommand} from '../lib/base-command.js'
import {build, type BuildResult} from '../lib/build.js'
import {resolveTool} from '../lib/exec.js'

export default class Build extends SkfpCommand {
  static summary = 'Compile the BPF datapath (bpf/*.bpf.c) and the helper programs (probes/*.c with clang, probes/*/main.go with Go if installed).'
  static examples = ['<%= config.bin %> build', '<%= config.bin %> build --debug']
  static flags = {
    target: Flags.string({options: ['bpfel', 'bpfeb'], default: 'bpfel', description: 'BPF byte order: bpfel (x86, arm64) or bpfeb.'}),
    debug: Flags.boolean({default: false, description: 'Compile in tracing output (bpf_printk) into build/<target>-debug/.'}),
  }

  async run(): Promise<BuildResult> {
    const {flags} = await this.parse(Build)
    resolveTool('clang')
    const result = await build(this.runner(), {target: flags.target as 'bpfel' | 'bpfeb', debug: flags.debug})
    for (const o of [...result.objects, ...result.programs]) this.say(`${o.rebuilt ? 'built' : 'up to date'}  ${o.output}`)
    for (const s of result.skipped) this.say(`skipped  ${s.source}: ${s.reason}`)
    return result
  }
}
