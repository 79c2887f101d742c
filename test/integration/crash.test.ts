// Crash at every step: `up` and `down` SIGKILLed right after each step of their plan
// (SKFP_CRASH_AFTER), then `down` finishes the job, `up` works again, and the host is as it was.
// Signals at every step: `up` held after each step (SKFP_PAUSE_AFTER) and sent SIGINT or SIGTERM
// rolls back by itself and exits 130 / 143; `down` so interrupted finishes its work.
//
// Every case runs in a mount namespace of its own where bpffs is not mounted, as on a fresh
// machine: `up`'s plan then starts with mount-bpffs and pin-root, so those steps are crashed too,
// and no other instance on the host can change the plan. Sharing nothing, the cases run two at a time
// (vitest's maxConcurrency): 450 s one at a time, 352 s so, measured side by side on 2026-12-07. Pins there are read through
// /proc/PID/root; programs, maps and cgroup attachments are the kernel's, seen from anywhere.
import {execa, type ResultPromise} from 'execa'
import {existsSync, readFileSync, readdirSync, readlinkSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {PROJECT_ROOT} from '../../src/lib/build.js'
import {resolveTool, TRUSTED_DIRS} from '../../src/lib/exec.js'
import type {Sandbox} from '../../src/lib/sandbox.js'
import {expectedSha} from '../fixtures/transfer.mjs'
import {leftovers, requireRoot, runner, skfp, transfer, upArgs as fastpathUpArgs, withSandbox} from './helpers.js'
import {hostSnapshot} from './snapshot.js'

const UNSHARE = TRUSTED_DIRS.map((d) => join(d, 'unshare')).find((p) => existsSync(p)) ?? 'unshare (util-linux) is missing'

/** A mount namespace (held by a sleeping process) in which bpffs is unmounted. */
class FreshBpffs {
  private constructor(private readonly holder: ResultPromise) {}

  static async start(): Promise<FreshBpffs> {
    // slave: the netns mounts of the host still show up in here, nothing done in here leaks out
    const holder = execa(UNSHARE, ['--mount', '--propagation', 'slave', 'sleep', '600'], {reject: false})
    const fresh = new FreshBpffs(holder)
    // unshare execs sleep once the namespace is its own: wait for that before unmounting anything
    const own = () => readlinkSync(`/proc/${holder.pid}/ns/mnt`) !== readlinkSync('/proc/self/ns/mnt') && readlinkSync(`/proc/${holder.pid}/exe`).endsWith('/sleep')
    for (let i = 0; i < 200 && !own(); i++) await sleep(10)
    expect(own(), 'unshare did not start a mount namespace').toBe(true)
    for (let i = 0; i < 10 && fresh.bpffsMounted(); i++) await execa(resolveTool('nsenter'), [...fresh.enter, resolveTool('umount'), '/sys/fs/bpf'], {reject: false})
    expect(fresh.bpffsMounted(), 'bpffs is still mounted in the fresh mount namespace').toBe(false)
    return fresh
  }

  get enter(): string[] {
    return [`--mount=/proc/${this.holder.pid}/ns/mnt`]
  }

  /** argv prefix that runs the CLI inside the namespace. */
  get wrapper(): string[] {
    return [resolveTool('nsenter'), ...this.enter]
  }

  /** /sys/fs/bpf as the namespace sees it. */
  get bpffs(): string {
    return `/proc/${this.holder.pid}/root/sys/fs/bpf`
  }

  bpffsMounted(): boolean {
    return readFileSync(`/proc/${this.holder.pid}/mounts`, 'utf8')
      .split('\n')
      .some((line) => line.split(' ')[1] === '/sys/fs/bpf')
  }

  async stop(): Promise<void> {
    this.holder.kill('SIGKILL')
    await this.holder
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** dir itself (an empty pin root is a leftover too) and everything under it, with modes. */
function pinTree(dir: string): string[] {
  if (!existsSync(dir)) return []
  return ['.', ...readdirSync(dir, {recursive: true}).map(String)].map((p) => `${p}:${(statSync(join(dir, p)).mode & 0o777).toString(8)}`).sort()
}

/**
 * hostSnapshot with the pins of the fresh namespace, and without the host-wide program and map
 * lists (other engineers load programs on this machine at the same time): those are checked
 * through the ids this case's instance pinned (see Owned).
 */
async function snapshot(fresh: FreshBpffs, sb: Sandbox, ns: string): Promise<Record<string, unknown>> {
  const {progs: _progs, maps: _maps, pins: _pins, ...rest} = await hostSnapshot([ns], sb.cgroup)
  return {...rest, pins: pinTree(`${fresh.bpffs}/skfp`)}
}

/** Ids of every program and map the instance ever pinned in this case. */
class Owned {
  readonly progs = new Set<number>()
  readonly maps = new Set<number>()

  constructor(private readonly fresh: FreshBpffs, private readonly instance: string) {}

  async collect(): Promise<void> {
    const dir = `${this.fresh.bpffs}/skfp/${this.instance}`
    for (const [sub, kind, ids] of [['progs', 'prog', this.progs], ['maps', 'map', this.maps], ['fastpath-maps', 'map', this.maps]] as const) {
      if (!existsSync(join(dir, sub))) continue
      for (const f of readdirSync(join(dir, sub))) {
        const r = await runner.run({tool: 'bpftool', args: ['-j', kind, 'show', 'pinned', join(dir, sub, f)]})
        ids.add(JSON.parse(r.stdout).id)
      }
    }
  }

  /** Those still alive in the kernel (programs and maps are freed a moment after their last reference). */
  async alive(): Promise<string[]> {
    let left: string[] = []
    for (let i = 0; i < 50; i++) {
      const progs = JSON.parse((await runner.run({tool: 'bpftool', args: ['-j', 'prog', 'show']})).stdout) as {id: number; name: string}[]
      const maps = JSON.parse((await runner.run({tool: 'bpftool', args: ['-j', 'map', 'show']})).stdout) as {id: number; name: string}[]
      left = [...progs.filter((p) => this.progs.has(p.id)).map((p) => `prog ${p.id}:${p.name}`), ...maps.filter((m) => this.maps.has(m.id)).map((m) => `map ${m.id}:${m.name}`)]
      if (left.length === 0) return left
      await sleep(100)
    }
    return left
  }
}

/** What is left of the instance: its pins in the fresh namespace, and attachments to its cgroup. */
async function leftoversIn(fresh: FreshBpffs, sb: Sandbox): Promise<string[]> {
  const left = await leftovers(sb) // the host's bpffs: must never see this instance at all
  const dir = `${fresh.bpffs}/skfp/${sb.name}`
  if (existsSync(dir)) left.push(`pins in the fresh namespace: ${readdirSync(dir).join(',')}`)
  return left
}

interface Case {
  sb: Sandbox
  ns: string
  fresh: FreshBpffs
  cli: (args: string[], env?: Record<string, string>) => ReturnType<typeof skfp>
}

async function inFreshHost<T>(what: string, body: (c: Case) => Promise<T>): Promise<T> {
  return withSandbox(what, async (sb) => {
    const ns = await sb.addNetns('a') // before the mount namespace, so /run/netns/… is in it
    const peer = await sb.addNetns('b') // the uplink's far end: interception's steps are crashed too
    await sb.link({netns: ns, dev: 'up0', addrs: ['198.18.0.1/30', 'fd00:18::1/64']}, {netns: peer, dev: 'up0', addrs: ['198.18.0.2/30', 'fd00:18::2/64']})
    const lan = await sb.addNetns('c') // a LAN client's side: --lan's steps too
    await sb.link({netns: ns, dev: 'lan0', addrs: ['198.18.4.1/24']}, {netns: lan, dev: 'eth0', addrs: ['198.18.4.2/24']})
    const fresh = await FreshBpffs.start()
    try {
      return await body({sb, ns, fresh, cli: (args, env = {}) => skfp(args, env, fresh.wrapper)})
    } finally {
      // a failed case may leave pins in there: they go with the namespace, attachments with the cgroup
      await fresh.stop()
    }
  })
}

/** The step ids of up's plan on a fresh host, of down's plan on a running instance, and of up's plan
 * that attaches the (adaptive) fastpath to an instance up with it off. */
async function planIds(): Promise<{up: string[]; down: string[]; attach: string[]}> {
  requireRoot()
  return inFreshHost('cp', async ({sb, ns, cli}) => {
    const ids = (plan: {id: string}[]) => plan.map((s) => s.id)
    const dryUp = await cli([...upArgs(sb, ns), '--dry-run'])
    expect(dryUp.exitCode, dryUp.stderr).toBe(0)
    const up = await cli(upArgs(sb, ns))
    expect(up.exitCode, up.stderr).toBe(0)
    const dryDown = await cli(['down', '--instance', sb.name, '--dry-run', '--json'])
    expect(dryDown.exitCode, dryDown.stderr).toBe(0)
    const down = await cli(['down', '--instance', sb.name, '--json'])
    expect(down.exitCode, down.stderr).toBe(0)
    expect((await cli(upArgs(sb, ns, 'off'))).exitCode).toBe(0)
    const dryAttach = await cli([...upArgs(sb, ns, 'on'), '--dry-run'])
    expect(dryAttach.exitCode, dryAttach.stderr).toBe(0)
    expect((await cli(['down', '--instance', sb.name])).exitCode).toBe(0)
    return {up: ids(dryUp.json.plan), down: ids(dryDown.json.instances[0].plan), attach: ids(dryAttach.json.plan)}
  })
}

/** up with the fastpath (every reader, or `fastpath`) and interception (TCP and UDP) on the veth
 * uplink and a LAN: every kind of step skfp has. */
function upArgs(sb: Sandbox, ns: string, fastpath = 'all'): string[] {
  return fastpathUpArgs(sb, ns, ['--proxy-port', '7893', '--proxy-mark', '255', '--uplink', 'up0', '--lan', 'lan0']).map((a) => (a === 'all' ? fastpath : a))
}

const PLANS = await planIds()
const survived: string[] = []

/** After the crash and the `down` that cleaned it: up works (real traffic on the fastpath), down leaves nothing. */
async function upWorksThenDownLeavesNothing(c: Case, owned: Owned, before: Record<string, unknown>, label: string): Promise<void> {
  const {sb, ns, fresh, cli} = c
  expect(await leftoversIn(fresh, sb), label).toEqual([])
  const up = await cli(upArgs(sb, ns))
  expect(up.exitCode, `${label}: up after the crash: ${up.stderr}`).toBe(0)
  expect(up.json.action).toBe('created')
  await owned.collect()
  expect(owned.progs.size, 'the ids of the instance are known').toBeGreaterThanOrEqual(2)
  const r = await transfer(sb, ns, ['pair', '--addr', '127.0.0.1', '--port', '0', '--bytes', String(1 << 20), '--seed', label])
  expect(r.serverReceivedSha, label).toBe(expectedSha(`${label}-up`, 1 << 20))
  expect(r.clientReceivedSha, label).toBe(expectedSha(`${label}-down`, 1 << 20))
  const s = (await cli(['status', '--instance', sb.name, '--json'])).json.instances[0]
  expect(s.state, label).toBe('up')
  expect(s.counters.socketsAdded, label).toBe(2)
  expect(s.counters.bytesRedirected, label).toBeGreaterThan(0)
  const down = await cli(['down', '--instance', sb.name, '--json'])
  expect(down.exitCode, `${label}: final down: ${down.stderr}`).toBe(0)
  expect(await leftoversIn(fresh, sb), label).toEqual([])
  expect(await snapshot(fresh, sb, ns), label).toEqual(before)
  expect(await owned.alive(), `${label}: programs and maps of the instance still in the kernel`).toEqual([])
  survived.push(label)
}

/** Runs the CLI in the fresh namespace held after `step`, sends it `signal` once it says so, returns its result. */
async function signalledAt(c: Case, args: string[], step: string, signal: NodeJS.Signals) {
  const argv = [...c.fresh.wrapper, process.execPath, join(PROJECT_ROOT, 'bin', 'run.js'), ...args]
  const child = execa(argv[0], argv.slice(1), {reject: false, env: {NODE_ENV: 'production', SKFP_PAUSE_AFTER: `${step}:60000`}, timeout: 120_000})
  let stderr = ''
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d) => {
      stderr += String(d)
      if (stderr.includes(`skfp: paused after ${step}`)) resolve()
    })
    child.on('exit', () => reject(new Error(`exited before the pause after ${step}: ${stderr}`)))
  })
  child.kill(signal)
  const r = await child
  return {exitCode: r.exitCode ?? -1, stderr: String(r.stderr)}
}

