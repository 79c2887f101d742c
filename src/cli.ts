/**
 * The whole CLI as one module, which scripts/bundle.mjs turns into dist/cli.js with its dependencies:
 * bin/run.js runs `execute`, and oclif takes the commands from COMMANDS (package.json's "explicit"
 * strategy) instead of importing every file of dist/commands. One file loads in a fraction of the time
 * of the ~370 modules it replaces; in the kernel matrix's emulated VMs that is seconds per CLI run.
 */
import Bench from './commands/bench.js'
import Build from './commands/build.js'
import Demo from './commands/demo.js'
import Doctor from './commands/doctor.js'
import Down from './commands/down.js'
import Status from './commands/status.js'
import Template from './commands/template.js'
import Up from './commands/up.js'

export {execute} from '@oclif/core'

export const COMMANDS = {bench: Bench, build: Build, demo: Demo, doctor: Doctor, down: Down, status: Status, template: Template, up: Up}
