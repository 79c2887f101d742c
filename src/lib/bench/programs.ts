/**
 * Programs the benchmark runs besides skfp's own tools. iptables and taskset are not in exec.ts's
 * TOOLS (nothing else in skfp runs them), so they are resolved here the same way: absolute paths
 * in the trusted system directories only.
 */
import {accessSync, constants} from 'node:fs'
import {environmentError} from '../errors.js'
import {TRUSTED_DIRS} from '../exec.js'

const PACKAGES = {iptables: 'iptables', taskset: 'util-linux'} as const

export function program(name: keyof typeof PACKAGES): string {
  for (const dir of TRUSTED_DIRS) {
    try {
      accessSync(`${dir}/${name}`, constants.X_OK)
      return `${dir}/${name}`
    } catch {
      // not in this directory
    }
  }
  throw environmentError(`${name} not found in ${TRUSTED_DIRS.join(':')}`, `install it: apt-get install ${PACKAGES[name]}`)
}

/** Whether a resolver finds its program (a scenario that needs a missing one is skipped, not failed). */
export function installed(resolve: () => string): boolean {
  try {
    resolve()
    return true
  } catch {
    return false
  }
}