describe.concurrent('signals at every step', () => {
  it.each(PLANS.up.map((step, i) => [step, i % 2 ? 'SIGTERM' : 'SIGINT'] as const))('up sent %s … %s: rolls back by itself, exits with the documented code, nothing is left', async (step, signal) => {
    await inFreshHost('su', async (c) => {
      const {sb, ns, fresh, cli} = c
      const before = await snapshot(fresh, sb, ns)
      const r = await signalledAt(c, upArgs(sb, ns), step, signal)
      expect(r.exitCode, r.stderr).toBe(signal === 'SIGINT' ? 130 : 143)
      expect(r.stderr).toContain(`stopped by ${signal}`)
      const s = (await cli(['status', '--instance', sb.name, '--json'])).json.instances[0]
      expect(s.state, `status after ${signal} after ${step}`).toBe('down')
      expect(await leftoversIn(fresh, sb)).toEqual([])
      // the first steps mount bpffs and create the pin root, which stay (as after any down)
      const {pins: _p, ...now} = await snapshot(fresh, sb, ns)
      const {pins: _q, ...then} = before
      expect(now).toEqual(then)
      expect(pinTree(`${fresh.bpffs}/skfp`).filter((p) => !p.startsWith('.:'))).toEqual([])
    })
  })

  it.each(['kill-switch', 'undo-sockops'])('down sent SIGINT after %s: finishes, nothing is left', async (step) => {
    await inFreshHost('sd', async (c) => {
      const {sb, ns, fresh, cli} = c
      const before = await snapshot(fresh, sb, ns)
      expect((await cli(upArgs(sb, ns))).exitCode).toBe(0)
      const r = await signalledAt(c, ['down', '--instance', sb.name], step, 'SIGINT')
      expect(r.exitCode, r.stderr).toBe(0)
      expect(await leftoversIn(fresh, sb)).toEqual([])
      expect(await snapshot(fresh, sb, ns)).toEqual(before)
    })
  })
})

