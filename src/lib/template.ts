/**
 * `skfp template`: proxy configuration snippets, a systemd unit and a Kubernetes DaemonSet, from
 * templates/ and filled in from the same flags as up (validated the same way, by parseUpFlags).
 */
import {readFileSync} from 'node:fs'
import {isAbsolute, join, posix, resolve} from 'node:path'
import {Flags} from '@oclif/core'
import {PROJECT_ROOT} from './build.js'
import {SkfpError, usageError} from './errors.js'
import {parseAddress, parseCidr} from './net.js'
import {parseUpFlags, type InterceptSettings, type RawUpFlags} from './settings.js'

/** Proxies that take up's flags alone. Their files hold the inbounds with UDP on. */
export const TEMPLATES = {v2ray: 'v2ray.json', xray: 'xray.json', mihomo: 'mihomo.yaml', 'sing-box': 'sing-box.json'} as const
export type TemplateName = keyof typeof TEMPLATES
export const TEMPLATE_NAMES = [...Object.keys(TEMPLATES), 'ss-redir', 'systemd', 'daemonset']

export interface TemplateResult {
  template: string
  config: string
}

const readTemplate = (file: string) => readFileSync(join(PROJECT_ROOT, 'templates', file), 'utf8')

/**
 * A template with its {{placeholders}} filled in. Each value is escaped as inside a JSON string,
 * which is also right inside a YAML double-quoted one, and changes no number or address.
 */
function fill(file: string, values: Record<string, string | number | boolean>): string {
  return readTemplate(file).replace(/\{\{(\w+)\}\}/g, (_, key: string) => {
    if (!(key in values)) throw new SkfpError('bug', `templates/${file} has an unknown placeholder {{${key}}}`, 'report this')
    return JSON.stringify(String(values[key])).slice(1, -1)
  })
}

const json = (config: unknown) => `${JSON.stringify(config, null, 2)}\n`

interface Inbound {
  tag: string
  network?: string
  settings?: {network: string}
}

const dokodemoTcpOnly = (ib: Inbound) => (ib.settings!.network = 'tcp')
/** How each JSON template's inbound takes TCP alone (--no-udp). */
const TCP_ONLY: Record<Exclude<TemplateName, 'mihomo'>, (ib: Inbound) => void> = {
  v2ray: dokodemoTcpOnly,
  xray: dokodemoTcpOnly,
  'sing-box': (ib) => (ib.network = 'tcp'), // no network: both
}

/**
 * A proxy's snippet: a tproxy listener per family the proxy listens on, TCP and (with --udp, the
 * default) UDP on the same port, and the mark on its own sockets. --lan needs nothing here: none
 * of these listeners looks at the client's address (mihomo's allow-lan only moves its port
 * listeners off 127.0.0.1, and the snippet has none).
 */
export function renderTemplate(name: TemplateName, i: InterceptSettings, proxyMark: number): string {
  const text = fill(TEMPLATES[name], {proxyPort: i.proxyPort, proxyMark, proxyAddr4: i.proxyAddr4 ?? '', proxyAddr6: i.proxyAddr6 ?? '', udp: i.udp})
  // a listener per family the proxy listens on: skfp-tproxy-v4, skfp-tproxy-v6
  const listens = (tag: string) => (tag.endsWith('-v4') ? i.proxyAddr4 : i.proxyAddr6)
  if (name === 'mihomo') return text.replace(/^ {2}- name: (skfp-tproxy-v[46])\n(?: {4}.*\n)+/gm, (entry, tag: string) => (listens(tag) ? entry : ''))
  const config = JSON.parse(text) as {inbounds: Inbound[]}
  config.inbounds = config.inbounds.filter((ib) => listens(ib.tag))
  if (!i.udp) config.inbounds.forEach(TCP_ONLY[name])
  return json(config)
}

// ---- ss-redir (shadowsocks-libev)

/** The template's own flags for ss-redir: the ss-server it relays to. */
export const SS_REDIR_FLAGS = {
  'ss-server': Flags.string({description: "ss-redir: the ss-server's IP:PORT ([IPv6]:PORT); it must be in a --bypass range, here and for skfp up.", helpGroup: 'TEMPLATE'}),
  'ss-password': Flags.string({description: "ss-redir: the server's password (written into the file: keep it private).", helpGroup: 'TEMPLATE'}),
  'ss-method': Flags.string({description: "ss-redir: the server's cipher (default chacha20-ietf-poly1305, as ss-redir's).", helpGroup: 'TEMPLATE'}),
}

