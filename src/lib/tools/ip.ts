/** ip (iproute2): command builders and JSON queries. Inside a netns, ip and ss enter it themselves
 * (exec.ownNetns): nothing here names a pin. */
import {SkfpError, tail} from '../errors.js'
import {arrayOf, hasFields, isObject, parseChecked, type Check} from './output.js'
import {ownNetns, type Cmd, type Runner} from '../exec.js'

const ip = (args: string[], netns?: string): Cmd => ownNetns('ip', args, netns)
const fam = (family: 4 | 6) => (family === 6 ? ['-6'] : ['-4'])

export const netnsAdd = (name: string): Cmd => ip(['netns', 'add', name])
export const netnsDel = (name: string): Cmd => ip(['netns', 'del', name])
export const linkUp = (dev: string, netns?: string): Cmd => ip(['link', 'set', 'dev', dev, 'up'], netns)
export const vethAdd = (a: string, b: string, bNetns: string, netns?: string): Cmd => ip(['link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', bNetns], netns)
export const addrAdd = (cidr: string, dev: string, netns?: string): Cmd => ip([...(cidr.includes(':') ? ['-6'] : []), 'addr', 'add', cidr, 'dev', dev, ...(cidr.includes(':') ? ['nodad'] : [])], netns)

export const ruleAdd = (family: 4 | 6, fwmark: number, table: number, priority: number, netns?: string): Cmd =>
  ip([...fam(family), 'rule', 'add', 'fwmark', `0x${fwmark.toString(16)}`, 'lookup', String(table), 'priority', String(priority)], netns)
export const ruleDel = (family: 4 | 6, fwmark: number, table: number, priority: number, netns?: string): Cmd =>
  ip([...fam(family), 'rule', 'del', 'fwmark', `0x${fwmark.toString(16)}`, 'lookup', String(table), 'priority', String(priority)], netns)
export const routeAddLocalDefault = (family: 4 | 6, table: number, netns?: string): Cmd => ip([...fam(family), 'route', 'add', 'local', 'default', 'dev', 'lo', 'table', String(table)], netns)
export const routeDelLocalDefault = (family: 4 | 6, table: number, netns?: string): Cmd => ip([...fam(family), 'route', 'del', 'local', 'default', 'dev', 'lo', 'table', String(table)], netns)

export interface Link {
  ifindex: number
  ifname: string
  flags: string[]
  link_type: string
}

export interface Rule {
  priority: number
  /** present (null) in a `not` rule */
  not?: null
  fwmark?: string
  fwmask?: string
  table?: string
}

export interface Route {
  dst: string
  dev?: string
  gateway?: string
  type?: string
  table?: string
  /** A multipath route's next hops (then it has no dev of its own). */
  nexthops?: {dev?: string}[]
}

async function json<T>(runner: Runner, args: string[], item: Check, netns?: string): Promise<T[]> {
  const r = await runner.run(ip(['-j', ...args], netns))
  return r.stdout.trim() ? parseChecked<T[]>(r.stdout, arrayOf(item), `ip -j ${args.join(' ')}`) : []
}

export const links = (runner: Runner, netns?: string) => json<Link>(runner, ['link', 'show'], hasFields({ifindex: 'number', ifname: 'string'}), netns)
export const rules = (runner: Runner, family: 4 | 6, netns?: string) => json<Rule>(runner, [...fam(family), 'rule', 'show'], hasFields({priority: 'number'}), netns)
/** Routes of a table; a table that does not exist yet has none (ip exits 2 for it). */
export async function routes(runner: Runner, family: 4 | 6, table: string, netns?: string): Promise<Route[]> {
  const r = await runner.run(ip(['-j', ...fam(family), 'route', 'show', 'table', table], netns), {allowFailure: true})
  if (r.exitCode === 0) return r.stdout.trim() ? parseChecked<Route[]>(r.stdout, arrayOf(hasFields({dst: 'string'})), `ip -j route show table ${table}`) : []
  if (/table does not exist/.test(r.stderr)) return []
  throw new SkfpError('tool', `ip route show table ${table} failed (exit ${r.exitCode})`, tail(r.stderr, 1), {stderrTail: tail(r.stderr)})
}
/** The device the kernel's routing (policy rules, the most specific route) sends a packet to dst by,
 * with no mark; undefined where it has no route (`ip route get` fails: unreachable). */
export async function routeGet(runner: Runner, family: 4 | 6, dst: string, netns?: string): Promise<string | undefined> {
  const r = await runner.run(ip(['-j', ...fam(family), 'route', 'get', dst], netns), {allowFailure: true})
  if (r.exitCode !== 0 || !r.stdout.trim()) return undefined
  const [route] = parseChecked<{dev?: string}[]>(r.stdout, arrayOf(isObject), `ip -j route get ${dst}`)
  return typeof route?.dev === 'string' ? route.dev : undefined
}
/** `ip monitor link route rule`: a line for each change of an interface, a route or a policy rule (a VPN
 * routing past the default route adds one), both families. */
export const monitorLinksAndRoutes = (netns?: string): Cmd => ip(['-o', 'monitor', 'link', 'route', 'rule'], netns)
export const netnsList = async (runner: Runner) => (await json<{name: string}>(runner, ['netns', 'list'], hasFields({name: 'string'}))).map((n) => n.name)

export interface Listeners {
  tcp: string[]
  udp: string[]
}

/** Local addresses of TCP listeners and of unconnected UDP sockets, as ss prints them (one `ss -Hlntu`;
 * ss has no JSON output, so only the Netid and local address columns are read). */
export async function listeners(runner: Runner, netns?: string): Promise<Listeners> {
  const r = await runner.run(ownNetns('ss', ['-Hlntu'], netns), {allowFailure: true})
  const found: Listeners = {tcp: [], udp: []}
  for (const line of r.stdout.split('\n')) {
    const [netid, , , , addr] = line.trim().split(/\s+/)
    if ((netid === 'tcp' || netid === 'udp') && addr) found[netid].push(addr)
  }
  return found
}
