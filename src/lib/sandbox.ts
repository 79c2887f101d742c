/**
 * Throwaway network namespaces and a child cgroup, for the demo, the kernel self-test, the
 * benchmarks and the tests: nothing is ever attached to the host's interfaces or root cgroup.
 * Everything is named with the sandbox's prefix, so a sweep finds leftovers of a crashed run.
 */
import {existsSync, mkdirSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {programPath} from './root.js'
import {ownNetns, startProgram, runProgram, netnsPath, type Runner, type RunResult} from './exec.js'
import {cgroup2Mount} from './host.js'
import {downInstances} from './teardown.js'
import {listInstances} from './observe.js'
import {liveHolder, processStart} from './holder.js'
import {instancePins} from './pins.js'
import * as ip from './tools/ip.js'
import * as sysctl from './tools/sysctl.js'

type Child = ReturnType<typeof startProgram>

/** Every sandbox name starts with it: the sweep of leftovers removes every namespace, root-level
 * cgroup and temp dir whose name starts with a sandbox's name, so a name like "system" would take
 * system.slice with it. */
export const SANDBOX_PREFIX = 'skfp-'

/** Where sandboxes keep their files (under the temp dir). */
const FILES = 'skfp-sandboxes'

/** Whether name may name a sandbox: SANDBOX_PREFIX and something after it. */
export const isSandboxName = (name: string): boolean => name.startsWith(SANDBOX_PREFIX) && name.length > SANDBOX_PREFIX.length

function checkName(name: string): void {
  if (!isSandboxName(name)) throw new Error(`sandbox name ${JSON.stringify(name)} does not start with ${SANDBOX_PREFIX}`)
}

export class Sandbox {
  readonly cgroup: string
  private readonly children: Child[] = []

  private constructor(readonly name: string, readonly runner: Runner) {
    const root = cgroup2Mount()
    if (!root) throw new Error('no cgroup v2 mount')
    this.cgroup = join(root, name)
  }

  /** A sandbox named NAME: cgroup NAME and namespaces NAME-<suffix>; also the skfp instance name. */
  static async create(runner: Runner, name: string): Promise<Sandbox> {
    checkName(name)
    const sb = new Sandbox(name, runner)
    mkdirSync(sb.cgroup)
    return sb
  }

  /** A file of the sandbox (a proxy's config, its log): in the sandbox's own directory under the
   * temp dir, removed with the sandbox (and by the sweep of a crashed run's leftovers). */
  file(name: string): string {
    const dir = join(tmpdir(), FILES, this.name)
    mkdirSync(dir, {recursive: true})
    return join(dir, name)
  }

  /** A new namespace with lo up. */
  async addNetns(suffix: string): Promise<string> {
    const ns = `${this.name}-${suffix}`
    await this.runner.run(ip.netnsAdd(ns))
    await this.runner.run(ip.linkUp('lo', ns))
    return ns
  }

  /** Deletes one of the sandbox's namespaces (with its veth ends and whatever sockets it still held). */
  async removeNetns(ns: string): Promise<void> {
    await this.runner.run(ip.netnsDel(ns), {allowFailure: true})
  }

  /** A veth pair between two of the sandbox's namespaces, with addresses (CIDR lists) on each end. */
  async link(a: {netns: string; dev: string; addrs: string[]}, b: {netns: string; dev: string; addrs: string[]}): Promise<void> {
    await this.runner.run(ip.vethAdd(a.dev, b.dev, b.netns, a.netns))
    for (const end of [a, b]) {
      // no duplicate address detection: link-local addresses and their routes exist at once,
      // instead of appearing a moment later in the middle of a test
      await this.runner.run(sysctl.set(`net.ipv6.conf.${end.dev}.accept_dad`, '0', end.netns))
      for (const cidr of end.addrs) await this.runner.run(ip.addrAdd(cidr, end.dev, end.netns))
      await this.runner.run(ip.linkUp(end.dev, end.netns))
    }
  }

  async cmd(netns: string, args: string[]): Promise<RunResult> {
    return this.runner.run(ownNetns('ip', args, netns))
  }

  /** argv that runs PROG inside netns, and inside the sandbox's cgroup (or opts.cgroup) unless outsideCgroup. */
  argv(netns: string, prog: string[], opts: PlaceOptions = {}): string[] {
    return [programPath('skfp-run'), opts.outsideCgroup ? '-' : (opts.cgroup ?? this.cgroup), netnsPath(netns), ...prog]
  }

  run(netns: string, prog: string[], opts: PlaceOptions & {timeoutMs?: number; allowFailure?: boolean} = {}): Promise<RunResult> {
    return runProgram(this.argv(netns, prog, opts), opts)
  }

  /** A child cgroup of the sandbox's (removed with it). */
  addCgroup(name: string): string {
    const dir = join(this.cgroup, name)
    mkdirSync(dir)
    return dir
  }

  /** A background process, stopped at destroy(). */
  start(netns: string, prog: string[], opts: PlaceOptions = {}): Child {
    const child = startProgram(this.argv(netns, prog, opts))
    this.children.push(child)
    return child
  }

  async destroy(): Promise<void> {
    for (const c of this.children) c.kill('SIGKILL')
    await Promise.allSettled(this.children)
    await removeLeftovers(this.runner, this.name)
  }
}

/** Removes instances, namespaces and cgroups whose names start with prefix (a crashed run's). */
export async function removeLeftovers(runner: Runner, prefix: string): Promise<void> {
  checkName(prefix)
  const instances = listInstances().filter((n) => n.startsWith(prefix))
  for (const instance of instances) {
    // a sandbox's instance is its own: an up still at work on it is a run that outlived its test
    // (down would refuse it); stopped, it rolls back what it applied
    const holder = liveHolder(instancePins(instance).dir)
    if (holder) await stopProcess(holder)
    await downInstances({instance}, {renderer: 'silent', log: () => {}}, runner)
  }
  for (const ns of (await ip.netnsList(runner)).filter((n) => n.startsWith(prefix))) await runner.run(ip.netnsDel(ns), {allowFailure: true})
  const files = join(tmpdir(), FILES)
  if (existsSync(files)) for (const dir of readdirSync(files).filter((n) => n.startsWith(prefix))) rmSync(join(files, dir), {recursive: true, force: true})
  const root = cgroup2Mount()
  if (!root) return
  for (const dir of readdirSync(root).filter((n) => n.startsWith(prefix))) killCgroup(join(root, dir))
}

/** SIGTERM, then SIGKILL if it has not exited within 30 s; returns once it is gone. */
async function stopProcess(pid: number): Promise<void> {
  const start = processStart(pid)
  const alive = () => start !== undefined && processStart(pid) === start
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig)
    } catch {
      // gone already
    }
  }
  signal('SIGTERM')
  for (let i = 0; alive() && i < 600; i++) await new Promise((r) => setTimeout(r, 50))
  if (!alive()) return
  signal('SIGKILL')
  while (alive()) await new Promise((r) => setTimeout(r, 50))
}

/** Where a sandbox program runs: outside any cgroup of the sandbox, or in one of its child cgroups. */
export interface PlaceOptions {
  outsideCgroup?: boolean
  cgroup?: string
}

/** Kills every process of a cgroup (its children first), waits for it to empty, and removes it. */
function killCgroup(dir: string): void {
  if (!existsSync(dir)) return
  for (const child of readdirSync(dir, {withFileTypes: true})) if (child.isDirectory()) killCgroup(join(dir, child.name))
  if (existsSync(join(dir, 'cgroup.kill'))) writeFileSync(join(dir, 'cgroup.kill'), '1')
  for (let i = 0; i < 100; i++) {
    if (readFileSync(join(dir, 'cgroup.procs'), 'utf8').trim() === '') break
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20)
  }
  rmdirSync(dir)
}
