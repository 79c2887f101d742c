/**
 * `skfp demo`: the whole product in a throwaway sandbox, one listr2 line per step. The fastpath:
 * plain loopback TCP against the same through the fastpath. Interception: Debian's v2ray as the
 * transparent proxy of a "host" namespace, a request to a "remote" server handed to it (its log shows
 * the original destination), the throughput through it, with the fastpath too where the kernel
 * self-test allows it, and the `skfp up` line for a real host. Everything is removed at the end,
 * also on failure and Ctrl-C.
 */
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Listr} from 'listr2'
import {upInterception} from './bench/instance.js'
import {throughput} from './bench/measure.js'
import {HOST_ADDR, PROXY_MARK, PROXY_PORT, proxyTopology, REMOTE_ADDR, startV2ray, UPLINK, type Proxy} from './bench/topology.js'
import {readVerdict} from './doctor.js'
import {resolveTool, type Runner} from './exec.js'
import {usageError} from './errors.js'
import {interruptSignal, throwIfInterrupted} from './interrupt.js'
import {iperf, waitForOutput} from './iperf.js'
import {upInstance} from './lifecycle.js'
import {observeInstance} from './observe.js'
import {listrOptions} from './plan.js'
import {validateInstance} from './pins.js'
import {isSandboxName, removeLeftovers, Sandbox, SANDBOX_PREFIX} from './sandbox.js'
import {sandboxSettings} from './settings.js'
import {statusOf, type InstanceStatus} from './status.js'
import {downInstances} from './teardown.js'

export const DEMO_NAME = 'skfp-demo'
const HTTP_PORT = 8080
const REQUESTS = 3

export interface DemoIntercept {
  proxy: 'v2ray'
  /** Where the requests went, as the proxy's log shows it. */
  originalDestination: string
  /** Requests answered through the proxy. */
  requests: number
  /** One line of the proxy's access log. */
  logLine: string
  /** iperf3 through the proxy. */
  plainGbps: number
  /** The same with the fastpath; null when the self-test does not allow it (why says why). */
  fastpathGbps: number | null
  fastpathSkipped?: string
  /** What a user runs on a real host for the same set-up. */
  upLine: string
}

export interface DemoResult {
  plainGbps: number
  fastpathGbps: number
  ratio: number
  status: InstanceStatus
  intercept: DemoIntercept
  clean: boolean
}

export interface DemoOptions {
  seconds: number
  /** Sandbox and instance name prefix (tests use their own). */
  name?: string
  renderer?: 'default' | 'simple' | 'silent'
}

