/**
 * The one place that runs external programs: execa with an argv array, never a shell, tools
 * resolved to absolute paths in system directories only (skfp runs as root: a binary in the
 * current folder or a user-writable PATH entry must never be picked up).
 */
import {execa} from 'execa'
import {accessSync, constants} from 'node:fs'
import {SkfpError, environmentError, tail} from './errors.js'
import {interruptSignal} from './interrupt.js'
import {OWN_BIN_DIR} from './root.js'

/** Every tool skfp runs, with the Debian package that provides it. */
export const TOOLS = {
  bpftool: 'bpftool',
  tc: 'iproute2',
  ip: 'iproute2',
  clang: 'clang',
  go: 'golang-go',
  nsenter: 'util-linux',
  mount: 'mount',
  umount: 'mount',
  sysctl: 'procps',
  ss: 'iproute2',
  iperf3: 'iperf3',
  v2ray: 'v2ray',
  curl: 'curl',
  iptables: 'iptables',
  nft: 'nftables',
  ip6tables: 'iptables',
  taskset: 'util-linux',
  python3: 'python3',
  dnsmasq: 'dnsmasq-base',
  dig: 'bind9-dnsutils',
  'ss-redir': 'shadowsocks-libev',
  'ss-server': 'shadowsocks-libev',
  'redis-server': 'redis-server',
  'redis-benchmark': 'redis-tools',
  'redis-cli': 'redis-tools',
  nginx: 'nginx',
  wrk: 'wrk',
  socat: 'socat',
  wg: 'wireguard-tools',
  'skfp-attach': 'skfp (its own loader: skfp build)',
} as const

/** skfp's own programs (probes/*.c, built by `skfp build`): they are found in its build/bin only. */
const OWN_PROGRAMS: readonly Tool[] = ['skfp-attach']

export type Tool = keyof typeof TOOLS

export const TRUSTED_DIRS = ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin']

/** The whole environment of every program skfp runs: nothing of the caller's (skfp runs as root). */
export const TOOL_ENV: Record<string, string> = {LC_ALL: 'C', PATH: TRUSTED_DIRS.join(':')}

/** One external command: a tool and its arguments, optionally inside a named network namespace. */
export interface Cmd {
  tool: Tool
  args: string[]
  netns?: string
  /** Variables the tool needs on top of TOOL_ENV (the Go compiler's cache, say); nothing else reaches it. */
  env?: Record<string, string>
}

export interface RunResult {
  stdout: string
  stderr: string
  exitCode: number
}

export interface RunOptions {
  /** Return a failed result instead of throwing. */
  allowFailure?: boolean
  timeoutMs?: number
  input?: string
}

/** What runs commands: the real one below, or a fake in unit tests. */
export interface Runner {
  run(cmd: Cmd, opts?: RunOptions): Promise<RunResult>
}

/** A runner that runs each distinct command once and hands every later caller the same result: for
 * one observation's reads, never for changes. */
export function onceEach(runner: Runner): Runner {
  const results = new Map<string, Promise<RunResult>>()
  return {
    run(cmd, opts) {
      const key = JSON.stringify([cmd, opts ?? {}])
      let result = results.get(key)
      if (!result) results.set(key, (result = runner.run(cmd, opts)))
      return result
    },
  }
}

export function netnsPath(netns: string): string {
  return `/run/netns/${netns}`
}

/** A command of a tool that enters a netns itself (`ip -n`, `tc -n`, `ss -N`): one program instead of
 * nsenter and the tool, which counts on a slow machine. It remounts /sys in a mount namespace of its
 * own, which hides the bpffs pins: a command that names a pin sets Cmd.netns instead (nsenter). */
export function ownNetns(tool: 'ip' | 'tc' | 'ss', args: string[], netns?: string): Cmd {
  return {tool, args: netns ? [tool === 'ss' ? '-N' : '-n', netns, ...args] : args}
}

/** The argv actually executed for cmd: `nsenter --net=/run/netns/NAME -- tool ...` inside a netns
 * (not `ip -n`/`tc -n`, which remount /sys and lose sight of the bpffs pins). */
export function argvOf(cmd: Cmd, resolve: (tool: Tool) => string = (t) => t): string[] {
  const inner = [resolve(cmd.tool), ...cmd.args]
  return cmd.netns ? [resolve('nsenter'), `--net=${netnsPath(cmd.netns)}`, '--', ...inner] : inner
}