describe.concurrent('crash at every step', () => {
  afterAll(() => {
    process.stderr.write(`crash.test: survived ${survived.length} crashes: ${survived.join(', ')}\n`)
  })

  it('the plans have the expected shape', () => {
    expect(PLANS.up.slice(0, 2), 'a fresh host: up mounts bpffs and creates the pin root first').toEqual(['mount-bpffs', 'pin-root'])
    expect(PLANS.up).toEqual(expect.arrayContaining(['lock', 'load', 'record', 'msg-verdict', 'sockops']))
    expect(PLANS.up.slice(PLANS.up.indexOf('sockops') + 1)).toEqual([
      'sysctl-net.ipv4.conf.lo.accept_local',
      'rule-v4',
      'route-v4',
      'rule-v6',
      'route-v6',
      'qdisc-lo',
      'tc-filter-lo-ingress',
      'qdisc-up0',
      'tc-filter-up0-egress',
      'tc-filter-up0-ingress',
      'qdisc-lan0',
      'tc-filter-lan0-ingress',
      'release',
    ])
    // down marks the instance first (another skfp then sees who is at work), unpins last
    expect(PLANS.down.slice(0, 2)).toEqual(['hold', 'kill-switch'])
    expect(PLANS.down.at(-1)).toBe('unpin')
  })

  it.each(PLANS.up)('up killed after %s: down cleans it, up works again, nothing is left', async (step) => {
    await inFreshHost('cu', async (c) => {
      const {sb, ns, fresh, cli} = c
      const owned = new Owned(fresh, sb.name)
      const before = await snapshot(fresh, sb, ns)
      const crashed = await cli(upArgs(sb, ns), {SKFP_CRASH_AFTER: step})
      expect(crashed.exitCode, `up must be killed after ${step}: ${crashed.stderr}`).toBe(-1)
      await owned.collect()
      const s = (await cli(['status', '--instance', sb.name, '--json'])).json.instances[0]
      // after its last change the instance is up (the mark left by a process that is gone means nothing)
      const complete = PLANS.up.indexOf(step) >= PLANS.up.length - 2
      expect(s.state, `status after a crash after ${step}`).toBe(complete ? 'up' : PLANS.up.indexOf(step) < PLANS.up.indexOf('lock') ? 'down' : 'half-up')
      if (s.state === 'half-up') {
        expect(s.changingBy, 'the killed run is gone: its mark means nothing').toBeNull()
        const again = await cli(upArgs(sb, ns))
        if (PLANS.up.indexOf(step) >= PLANS.up.indexOf('route-v6')) {
          // killed among its tc steps: only tc changes are missing, and up puts them back
          expect(again.json?.action, again.stderr).toBe('repaired')
          expect((await cli(['status', '--instance', sb.name, '--json'])).json.instances[0]).toMatchObject({state: 'up', problems: []})
        } else {
          expect(again.exitCode, 'up on a half-up instance is refused').toBe(4)
          expect(again.stderr).toMatch(/half up.*skfp down/)
        }
      }
      const down = await cli(['down', '--instance', sb.name, '--json'])
      expect(down.exitCode, `down after a crash after ${step}: ${down.stderr}`).toBe(0)
      // nothing of skfp is left in bpffs either (an empty /sys/fs/bpf/skfp is a leftover for host-clean)
      expect(pinTree(`${fresh.bpffs}/skfp`), `pins after down of a crash after ${step}`).toEqual(before.pins)
      await upWorksThenDownLeavesNothing(c, owned, before, `up/${step}`)
    })
  })

  it.each(PLANS.down)('down killed after %s: down again finishes, up works again, nothing is left', async (step) => {
    await inFreshHost('cd', async (c) => {
      const {sb, ns, fresh, cli} = c
      const owned = new Owned(fresh, sb.name)
      const before = await snapshot(fresh, sb, ns)
      const up = await cli(upArgs(sb, ns))
      expect(up.exitCode, up.stderr).toBe(0)
      await owned.collect()
      const crashed = await cli(['down', '--instance', sb.name, '--json'], {SKFP_CRASH_AFTER: step})
      expect(crashed.exitCode, `down must be killed after ${step}: ${crashed.stderr}`).toBe(-1)
      const s = (await cli(['status', '--instance', sb.name, '--json'])).json.instances[0]
      if (step === 'hold') expect(s).toMatchObject({state: 'up', changingBy: null, fastpath: {enabled: true}})
      else if (step === 'kill-switch') {
        expect(s.state).toBe('up')
        expect(s.fastpath.enabled, 'the kill switch is off after a crash right after it').toBe(false)
      } else expect(s.state, `status after a crash after ${step}`).toBe(step === PLANS.down.at(-1) ? 'down' : 'half-up')
      const again = await cli(['down', '--instance', sb.name, '--json'])
      expect(again.exitCode, `down after a crash of down after ${step}: ${again.stderr}`).toBe(0)
      expect(pinTree(`${fresh.bpffs}/skfp`), `pins after down of a crashed down after ${step}`).toEqual(before.pins)
      await upWorksThenDownLeavesNothing(c, owned, before, `down/${step}`)
    })
  })
})

