/**
 * Who is changing an instance right now. An `up` or `down` marks the instance directory with a
 * directory of its own, `held-by-PID-START` (START: the process's start time in clock ticks since boot,
 * from /proc/PID/stat, so a reused pid is never taken for it), in the same step that takes the lock,
 * and removes it at the end. A mark whose process is gone (a crash) means nothing: the instance is
 * then half up, for `down`. Another skfp that finds a live mark says who is working and to wait,
 * instead of calling the instance half up. A mark made in another pid namespace (a container without
 * the host's pids) looks gone from here: then it is the half-up message, as before.
 */
import {readdirSync, readFileSync} from 'node:fs'

const MARK = /^held-by-(\d+)-(\d+)$/

/** The process's start time (field 22 of /proc/PID/stat), or undefined when it is gone (or a
 * zombie: it has exited, its parent has not reaped it yet). */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // the command name (field 2) is in parentheses and may hold spaces or parentheses itself
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return fields[0] === 'Z' || fields[0] === 'X' ? undefined : fields[19]
  } catch {
    return undefined
  }
}

/** This process's mark: a directory name under the instance directory. */
export const holdMark = (pid = process.pid): string => processMark('held-by', pid)

function processMark(kind: 'held-by' | 'followed-by', pid: number): string {
  const start = processStart(pid)
  if (start === undefined) throw new Error(`cannot read /proc/${pid}/stat`)
  return `${kind}-${pid}-${start}`
}

/** Where a run's mark goes in an instance directory. */
export const markPath = (dir: string, mark: string) => `${dir}/${mark}`

/** The pid of another live process that marked this instance directory, if any. */
export const liveHolder = (dir: string): number | undefined => liveMarker(dir, MARK)

/** `up --follow` marks the instance directory as long as it follows, `followed-by-PID-START`: for
 * status, and so that a second follower is refused. `down` removes it with the directory. */
const FOLLOW_MARK = /^followed-by-(\d+)-(\d+)$/

export const followMark = (pid = process.pid): string => processMark('followed-by', pid)

/** The pid of another live process that follows this instance, if any. */
export const liveFollower = (dir: string): number | undefined => liveMarker(dir, FOLLOW_MARK)

function liveMarker(dir: string, mark: RegExp): number | undefined {
  let entries: string[]
  try {
    entries = readdirSync(dir)
  } catch {
    return undefined
  }
  for (const name of entries) {
    const m = mark.exec(name)
    if (!m) continue
    const pid = Number(m[1])
    if (pid !== process.pid && processStart(pid) === m[2]) return pid
  }
  return undefined
}