/** `ss-redir --help` (shadowsocks-libev 3.3.5): the AEAD ciphers first, then the stream ones. */
const SS_METHODS = [
  'chacha20-ietf-poly1305', 'xchacha20-ietf-poly1305', 'aes-128-gcm', 'aes-192-gcm', 'aes-256-gcm',
  'rc4-md5', 'aes-128-cfb', 'aes-192-cfb', 'aes-256-cfb', 'aes-128-ctr', 'aes-192-ctr', 'aes-256-ctr',
  'camellia-128-cfb', 'camellia-192-cfb', 'camellia-256-cfb', 'bf-cfb', 'salsa20', 'chacha20', 'chacha20-ietf',
]

export interface SsServer {
  address: string
  port: number
  password: string
  method: string
}

/**
 * ss-redir's inputs, checked against up's settings: one listening address (ss-redir binds one),
 * and a server skfp lets out untouched (ss-redir has no SO_MARK, so only --bypass keeps its own
 * connections to the server from being handed back to it).
 */
export function parseSsServer(flags: TemplateFlags, i: InterceptSettings): SsServer {
  const text = flags['ss-server']
  if (text === undefined) throw usageError('skfp template ss-redir needs --ss-server', "give the ss-server's IP address and port, e.g. --ss-server 203.0.113.9:8388")
  const [, bracketed, plain, portText] = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text) ?? []
  const address = bracketed ?? plain
  const family = address === undefined ? undefined : parseAddress(address)?.family
  const port = Number(portText)
  if (!family || (bracketed !== undefined) !== (family === 6) || port < 1 || port > 65535)
    throw usageError(`--ss-server ${JSON.stringify(text)} is not IP:PORT`, "give the server's IP address and port, e.g. 203.0.113.9:8388 or [2001:db8::9]:8388 (not a name: --bypass needs its address)")
  if (!flags['ss-password']) throw usageError('skfp template ss-redir needs --ss-password', "give the ss-server's password (it is written into the file: keep the file private)")
  const method = flags['ss-method'] ?? SS_METHODS[0]
  if (!SS_METHODS.includes(method))
    throw usageError(`--ss-method ${JSON.stringify(method)} is not a cipher of ss-redir`, `give the server's: ${SS_METHODS.slice(0, 5).join(', ')}, or an older one from ss-redir --help`)
  if (i.proxyAddr4 && i.proxyAddr6)
    throw usageError('ss-redir listens on one address and --proxy-addr gives two (127.0.0.1 and ::1 when not given)', 'give --proxy-addr once; for the other family run a second ss-redir from skfp template ss-redir --proxy-addr ::1, and give skfp up both')
  // the server's address with each range's prefix: in the range when that gives the range
  if (!i.bypass.some((c) => c.includes(':') === (family === 6) && parseCidr(`${address}/${c.split('/')[1]}`).text === c))
    throw usageError(`--ss-server ${address} is in no --bypass range`, `ss-redir marks none of its sockets, so skfp would hand its connections to the server back to it: add --bypass ${parseCidr(address).text} here and to skfp up`)
  return {address, port, password: flags['ss-password'], method}
}

/** ss-redir's config file: its tproxy listener (TCP, and UDP unless --no-udp) and its server. */
export function renderSsRedir(i: InterceptSettings, server: SsServer): string {
  const config = JSON.parse(
    fill('ss-redir.json', {
      proxyAddr: (i.proxyAddr4 ?? i.proxyAddr6)!,
      proxyPort: i.proxyPort,
      ssAddress: server.address,
      ssPort: server.port,
      ssPassword: server.password,
      ssMethod: server.method,
      ssBypass: parseCidr(server.address).text,
    }),
  ) as {mode: string}
  if (!i.udp) config.mode = 'tcp_only'
  return json(config)
}

/** What `skfp template` is given: up's flags (dry-run aside) and the templates' own. */
export type TemplateFlags = Omit<RawUpFlags, 'cgroup'> & {
  cgroup?: string
  after?: string[]
  skfp?: string
  image?: string
  'ss-server'?: string
  'ss-password'?: string
  'ss-method'?: string
}

/** An oclif flag definition, as much of it as turning values back into argv needs. */
export interface FlagDef {
  type: string
  default?: unknown
  multiple?: boolean
}

