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
  // every read at once (they only read, and a snapshot is taken while nothing changes): a snapshot is
  // some fifty tool runs, taken twice by most integration cases
  const reads: Record<string, Promise<unknown>> = {
    progs: json('bpftool', ['-j', 'prog', 'show']).then((out) => JSON.parse(String(out)).map((p: {id: number; name?: string}) => `${p.id}:${p.name}`)),
    maps: json('bpftool', ['-j', 'map', 'show']).then((out) => JSON.parse(String(out)).map((m: {id: number; name?: string}) => `${m.id}:${m.name}`)),
    cgroup: json('bpftool', ['-j', 'cgroup', 'show', cgroup]),
  }
  const perNetns = [undefined, ...netnses].map(async (ns) => {
    const at = ns ?? 'host'
    const links = JSON.parse(String(await json('ip', ['-j', 'link', 'show'], ns))) as {ifname: string}[]
    const of: Record<string, Promise<unknown>> = {
      [`${at}:rules4`]: json('ip', ['-j', '-4', 'rule', 'show'], ns),
      [`${at}:rules6`]: json('ip', ['-j', '-6', 'rule', 'show'], ns),
      [`${at}:routes4`]: json('ip', ['-j', '-4', 'route', 'show', 'table', 'all'], ns),
      [`${at}:routes6`]: json('ip', ['-j', '-6', 'route', 'show', 'table', 'all'], ns),
      [`${at}:qdiscs`]: json('tc', ['-j', 'qdisc', 'show'], ns),
      [`${at}:sysctl`]: runner.run({tool: 'sysctl', args: ['-n', 'net.ipv4.conf.lo.accept_local', 'net.ipv4.conf.all.rp_filter'], ...(ns ? {netns: ns} : {})}, {allowFailure: true}).then((r) => r.stdout),
    }
    for (const l of links) for (const dir of ['ingress', 'egress']) of[`${at}:filters:${l.ifname}:${dir}`] = json('tc', ['-j', 'filter', 'show', 'dev', l.ifname, dir], ns)
    return of
  })
  for (const of of await Promise.all(perNetns)) Object.assign(reads, of)
  const pins = pinTree('/sys/fs/bpf/skfp')
  const keys = Object.keys(reads)
  const values = await Promise.all(Object.values(reads))
  // in a fixed order: expectRestored compares snapshots as JSON text
  return Object.fromEntries([['pins', pins], ...keys.map((k, i) => [k, values[i]])])
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