export async function runDemo(runner: Runner, opts: DemoOptions): Promise<DemoResult> {
  const name = validateInstance(opts.name ?? DEMO_NAME)
  if (!isSandboxName(name))
    throw usageError(`demo name ${JSON.stringify(name)} does not start with ${SANDBOX_PREFIX}`, `the demo removes every namespace and cgroup whose name starts with its own: name it ${SANDBOX_PREFIX}SOMETHING`)
  const ixName = `${name}-ix`
  validateInstance(ixName)
  await removeLeftovers(runner, name)
  const sb = await Sandbox.create(runner, name)
  const workDir = mkdtempSync(join(tmpdir(), `${name}-`))
  // Ctrl-C: what runs in the sandbox's cgroup stops now; the step stops and the finally cleans up
  const onSignal = () => {
    try {
      writeFileSync(join(sb.cgroup, 'cgroup.kill'), '1')
    } catch {
      // gone already
    }
  }
  interruptSignal.addEventListener('abort', onSignal, {once: true})
  const r: Partial<Omit<DemoResult, 'intercept'>> & {intercept: Partial<DemoIntercept>} = {intercept: {proxy: 'v2ray'}}
  let app = ''
  let topo = {host: '', remote: ''}
  let proxy: Proxy | undefined
  const accessLog = join(workDir, 'v2ray-access.log')
  const ix = {runner, name: ixName, cgroup: sb.cgroup}
  const step = (title: string, run: (task: {title: string}) => Promise<void>) => ({
    title,
    task: async (_ctx: unknown, task: {title: string}) => {
      throwIfInterrupted()
      await run(task)
      throwIfInterrupted()
    },
  })
  const list = new Listr(
    [
      step('Sandbox', async (t) => {
        app = await sb.addNetns('app')
        topo = await proxyTopology(sb, 'ix')
        t.title = `Sandbox: netns ${app}, ${topo.host} (host) ⇄ ${topo.remote} (remote); cgroup ${sb.cgroup}`
      }),
      step('Plain TCP over 127.0.0.1', async (t) => {
        r.plainGbps = (await iperf(sb, app, '127.0.0.1', 5201, opts.seconds)).gbps
        t.title = `Plain TCP over 127.0.0.1 (iperf3, ${opts.seconds} s): ${r.plainGbps.toFixed(1)} Gbit/s`
      }),
      step('The fastpath', async (t) => {
        // iperf3 reads blocking: the adaptive fastpath leaves it on TCP, so this shows the redirect itself
        await upInstance(sandboxSettings(name, sb.cgroup, app, {fastpath: 'all'}), {renderer: 'silent'}, runner)
        r.fastpathGbps = (await iperf(sb, app, '127.0.0.1', 5201, opts.seconds)).gbps
        r.ratio = r.fastpathGbps / r.plainGbps!
        r.status = statusOf(await observeInstance(runner, name))
        await downInstances({instance: name}, {renderer: 'silent', log: () => {}}, runner)
        t.title = `The fastpath (skfp up --fastpath all): ${r.fastpathGbps.toFixed(1)} Gbit/s, ${r.ratio.toFixed(2)}× plain`
      }),
      step('Interception', async (t) => {
        await upInterception(ix, topo.host, 'off', {udp: true})
        proxy = await startV2ray(sb, topo.host, workDir, accessLog)
        t.title = `Interception: v2ray on 127.0.0.1:${PROXY_PORT} in ${topo.host}; skfp up --netns ${topo.host} --uplink ${UPLINK} --proxy-port ${PROXY_PORT} --proxy-mark ${PROXY_MARK}`
      }),
      step('A request', async (t) => {
        const server = sb.start(topo.remote, [resolveTool('python3'), '-u', '-m', 'http.server', '--bind', REMOTE_ADDR, String(HTTP_PORT)], {outsideCgroup: true})
        await waitForOutput(server, /Serving HTTP/)
        let ok = 0
        for (let i = 0; i < REQUESTS; i++) {
          const c = await sb.run(topo.host, [resolveTool('curl'), '-s', '-o', '/dev/null', '-m', '5', '-w', '%{http_code}', `http://${REMOTE_ADDR}:${HTTP_PORT}/`], {allowFailure: true})
          if (c.stdout === '200') ok++
        }
        const lines = readFileSync(accessLog, 'utf8').split('\n').filter((l) => l.includes('accepted'))
        const line = lines[0] ?? ''
        r.intercept.requests = ok
        r.intercept.logLine = line.trim()
        r.intercept.originalDestination = line.match(/accepted tcp:(\S+)/)?.[1] ?? ''
        if (ok !== REQUESTS || lines.length < REQUESTS) throw new Error(`${ok} of ${REQUESTS} requests answered, ${lines.length} in the proxy's log`)
        t.title = `${ok} requests from ${HOST_ADDR} to http://${REMOTE_ADDR}:${HTTP_PORT}/ answered through v2ray; its log: ${r.intercept.logLine}`
      }),
      step('Through the proxy', async (t) => {
        const plain = await throughput(sb, {clientNs: topo.host, serverNs: topo.remote, connect: REMOTE_ADDR, serversOutsideCgroup: true}, opts.seconds)
        r.intercept.plainGbps = plain.gbps
        const verdict = await readVerdict(runner)
        if (!verdict) r.intercept.fastpathSkipped = 'no kernel self-test of this boot: `skfp doctor` runs it'
        else if (verdict.mode !== 'adaptive') r.intercept.fastpathSkipped = 'this kernel takes no adaptive fastpath (Linux 6.4+), and v2ray relays with splice()'
        else if (!verdict.fastpathSafe) r.intercept.fastpathSkipped = `the kernel self-test found hazards (${verdict.hazards.join(', ')})`
        if (r.intercept.fastpathSkipped) {
          r.intercept.fastpathGbps = null
          t.title = `Through the proxy (iperf3 via v2ray): ${plain.gbps.toFixed(2)} Gbit/s; with the fastpath: not measured, ${r.intercept.fastpathSkipped}`
          return
        }
        await upInterception(ix, topo.host, 'on', {udp: true, replace: true})
        r.intercept.fastpathGbps = (await throughput(sb, {clientNs: topo.host, serverNs: topo.remote, connect: REMOTE_ADDR}, opts.seconds)).gbps
        t.title = `Through the proxy (iperf3 via v2ray): ${plain.gbps.toFixed(2)} Gbit/s; with the fastpath ${r.intercept.fastpathGbps.toFixed(2)} Gbit/s`
      }),
      step('On a real host', async (t) => {
        r.intercept.upLine = `skfp template v2ray --proxy-port ${PROXY_PORT} --proxy-mark ${PROXY_MARK} > /etc/v2ray/skfp.json && v2ray -config /etc/v2ray/skfp.json & skfp up --proxy-port ${PROXY_PORT} --proxy-mark ${PROXY_MARK}`
        t.title = `On a real host: ${r.intercept.upLine}`
      }),
      step('skfp down', async (t) => {
        await proxy?.stop()
        await downInstances({instance: ixName}, {renderer: 'silent', log: () => {}}, runner)
        r.clean = !(await observeInstance(runner, name)).exists && !(await observeInstance(runner, ixName)).exists
        t.title = `skfp down: ${r.clean ? 'everything removed' : 'pins LEFT'}`
      }),
    ],
    listrOptions(opts.renderer),
  )
  try {
    await list.run()
    return r as unknown as DemoResult
  } finally {
    interruptSignal.removeEventListener('abort', onSignal)
    await proxy?.stop().catch(() => 0)
    await sb.destroy() // the instances (named after the sandbox), namespaces and cgroup
    rmSync(workDir, {recursive: true, force: true})
  }
}