/** The templates' own flags, and which templates take them. */
const OWN_FLAGS = {
  after: ['systemd'],
  skfp: ['systemd', 'daemonset'],
  image: ['daemonset'],
  'ss-server': ['ss-redir'],
  'ss-password': ['ss-redir'],
  'ss-method': ['ss-redir'],
} as const

export function renderNamedTemplate(name: string, flags: TemplateFlags, upFlags: Record<string, FlagDef>): string {
  if (!TEMPLATE_NAMES.includes(name)) throw usageError(`no template for ${JSON.stringify(name)}`, `use one of ${TEMPLATE_NAMES.join(', ')}`)
  for (const [flag, takers] of Object.entries(OWN_FLAGS))
    if (flags[flag as keyof typeof OWN_FLAGS] !== undefined && !(takers as readonly string[]).includes(name))
      throw usageError(`--${flag} is not a flag of skfp template ${name}`, `it is for skfp template ${takers.join(' and ')}`)
  if (name === 'systemd') return systemdTemplate(flags, upFlags)
  if (name === 'daemonset') return daemonSetTemplate(flags, upFlags)
  if (flags['proxy-port'] === undefined) throw usageError(`skfp template ${name} needs --proxy-port`, "give the port of the proxy's transparent listener, as for skfp up")
  const settings = parseUpFlags({...flags, cgroup: ''})
  const i = settings.intercept!
  if (name === 'ss-redir') return renderSsRedir(i, parseSsServer(flags, i))
  return renderTemplate(name as TemplateName, i, settings.proxyMark)
}

/** `skfp up`'s arguments for these values: the instance, then each flag that is not at its default. */
function upArgv(values: Record<string, unknown>, upFlags: Record<string, FlagDef>): string[] {
  const argv = [`--instance=${values.instance}`]
  for (const [name, def] of Object.entries(upFlags)) {
    const value = values[name]
    if (name === 'instance' || value === undefined || value === def.default) continue
    if (def.type === 'boolean') argv.push(value ? `--${name}` : `--no-${name}`)
    // --flag=value: a value can never be taken for a flag
    else for (const v of def.multiple ? (value as unknown[]) : [value]) argv.push(`--${name}=${v}`)
  }
  return argv
}

// ---- systemd

/** The proxy's unit, for After=: a unit name with its type suffix (no specifiers, no spaces). */
function validateUnitName(name: string): string {
  if (!/^[A-Za-z0-9:_.\\@-]+\.(service|socket|target|mount|path|timer|device|swap|slice|scope|automount)$/.test(name))
    throw usageError(`--after ${JSON.stringify(name)} is not a unit name`, "give the proxy's systemd unit, e.g. mihomo.service")
  return name
}

/**
 * One word of an Exec= line, as systemd reads it (systemd.service, "Command lines"): `%` starts a
 * specifier everywhere, so it is doubled; `$` a variable in the arguments (not in the program's
 * path), so there it is doubled too; a word with anything else outside a safe set is
 * double-quoted, with C escapes for backslash, quote and control characters.
 */
