/**
 * The bench's skfp instance (named like the sandbox, so destroy() always takes it down): the
 * fastpath alone, the interception with or without the fastpath, or the unguarded fastpath.
 */
import {FASTPATH_VARIANTS} from '../datapath.js'
import {join} from 'node:path'
import {buildBpfVariant, PROJECT_ROOT} from '../build.js'
import type {Runner} from '../exec.js'
import {upInstance} from '../lifecycle.js'
import {downInstances} from '../teardown.js'
import {observeInstance} from '../observe.js'
import {sandboxSettings, type FastpathMode, type InterceptSettings, type UpSettings} from '../settings.js'
import {statusOf} from '../status.js'
import {FWMARK, PROXY_MARK, PROXY_PORT, TABLE, UPLINK} from './topology.js'

export interface InstanceContext {
  runner: Runner
  /** The sandbox's name and cgroup: the instance has the same name. */
  name: string
  cgroup: string
}

const silent = {renderer: 'silent' as const, log: () => {}}

const fastpathSettings = (ctx: InstanceContext, netns: string): UpSettings => sandboxSettings(ctx.name, ctx.cgroup, netns)

/** The fastpath for every reader (--fastpath all): iperf3 and skfp's probes read with blocking
 * recv(), which the adaptive fastpath never promotes; these measure the redirect itself. */
export async function upFastpath(ctx: InstanceContext, netns: string): Promise<void> {
  await upInstance({...fastpathSettings(ctx, netns), fastpath: 'all'}, silent, ctx.runner)
}

export async function down(ctx: InstanceContext): Promise<void> {
  await downInstances({instance: ctx.name}, silent, ctx.runner)
}

/** Whether the instance's fastpath is on (what --fastpath auto resolved to). */
export async function fastpathOn(ctx: InstanceContext): Promise<boolean> {
  return statusOf(await observeInstance(ctx.runner, ctx.name)).fastpath.enabled
}

/** Bytes sk_msg redirected since the instance came up (null when it is not up). */
export async function redirectedBytes(ctx: InstanceContext): Promise<number | null> {
  const status = statusOf(await observeInstance(ctx.runner, ctx.name))
  return status.counters ? Number(status.counters.bytesRedirected) : null
}

/** The interception on the host namespace's uplink (and LAN interfaces), handing its TCP (and UDP)
 * to the proxy on 127.0.0.1:PROXY_PORT. */
export async function upInterception(ctx: InstanceContext, netns: string, fastpath: FastpathMode, opts: {udp?: boolean; lan?: string[]; replace?: boolean} = {}): Promise<void> {
  const intercept: InterceptSettings = {
    uplinks: [UPLINK],
    proxyPort: PROXY_PORT,
    proxyAddr4: '127.0.0.1',
    proxyAddr6: null,
    fwmark: FWMARK,
    table: TABLE,
    bypass: [],
    bypassPorts: [],
    bypassPrivate: false,
    proxyDown: 'fail-fast',
    udp: !!opts.udp,
    lan: opts.lan ?? [],
    interceptCgroups: [],
    bypassCgroups: [],
    vpnMarks: [],
  }
  await upInstance({...fastpathSettings(ctx, netns), proxyMark: PROXY_MARK, fastpath, intercept}, {...silent, replace: opts.replace}, ctx.runner)
}

const UNGUARDED_OBJECT = join(PROJECT_ROOT, 'build', 'bench', 'fastpath-noguard.bpf.o')

/** The fastpath-safety benchmark's baseline: up with bpf/lib/guard.h compiled out (-DSKFP_NO_GUARD);
 * compiled when bpf/ changed, not at each round. */
export async function upUnguarded(ctx: InstanceContext, netns: string): Promise<void> {
  await buildBpfVariant(ctx.runner, 'fastpath.bpf.c', UNGUARDED_OBJECT, [...FASTPATH_VARIANTS[0].defines, '-DSKFP_NO_GUARD'])
  await upInstance({...fastpathSettings(ctx, netns), fastpath: 'all'}, {...silent, fastpathObject: UNGUARDED_OBJECT}, ctx.runner)
}
