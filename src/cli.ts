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
import {Help, type Hook} from '@oclif/core'
import {usageError} from './lib/errors.js'

export {execute} from '@oclif/core'

export const COMMANDS = {bench: Bench, build: Build, demo: Demo, doctor: Doctor, down: Down, status: Status, template: Template, up: Up}

/** `skfp help [COMMAND]` is `skfp [COMMAND] --help`; `skfp NOSUCH` gets the one-line usage error
 * every other bad command line gets (exit 2). */
export const commandNotFound: Hook<'command_not_found'> = async function ({id, argv}) {
  const [first, ...rest] = id.split(':')
  const subject = [...rest, ...(argv ?? [])][0]
  if (first === 'help' && (subject === undefined || Object.hasOwn(COMMANDS, subject))) return new Help(this.config).showHelp(subject ? [subject] : [])
  const word = first === 'help' ? subject : first
  const what = word.startsWith('-') ? `unknown flag ${word} before the command` : `unknown command "${word}"`
  const err = usageError(what, `use one of ${Object.keys(COMMANDS).join(', ')}: see \`skfp --help\``)
  process.stderr.write(`skfp: ${err.line}\n`)
  this.exit(err.exitCode)
}
