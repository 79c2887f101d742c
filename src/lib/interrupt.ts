/**
 * Ctrl-C (SIGINT) and SIGTERM: recorded, never fatal by themselves. The work in progress stops at
 * its next step (a plan's step, a self-test probe, a demo or bench step), undoes or removes what it
 * made, and the command exits 130 (SIGINT) or 143 (SIGTERM). Programs skfp started for a test or a
 * measurement are stopped at once; a second signal only says that the clean-up is still going on.
 */
import {SkfpError} from './errors.js'

const controller = new AbortController()
let received: NodeJS.Signals | undefined
let installed = false
let stopping = 'stopping, then undoing what was done…'

/** What the first signal is said to do, where that is not undoing (up --follow leaves the instance up). */
export function sayOnSignal(text: string): void {
  stopping = text
}

/** Aborted on the first signal: long-running programs (probes, iperf3, proxies) are killed with it. */
export const interruptSignal: AbortSignal = controller.signal

export function installSignalHandlers(say: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): void {
  if (installed) return
  installed = true
  const handle = (signal: NodeJS.Signals) => {
    if (received) {
      say(`skfp: ${signal}: still undoing what was done; wait for it`)
      return
    }
    received = signal
    say(`skfp: ${signal}: ${stopping}`)
    controller.abort()
  }
  process.on('SIGINT', handle)
  process.on('SIGTERM', handle)
}

export const interrupted = (): NodeJS.Signals | undefined => received

export function interruptedError(signal: NodeJS.Signals): SkfpError {
  return new SkfpError(signal === 'SIGTERM' ? 'terminated' : 'interrupted', `stopped by ${signal}`, 'what this run had changed has been undone')
}

/** Called between steps: stop here when a signal came. */
export function throwIfInterrupted(): void {
  if (received) throw interruptedError(received)
}

/** A pause that ends early on a signal. */
export function interruptibleSleep(ms: number): Promise<void> {
  return new Promise((resolve) => {
    if (received) return resolve()
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      interruptSignal.removeEventListener('abort', done)
      resolve()
    }
    interruptSignal.addEventListener('abort', done, {once: true})
  })
}
