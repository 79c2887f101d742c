/** iperf3 inside a sandbox: one server, one client run, the receiver's throughput. */
import {resolveTool} from './exec.js'
import type {Sandbox} from './sandbox.js'

export interface IperfRun {
  gbps: number
  retransmits: number
}

/** Waits until a started child printed text matching re on stdout. */
export function waitForOutput(child: {stdout: NodeJS.ReadableStream | null}, re: RegExp, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = ''
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re}`)), timeoutMs)
    child.stdout?.on('data', (d) => {
      seen += String(d)
      if (re.test(seen)) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
}

export async function iperf(sb: Sandbox, netns: string, addr: string, port: number, seconds: number): Promise<IperfRun> {
  const bin = resolveTool('iperf3')
  const server = sb.start(netns, [bin, '-s', '-1', '--forceflush', '-p', String(port)])
  await waitForOutput(server, /Server listening/)
  const r = await sb.run(netns, [bin, '-c', addr, '-p', String(port), '-t', String(seconds), '-J'], {timeoutMs: (seconds + 20) * 1000})
  await server
  const end = JSON.parse(r.stdout).end
  return {gbps: end.sum_received.bits_per_second / 1e9, retransmits: end.sum_sent.retransmits ?? 0}
}