describe('down --all beside an up at work', () => {
  it('refuses before it takes any instance down, naming the one being changed; once that up is stopped, it removes both', async () => {
    await inFreshHost('cw', async (c) => {
      const {sb, ns, fresh, cli} = c
      const before = await snapshot(fresh, sb, ns)
      expect((await cli(upArgs(sb, ns))).exitCode).toBe(0)
      const dir = `${fresh.bpffs}/skfp/${sb.name}`
      const idle = {pins: pinTree(dir), status: (await cli(['status', '--instance', sb.name, '--json'])).json.instances[0]}
      // sorted after the idle one: without the check up front, down --all would take that down first
      const busy = `${sb.name}-z`
      const argv = [process.execPath, join(PROJECT_ROOT, 'bin', 'run.js'), 'up', '--instance', busy, '--netns', ns, '--cgroup', sb.cgroup, '--fastpath', 'off', '--json']
      const up = execa(fresh.wrapper[0], [...fresh.wrapper.slice(1), ...argv], {reject: false, env: {NODE_ENV: 'production', SKFP_PAUSE_AFTER: 'lock:60000'}})
      await new Promise<void>((resolve, reject) => {
        let err = ''
        up.stderr!.on('data', (d) => (err += String(d)).includes('skfp: paused after lock') && resolve())
        up.on('exit', () => reject(new Error(`up exited before its pause: ${err}`)))
      })
      const refused = await cli(['down', '--all'])
      expect(refused.exitCode, refused.stderr).toBe(4)
      expect(refused.stderr.trim()).toMatch(new RegExp(`^skfp: instance ${busy} is being changed by another skfp \\(pid \\d+\\): wait for it to finish`))
      expect(pinTree(dir), 'the idle instance is untouched').toEqual(idle.pins)
      expect((await cli(['status', '--instance', sb.name, '--json'])).json.instances[0]).toEqual(idle.status)
      up.kill('SIGTERM')
      expect((await up).exitCode).toBe(143)
      const down = await cli(['down', '--all', '--json'])
      expect(down.exitCode, down.stderr).toBe(0)
      expect(down.json.instances.map((i: {instance: string}) => i.instance)).toEqual([sb.name])
      expect(await leftoversIn(fresh, sb)).toEqual([])
      expect(await snapshot(fresh, sb, ns)).toEqual(before)
    })
  })
})

