/**
 * `skfp demo`: the main job in a throwaway sandbox. A netns and a child cgroup, plain loopback
 * TCP measured, `up` with the fastpath, the same measured again, status, `down`, all removed.
 */
import type {Runner} from './exec.js'
import {iperf} from './iperf.js'
import {upInstance} from './lifecycle.js'
import {downInstances} from './teardown.js'
import {observeInstance} from './observe.js'
import {removeLeftovers, Sandbox} from './sandbox.js'
import {sandboxSettings} from './settings.js'
import {statusOf, type InstanceStatus} from './status.js'
import {throwIfInterrupted} from './interrupt.js'

export const DEMO_NAME = 'skfp-demo'

export interface DemoResult {
  plainGbps: number
  fastpathGbps: number
  ratio: number
  status: InstanceStatus
  clean: boolean
}

export async function runDemo(runner: Runner, seconds: number, say: (line: string) => void): Promise<DemoResult> {
  await removeLeftovers(runner, DEMO_NAME)
  const sb = await Sandbox.create(runner, DEMO_NAME)
  try {
    const ns = await sb.addNetns('app')
    say(`sandbox: netns ${ns}, cgroup ${sb.cgroup}`)
    throwIfInterrupted()
    say(`plain TCP over 127.0.0.1 (iperf3, ${seconds} s)…`)
    const plain = await iperf(sb, ns, '127.0.0.1', 5201, seconds)
    say(`  ${plain.gbps.toFixed(1)} Gbit/s`)
    throwIfInterrupted()
    say(`skfp up --instance ${DEMO_NAME} --netns ${ns} --cgroup ${sb.cgroup} --fastpath on`)
    await upInstance(sandboxSettings(DEMO_NAME, sb.cgroup, ns), {renderer: 'silent'}, runner)
    throwIfInterrupted()
    say(`the same through the fastpath…`)
    const fast = await iperf(sb, ns, '127.0.0.1', 5201, seconds)
    say(`  ${fast.gbps.toFixed(1)} Gbit/s (${(fast.gbps / plain.gbps).toFixed(2)}× plain)`)
    const status = statusOf(await observeInstance(runner, DEMO_NAME))
    throwIfInterrupted()
    say(`skfp down --instance ${DEMO_NAME}`)
    await downInstances({instance: DEMO_NAME}, {renderer: 'silent'}, runner)
    const clean = !(await observeInstance(runner, DEMO_NAME)).exists
    return {plainGbps: plain.gbps, fastpathGbps: fast.gbps, ratio: fast.gbps / plain.gbps, status, clean}
  } finally {
    await sb.destroy()
  }
}
