/** A snapshot of everything skfp could touch, to prove a refused command changed nothing. */
import {existsSync, readdirSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {expect} from 'vitest'
import {ownNetns} from '../../src/lib/exec.js'
import {runner} from './helpers.js'

function pinTree(dir: string): string[] {
  if (!existsSync(dir)) return []
  return ['.', ...readdirSync(dir, {recursive: true}).map(String)].map((p) => `${p}:${(statSync(join(dir, p)).mode & 0o777).toString(8)}`).sort()
}

async function json(tool: 'bpftool' | 'ip' | 'tc', args: string[], netns?: string): Promise<unknown> {
  const r = await runner.run(tool === 'bpftool' ? {tool, args, netns} : ownNetns(tool, args, netns), {allowFailure: true})
  return r.exitCode === 0 ? r.stdout : `exit ${r.exitCode}: ${r.stderr.trim().split('\n').pop()}`
}

/** Programs and maps (ids and names), pins, cgroup attachments, and per netns: rules, routes, qdiscs, filters, sysctls. */
export async function hostSnapshot(netnses: string[], cgroup: string): Promise<Record<string, unknown>> {
  const progs = JSON.parse(String(await json('bpftool', ['-j', 'prog', 'show']))).map((p: {id: number; name?: string}) => `${p.id}:${p.name}`)
  const maps = JSON.parse(String(await json('bpftool', ['-j', 'map', 'show']))).map((m: {id: number; name?: string}) => `${m.id}:${m.name}`)
  const snap: Record<string, unknown> = {progs, maps, pins: pinTree('/sys/fs/bpf/skfp'), cgroup: await json('bpftool', ['-j', 'cgroup', 'show', cgroup])}
  for (const ns of [undefined, ...netnses]) {
    const at = ns ?? 'host'
    snap[`${at}:rules4`] = await json('ip', ['-j', '-4', 'rule', 'show'], ns)
    snap[`${at}:rules6`] = await json('ip', ['-j', '-6', 'rule', 'show'], ns)
    snap[`${at}:routes4`] = await json('ip', ['-j', '-4', 'route', 'show', 'table', 'all'], ns)
    snap[`${at}:routes6`] = await json('ip', ['-j', '-6', 'route', 'show', 'table', 'all'], ns)
    snap[`${at}:qdiscs`] = await json('tc', ['-j', 'qdisc', 'show'], ns)
    const links = JSON.parse(String(await json('ip', ['-j', 'link', 'show'], ns))) as {ifname: string}[]
    for (const l of links) for (const dir of ['ingress', 'egress']) snap[`${at}:filters:${l.ifname}:${dir}`] = await json('tc', ['-j', 'filter', 'show', 'dev', l.ifname, dir], ns)
    snap[`${at}:sysctl`] = (await runner.run({tool: 'sysctl', args: ['-n', 'net.ipv4.conf.lo.accept_local', 'net.ipv4.conf.all.rp_filter'], ...(ns ? {netns: ns} : {})}, {allowFailure: true})).stdout
  }
  return snap
}

/** The host is as in `before`, allowing the kernel up to 3 s to free maps (it does so in deferred work). */
export async function expectRestored(before: Record<string, unknown>, netnses: string[], cgroup: string): Promise<void> {
  let now = await hostSnapshot(netnses, cgroup)
  for (let i = 0; i < 30 && JSON.stringify(now) !== JSON.stringify(before); i++) {
    await new Promise((r) => setTimeout(r, 100))
    now = await hostSnapshot(netnses, cgroup)
  }
  expect(now).toEqual(before)
}