describe.concurrent('the fastpath attached in place', () => {
  it('the plan has the expected shape', () => {
    expect(PLANS.attach).toEqual(['load', 'record', 'msg-verdict', 'fin-hold', 'sockops', 'release'])
  })

  it.each(PLANS.attach)('up --fastpath on, of an instance up with it off, sent SIGINT after %s rolls back to it; killed there, down cleans it', async (step) => {
    await inFreshHost('ca', async (c) => {
      const {sb, ns, fresh, cli} = c
      const owned = new Owned(fresh, sb.name)
      const before = await snapshot(fresh, sb, ns)
      const dir = `${fresh.bpffs}/skfp/${sb.name}`
      const state = async () => (await cli(['status', '--instance', sb.name, '--json'])).json.instances[0]
      expect((await cli(upArgs(sb, ns, 'off'))).exitCode).toBe(0)
      const off = {pins: pinTree(dir), status: await state()}
      expect(off.status.programs).toEqual({sockops: null, skMsg: null, finHold: null})

      const r = await signalledAt(c, upArgs(sb, ns, 'on'), step, 'SIGINT')
      expect(r.exitCode, r.stderr).toBe(130)
      const back = await state()
      expect(back, `status after SIGINT after ${step}`).toMatchObject({state: 'up', fastpath: {enabled: false, variant: null}, programs: off.status.programs})
      expect(pinTree(dir), `pins after SIGINT after ${step}`).toEqual(off.pins)

      const crashed = await cli(upArgs(sb, ns, 'on'), {SKFP_CRASH_AFTER: step})
      expect(crashed.exitCode, `up must be killed after ${step}: ${crashed.stderr}`).toBe(-1)
      await owned.collect()
      const s = await state()
      expect(s.state, `status after a crash after ${step}: ${s.problems}`).toBe(PLANS.attach.indexOf(step) >= PLANS.attach.length - 2 ? 'up' : 'half-up')
      const down = await cli(['down', '--instance', sb.name, '--json'])
      expect(down.exitCode, `down after a crash after ${step}: ${down.stderr}`).toBe(0)
      expect(await leftoversIn(fresh, sb)).toEqual([])
      expect(await snapshot(fresh, sb, ns)).toEqual(before)
      expect(await owned.alive(), `${step}: programs and maps of the instance still in the kernel`).toEqual([])
    })
  })
})