export function systemdWord(word: string, isProgram = false): string {
  const escaped = isProgram ? word.replaceAll('%', '%%') : word.replaceAll('%', '%%').replaceAll('$', '$$$$')
  if (/^[A-Za-z0-9_@+=:,./%$-]+$/.test(escaped)) return escaped
  const quoted = escaped.replace(/[\\"\x00-\x1f\x7f]/g, (c) => (c === '\\' || c === '"' ? `\\${c}` : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`))
  return `"${quoted}"`
}

const execLine = (argv: string[]) => argv.map((word, i) => systemdWord(word, i === 0)).join(' ')

function systemdTemplate(flags: TemplateFlags, upFlags: Record<string, FlagDef>): string {
  // the unit runs from /: a relative cgroup means the one it names from here
  const values = {...flags, cgroup: flags.cgroup === undefined ? undefined : resolve(flags.cgroup)}
  const {instance} = parseUpFlags({...values, cgroup: values.cgroup ?? ''})
  if (flags.skfp !== undefined && !isAbsolute(flags.skfp))
    throw usageError(`--skfp ${JSON.stringify(flags.skfp)} is not an absolute path`, 'systemd runs the path as given and it runs as root: give the absolute path of skfp (e.g. /usr/local/bin/skfp)')
  const skfp = flags.skfp === undefined ? [process.execPath, join(PROJECT_ROOT, 'bin', 'run.js')] : [flags.skfp]
  const after = (flags.after ?? []).map(validateUnitName)
  const proxyUnits = after.length
    ? "# the proxy's unit (--after): started first, so its transparent listener is there when interception\n" +
      '# starts (until then --proxy-down applies); stopped only after skfp has taken interception down\n' +
      `After=${after.join(' ')}\n`
    : ''
  const up = execLine([...skfp, 'up', ...upArgv(values, upFlags)])
  const down = execLine([...skfp, 'down', `--instance=${instance}`])
  // replacer functions: a `$` in a value is no replacement pattern
  return readTemplate('systemd.service')
    .replaceAll('{{instance}}', () => instance)
    .replace('{{after}}\n', () => proxyUnits)
    .replace('{{service}}', () => (flags['proxy-port'] === undefined ? oneshotService(up, down) : followingService(up, down)))
}

/** The fastpath alone: nothing to follow. */
const oneshotService = (up: string, down: string) => `# The instance lives in the kernel (its pins in /sys/fs/bpf), not in a process, and bpffs does not
# survive a reboot: each boot runs up once, and the unit stays active until stop runs down.
Type=oneshot
RemainAfterExit=yes
ExecStart=${up}
# systemctl reload: up again with the same settings, which changes nothing on an instance that is up
ExecReload=${up}
ExecStop=${down}`

/** Interception: up, then up --follow as the main process, which puts the instance right when an
 * interface comes back or the default routes move. */
const followingService = (up: string, down: string) => `# The instance lives in the kernel (its pins in /sys/fs/bpf), and bpffs does not survive a reboot:
# each boot runs up once (the unit counts as started, and the units ordered after it start, once it is
# done). Then the same up with --follow stays as the main process: when an interface comes back (a
# container runtime's bridge created again) or the default routes move to other interfaces (another
# network; with no --uplink the uplinks are the default routes' interfaces), it puts the instance
# right, as up again with the same settings would. Stop: SIGTERM ends the follower, which leaves the
# instance up, then down takes it down.
Type=exec
ExecStartPre=${up}
ExecStart=${up} --follow
# systemctl reload: up again with the same settings, which changes nothing on an instance that is up
ExecReload=${up}
ExecStopPost=${down}
# the follower ends with an error only when ip monitor does: down, then up again
Restart=on-failure
RestartSec=5s`

// ---- Kubernetes

/** A value with the comment that explains it, printed above its key; JSON sees the value alone. */
class Commented {
  constructor(readonly comment: string, readonly value: unknown) {}
  toJSON(): unknown {
    return this.value
  }
}

const why = (comment: string, value: unknown) => new Commented(comment, value)

const isScalar = (v: unknown) => v === null || typeof v !== 'object' || (Array.isArray(v) ? v.length === 0 : Object.keys(v as object).length === 0)
/** Strings any YAML reader (1.1 or 1.2) takes as strings when plain; the rest are double-quoted. */
const plainString = (s: string) => /^[A-Za-z/][A-Za-z0-9._/-]*$/.test(s) && !/^(y|n|yes|no|true|false|on|off|null)$/i.test(s)
const scalar = (v: unknown) =>
  Array.isArray(v) ? '[]' : v !== null && typeof v === 'object' ? '{}' : typeof v === 'string' && plainString(v) ? v : JSON.stringify(v)

/**
 * Block YAML: strings plain when that cannot change their type, double-quoted otherwise (JSON's
 * escapes are a subset of YAML's, and "on", "10m" or "--instance=x" stay strings); each Commented
 * value's comment on the lines above it.
 */
export function toYaml(value: unknown, indent = ''): string {
  const comment = (v: unknown) => (v instanceof Commented ? v.comment.split('\n').map((line) => `${indent}# ${line}\n`).join('') : '')
  const bare = (v: unknown) => (v instanceof Commented ? v.value : v)
  if (Array.isArray(value))
    return value
      .map((item) => {
        const v = bare(item)
        // a mapping in a sequence: its first key goes on the dash's line
        return comment(item) + (isScalar(v) ? `${indent}- ${scalar(v)}\n` : toYaml(v, `${indent}  `).replace(new RegExp(`^${indent}  (?!#)`, 'm'), `${indent}- `))
      })
      .join('')
  return Object.entries(value as Record<string, unknown>)
    .map(([key, item]) => {
      const v = bare(item)
      const k = /^[A-Za-z0-9._/-]+$/.test(key) ? key : JSON.stringify(key)
      return `${comment(item)}${indent}${k}:${isScalar(v) ? ` ${scalar(v)}\n` : `\n${toYaml(v, `${indent}  `)}`}`
    })
    .join('')
}

/** The DaemonSet mounts the host's cgroup v2 tree here, at the same path as on the host. */
const HOST_CGROUP = '/sys/fs/cgroup'

export interface DaemonSetOptions {
  instance: string
  image: string
  /** The skfp command inside the image. */
  skfp: string[]
  /** up's arguments (after `up`). */
  up: string[]
  /** --fastpath auto: up may run the kernel self-test, which needs the host's cgroup namespace. */
  selfTest: boolean
  /** --netns: the host's named namespaces are mounted in. */
  netns: boolean
  /** Interception: the pod's container follows links and routes (up --follow) instead of waiting. */
  follow: boolean
}

const DAEMONSET_HEADER = `# skfp instance "{{instance}}" on every node, as Cilium and Merbridge deploy their datapaths: made by
# \`skfp template daemonset\`. kubectl apply -f FILE; kubectl delete -f FILE takes it down on every
# node (each pod's preStop runs skfp down). The image holds node 20, skfp (bin/run.js on PATH as
# skfp, or --skfp) with its build/ made (skfp build), bpftool, iproute2, util-linux and procps.
`

export function daemonSetManifest(o: DaemonSetOptions): Record<string, unknown> {
  const labels = {'app.kubernetes.io/name': 'skfp', 'app.kubernetes.io/instance': o.instance}
  const skfp = (...args: string[]) => [...o.skfp, ...args]
  const down = skfp('down', `--instance=${o.instance}`)
  const volumeMounts = [
    {name: 'bpffs', mountPath: '/sys/fs/bpf', mountPropagation: 'Bidirectional'},
    {name: 'cgroup', mountPath: HOST_CGROUP, mountPropagation: 'HostToContainer'},
    ...(o.netns ? [{name: 'netns', mountPath: '/run/netns', mountPropagation: 'HostToContainer'}] : []),
  ]
  const container = (name: string, command: unknown, securityContext: unknown = {privileged: true, runAsUser: 0}) => ({name, image: o.image, command, securityContext, volumeMounts})
  // no shell in the image is assumed: node is there for skfp
  const waitForever = ['node', '-e', "process.on('SIGTERM', () => process.exit(0)); setInterval(() => {}, 1 << 30)"]
  const up = (...extra: string[]) => (o.selfTest ? ['nsenter', '--cgroup=/proc/1/ns/cgroup', '--', ...skfp('up', ...o.up, ...extra)] : skfp('up', ...o.up, ...extra))
  const isUp = `const out = require('node:child_process').execFileSync(${JSON.stringify(o.skfp[0])}, ${JSON.stringify([...o.skfp.slice(1), 'status', `--instance=${o.instance}`, '--json'])}, {encoding: 'utf8'}); process.exit(JSON.parse(out).instances[0].state === 'up' ? 0 : 1)`
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: {name: `skfp-${o.instance}`, namespace: 'kube-system', labels},
    spec: {
      selector: {matchLabels: labels},
      updateStrategy: why(
        "one pod per node at a time, the old one gone first: a new pod's up beside the old one would find the\n" +
          "instance up, and the old pod's preStop would then take it down under the new one",
        {type: 'RollingUpdate', rollingUpdate: {maxUnavailable: 1, maxSurge: 0}},
      ),
      template: {
        metadata: {labels},
        spec: {
          hostNetwork: why("the uplinks' tc filters, the ip rules and routes and the net sysctls are the host's", true),
          hostPID: o.selfTest
            ? why(
                "--fastpath auto: up may run the kernel self-test, which moves its probes into a child of the host's\n" +
                  "root cgroup; the kernel refuses that from the container's cgroup namespace (nsdelegate), so skfp-up\n" +
                  "enters the host's through /proc/1 (nsenter --cgroup)",
                true,
              )
            : why("not needed: skfp reaches the host through hostNetwork and the hostPath mounts, never through its processes", false),
          priorityClassName: why("the node's datapath, as kube-proxy's and Cilium's: scheduled and kept before other pods", 'system-node-critical'),
          automountServiceAccountToken: why('skfp never talks to the API server', false),
          tolerations: why('every node, whatever its taints', [{operator: 'Exists'}]),
          terminationGracePeriodSeconds: why("the preStop hook's skfp down takes seconds; it must end within this", 30),
          initContainers: why(
            'the pins go to the host\'s bpffs and stay there: up runs once per pod, and the pod then only waits.\n' +
              'skfp-down first: a pod killed without its preStop (force-deleted, a crash) may have left the instance\n' +
              'up with other settings or half up, which up would refuse; down finishes it (nothing when it is down)',
            [
              container(
                'skfp-down',
                down,
                why(
                  'privileged, every container: skfp writes net sysctls (/proc/sys is read-only in other containers),\n' +
                    "mounts a bpffs for its load probe and bpffs on /sys/fs/bpf when the host lacks it (runtimes'\n" +
                    'AppArmor/SELinux profiles refuse mount() to others), and Bidirectional propagation is for privileged\n' +
                    'containers only. The capabilities it uses: BPF, PERFMON, NET_ADMIN, SYS_ADMIN, and SYS_RESOURCE\n' +
                    'before Linux 5.11 (BPF maps charged to RLIMIT_MEMLOCK). Root: skfp refuses to run as anyone else',
                  {privileged: true, runAsUser: 0},
                ),
              ),
              container('skfp-up', up()),
            ],
          ),
          containers: [
            {
              ...container(
                'skfp',
                o.follow
                  ? why(
                      'interception: the same up, following links and routes (a CNI bridge created again, the default\n' +
                        'routes moved) until SIGTERM, which leaves the instance to the preStop; a down ends it (then the\n' +
                        'container restarts and brings the instance up again)',
                      up('--follow'),
                    )
                  : why('waits, shell-free; PID 1 ignores SIGTERM unless it handles it', waitForever),
              ),
              lifecycle: why('the pod goes, the instance goes: runs before the SIGTERM', {preStop: {exec: {command: down}}}),
              readinessProbe: why(
                'ready while the instance is up: skfp status exits 0 when it is down too, so node reads its state',
                {exec: {command: ['node', '-e', isUp]}, periodSeconds: 30, timeoutSeconds: 10, failureThreshold: 3},
              ),
              resources: why('no limits: the probe runs node and bpftool in this cgroup', {requests: {cpu: '10m', memory: '64Mi'}}),
            },
          ],
          volumes: [
            why(
              "the host's bpffs, where the pins live; Bidirectional: a bpffs that skfp mounts here when the host has\n" +
                'none must reach the host',
              {name: 'bpffs', hostPath: {path: '/sys/fs/bpf', type: 'DirectoryOrCreate'}},
            ),
            {name: 'cgroup', hostPath: {path: HOST_CGROUP, type: 'Directory'}},
            ...(o.netns ? [{name: 'netns', hostPath: {path: '/run/netns', type: 'Directory'}}] : []),
          ],
        },
      },
    },
  }
}

/** The DaemonSet's options from the template's flags, validated as up validates them. */
export function daemonSetOptions(flags: TemplateFlags, upFlags: Record<string, FlagDef>): DaemonSetOptions {
  if (!flags.image) throw usageError('skfp template daemonset needs --image', 'give the container image that holds skfp, node and its tools')
  const cgroup = posix.resolve('/', flags.cgroup ?? HOST_CGROUP)
  if (cgroup !== HOST_CGROUP && !cgroup.startsWith(`${HOST_CGROUP}/`))
    throw usageError(`--cgroup ${cgroup} is not under ${HOST_CGROUP}`, `the pods mount the host's ${HOST_CGROUP} at the same path: give a cgroup v2 directory under it`)
  if (flags.skfp === '' || flags.skfp?.startsWith('-')) throw usageError(`--skfp ${JSON.stringify(flags.skfp)} is not a command`, "give skfp's path in the image, or its name on the image's PATH")
  // always --cgroup: inside a pod, the cgroup v2 mount skfp would find by itself is the pod's own
  const values = {...flags, cgroup}
  const settings = parseUpFlags(values)
  return {instance: settings.instance, image: flags.image, skfp: [flags.skfp ?? 'skfp'], up: upArgv(values, upFlags), selfTest: settings.fastpath === 'auto', netns: !!settings.netns, follow: !!settings.intercept}
}

function daemonSetTemplate(flags: TemplateFlags, upFlags: Record<string, FlagDef>): string {
  const o = daemonSetOptions(flags, upFlags)
  return DAEMONSET_HEADER.replaceAll('{{instance}}', () => o.instance) + toYaml(daemonSetManifest(o))
}