export function resolveTool(tool: Tool, dirs: string[] = OWN_PROGRAMS.includes(tool) ? [OWN_BIN_DIR] : TRUSTED_DIRS): string {
  for (const dir of dirs) {
    if (!dir.startsWith('/')) throw new SkfpError('bug', `${dir} is not an absolute directory to look for ${tool} in`, 'report this')
    const candidate = `${dir}/${tool}`
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // not in this directory
    }
  }
  throw environmentError(`${tool} not found in ${dirs.join(':')}`, OWN_PROGRAMS.includes(tool) ? 'build it: skfp build (needs libbpf-dev)' : `install it: apt-get install ${TOOLS[tool]}`)
}

/** Whether tool is installed in a trusted directory (for what skfp can do without it). */
export function isInstalled(tool: Tool): boolean {
  try {
    resolveTool(tool)
    return true
  } catch {
    return false
  }
}

export class ExecaRunner implements Runner {
  private readonly paths = new Map<Tool, string>()
  constructor(private readonly log: (line: string) => void = () => {}) {}

  resolve = (tool: Tool): string => {
    let found = this.paths.get(tool)
    if (!found) {
      found = resolveTool(tool)
      this.paths.set(tool, found)
    }
    return found
  }

  async run(cmd: Cmd, opts: RunOptions = {}): Promise<RunResult> {
    const [file, ...args] = argvOf(cmd, this.resolve)
    this.log(`$ ${[file, ...args].join(' ')}`)
    const result = await execa(file, args, {
      shell: false,
      reject: false,
      stripFinalNewline: true,
      timeout: opts.timeoutMs ?? 60_000,
      input: opts.input,
      env: {...TOOL_ENV, ...cmd.env},
      extendEnv: false,
    })
    const out: RunResult = {stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? ''), exitCode: result.exitCode ?? -1}
    if (out.exitCode !== 0 && !opts.allowFailure) {
      throw new SkfpError('tool', `${cmd.tool} failed (exit ${out.exitCode}${result.timedOut ? ', timed out' : ''})`, `${tail(out.stderr, 1) || 'see --verbose'}`, {
        argv: [file, ...args],
        stderrTail: tail(out.stderr),
      })
    }
    return out
  }
}

/** A tool that runs until it is stopped (ip monitor): each line of its output handed over as it
 * comes. `ended` settles when it exits, which before stop() is a failure. */
export function watchTool(cmd: Cmd, onLine: (line: string) => void): {ended: Promise<RunResult>; stop(): void} {
  const [file, ...args] = argvOf(cmd, (t) => resolveTool(t))
  const child = execa(file, args, {shell: false, reject: false, stdin: 'ignore', env: {...TOOL_ENV, ...cmd.env}, extendEnv: false, buffer: {stdout: false, stderr: true}})
  let partial = ''
  child.stdout!.setEncoding('utf8')
  child.stdout!.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n')
    partial = lines.pop()!
    for (const line of lines) onLine(line)
  })
  const ended = child.then((r) => ({stdout: '', stderr: String(r.stderr ?? ''), exitCode: r.exitCode ?? -1}))
  return {ended, stop: () => void child.kill()}
}

/** A program skfp built or found itself (absolute path), e.g. build/bin/skfp-run, iperf3, v2ray. */
export function startProgram(argv: string[], opts: {timeoutMs?: number} = {}) {
  if (!argv[0]?.startsWith('/')) throw new SkfpError('bug', `program path must be absolute: ${argv[0]}`, 'report this')
  // killed on Ctrl-C: a probe, iperf3 or proxy must not keep the clean-up waiting
  return execa(argv[0], argv.slice(1), {shell: false, reject: false, timeout: opts.timeoutMs, stdin: 'ignore', buffer: true, env: TOOL_ENV, extendEnv: false, cancelSignal: interruptSignal, forceKillAfterDelay: 2000})
}

export async function runProgram(argv: string[], opts: {timeoutMs?: number; allowFailure?: boolean} = {}): Promise<RunResult> {
  const r = await startProgram(argv, {timeoutMs: opts.timeoutMs ?? 120_000})
  const out: RunResult = {stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), exitCode: r.exitCode ?? -1}
  if (out.exitCode !== 0 && !opts.allowFailure)
    throw new SkfpError('tool', `${argv[0]} failed (exit ${out.exitCode}${r.timedOut ? ', timed out' : ''})`, tail(out.stderr, 1) || 'see --verbose', {argv, stderrTail: tail(out.stderr)})
  return out
}
