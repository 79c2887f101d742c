/**
 * `up --follow`: after up, in the foreground until a signal or the instance's down. What `up` with
 * the same flags puts right on a running instance (the tc changes an interface took with it when it
 * was deleted, uplinks that follow the default routes to other interfaces) it puts right when the
 * kernel reports a change of a link or a route in the instance's netns (`ip monitor`), once the
 * changes have been quiet for a moment (an interface comes with its addresses and routes, DHCP with
 * several). It never brings up an instance that was taken down: that ends it.
 */
import {existsSync, mkdirSync, rmSync, statSync, watch} from 'node:fs'
import {dirname} from 'node:path'
import {conflictError, SkfpError} from './errors.js'
import {netnsPath, watchTool, type Runner} from './exec.js'
import {followMark, liveFollower, markPath} from './holder.js'
import {routingMovedText} from './intercept.js'
import {interruptSignal, interrupted, sayOnSignal} from './interrupt.js'
import {changesPutBack, upInstance, type UpOptions, type UpResult} from './lifecycle.js'
import {instancePins} from './pins.js'
import type {UpSettings} from './settings.js'
import * as ip from './tools/ip.js'
import {BusyError} from './up.js'

/** How long the links and routes must stay unchanged before the instance is looked at… */
export const QUIET_MS = 500
/** …or at most this long, where they never do (a router's routing daemon). */
export const BUSY_MS = 5000

export type FollowEnd = 'down' | 'signal'

/** One follower per instance: checked before up (which then changes nothing) and again when following. */
export function refuseSecondFollower(instance: string): {dir: string} {
  const {dir} = instancePins(instance)
  const other = liveFollower(dir)
  if (other) throw conflictError(`instance ${instance} is followed by another skfp (pid ${other})`, 'one follower is enough: stop that one first (it leaves the instance up)')
  return {dir}
}

export async function followInstance(wanted: UpSettings, opts: UpOptions, runner: Runner, say: (line: string) => void): Promise<FollowEnd> {
  const {dir} = refuseSecondFollower(wanted.instance)
  sayOnSignal('stopping to follow (an up at work is undone; the instance stays up)…')
  // one look at once: what changed between up's end and the monitor's start
  let changes = 1
  let failed: SkfpError | undefined
  let wake: (() => void) | undefined
  const monitor = watchTool(ip.monitorLinksAndRoutes(wanted.netns), () => {
    changes++
    wake?.()
  })
  monitor.ended.then((r) => {
    failed ??= new SkfpError('tool', `ip monitor stopped (exit ${r.exitCode})`, r.stderr.trim().split('\n').pop() || 'run skfp up --follow again')
    wake?.()
  })
  // a netns deleted while followed (`ip netns del`, perhaps made again by the same name): ip monitor
  // stays in the old one and hears nothing more, and nothing is left to follow
  const netnsGone = wanted.netns
    ? watchGone(netnsPath(wanted.netns), () => {
        failed ??= new SkfpError('environment', `netns ${wanted.netns} is gone: nothing is left to follow`, `\`skfp down --instance ${wanted.instance}\` removes what is left of the instance`)
        wake?.()
      })
    : undefined
  const nudge = () => wake?.()
  interruptSignal.addEventListener('abort', nudge)
  const pause = (ms?: number) =>
    new Promise<void>((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(() => resolve(), ms)
      wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  let lastError = ''
  // for status (followedBy), and for a second follower; down removes it with the directory
  const mark = markPath(dir, followMark())
  mkdirSync(mark)
  try {
    for (;;) {
      if (!changes && !interrupted() && !failed) await pause()
      // quiet: no change for QUIET_MS
      const since = Date.now()
      for (let seen = -1; seen !== changes && Date.now() - since < BUSY_MS && !interrupted() && !failed; ) {
        seen = changes
        await pause(QUIET_MS)
      }
      if (interrupted()) return 'signal'
      if (failed) throw failed
      changes = 0
      try {
        // an instance taken down stays down
        const r = await upInstance(wanted, {...opts, keepDown: true}, runner)
        if (r.action === 'down') return 'down'
        if (r.action !== 'unchanged') say(followLine(r))
        lastError = ''
      } catch (e) {
        // another up or down at work (a reload, the unit's stop): look again after it
        if (e instanceof BusyError) {
          changes++
          continue
        }
        // a refusal (an interface still gone, other settings) waits for the next change; a signal,
        // a rollback that failed or a bug ends the follow
        if (interrupted() || !(e instanceof SkfpError) || e.kind === 'partial' || e.kind === 'bug') throw e
        // the same refusal again at each change: said once
        if (e.line !== lastError) say(`skfp: ${e.line}`)
        lastError = e.line
      }
    }
  } finally {
    interruptSignal.removeEventListener('abort', nudge)
    monitor.stop()
    netnsGone?.close()
    rmSync(mark, {recursive: true, force: true})
  }
}

/** Calls gone() once the netns at path is gone: no longer there, or another one by that name (its
 * nsfs inode differs: deleted and made again); at once, or when its directory reports a change. */
function watchGone(path: string, gone: () => void): {close(): void} {
  const inode = (): number | undefined => (existsSync(path) ? statSync(path).ino : undefined)
  const first = inode()
  const check = () => {
    const now = inode()
    if (now === undefined || now !== first) gone()
  }
  const watcher = watch(dirname(path), check)
  // the directory itself removed (the last netns of a host whose /run/netns is cleaned up): so is path
  watcher.on('error', () => gone())
  check()
  return watcher
}

function followLine(r: UpResult): string {
  if (r.routingMoved) return `instance ${r.instance}: ${routingMovedText(r.routingMoved)}`
  if (r.action === 'repaired') return `instance ${r.instance}: ${changesPutBack(r)} missing change(s) put back`
  return `instance ${r.instance}: ${r.action}`
}
