/**
 * The datapath's objects and which of them the running kernel takes. Interception (tc) and the
 * fastpath (sock_ops + sk_msg) are separate objects sharing the config and counter maps, so a
 * fastpath the kernel refuses never takes interception down with it. The fastpath is built in
 * variants (bpf/lib/kernel.h) and skfp loads the first one the kernel accepts: found by loading
 * each into a throwaway bpffs, never by reading the kernel's version number.
 */
import {createHash} from 'node:crypto'
import {mkdirSync, mkdtempSync, readFileSync, rmdirSync, statSync} from 'node:fs'
import {release, tmpdir} from 'node:os'
import {join} from 'node:path'
import type {Cmd, Runner} from './exec.js'
import * as bpftool from './tools/bpftool.js'

export type VariantName = 'kfunc' | 'probe-read'

export interface FastpathVariant {
  name: VariantName
  /** Object file name under build/<target>/. */
  file: string
  /** clang defines that make this variant. */
  defines: string[]
  /** How it reads kernel memory: what the kernel must offer. */
  reads: string
}

/** In order of preference: the first the kernel loads is used. */
export const FASTPATH_VARIANTS: FastpathVariant[] = [
  {name: 'kfunc', file: 'fastpath.bpf.o', defines: ['-DSKFP_KFUNCS'], reads: 'typed read-only views (kfuncs bpf_rdonly_cast, bpf_cast_to_kern_ctx: Linux 6.2+)'},
  {name: 'probe-read', file: 'fastpath-compat.bpf.o', defines: [], reads: 'bpf_probe_read_kernel (Linux 6.1+)'},
]
export const INTERCEPT_OBJECT = 'intercept.bpf.o'
export type ReadersVariantName = 'tracepoint' | 'fexit'

/** The adaptive fastpath's tracing program (bpf/readers.bpf.c), attached by build/bin/skfp-attach,
 * in order of preference: the first the kernel takes is used. */
export const READERS_VARIANTS: {name: ReadersVariantName; file: string; defines: string[]; hook: string}[] = [
  {name: 'tracepoint', file: 'readers.bpf.o', defines: [], hook: 'tp_btf sock_recv_length (Linux 6.4+)'},
  {name: 'fexit', file: 'readers-fexit.bpf.o', defines: ['-DSKFP_READERS_FEXIT'], hook: 'fexit tcp_bpf_recvmsg (Linux 6.1; refused where the kernel is locked down)'},
]
/** Every object file a probe loads. */
export const DATAPATH_OBJECTS = [INTERCEPT_OBJECT, ...FASTPATH_VARIANTS.map((v) => v.file), ...READERS_VARIANTS.map((v) => v.file)]
/** The maps of the intercept object the fastpath object reuses (by name). */
export const SHARED_MAPS = ['skfp_config', 'skfp_counters'] as const

export interface LoadRefusal {
  object: string
  /** One line: what the kernel lacks. */
  reason: string
  /** libbpf's and the verifier's output, for --verbose. */
  log: string
}

export interface DatapathSupport {
  kernel: string
  /** null when the intercept object loads (interception and the instance state work). */
  intercept: LoadRefusal | null
  /** The fastpath variant the kernel loads, or null. */
  fastpath: VariantName | null
  /** Variants tried before the one that loaded (or all of them). */
  refused: LoadRefusal[]
  /** Why no readers variant (the adaptive fastpath) attaches, every variant's reason in one; null:
   * one does (readersVariant). Absent: not probed (no fastpath). */
  readers?: LoadRefusal | null
  readersVariant?: ReadersVariantName | null
  /** Read from this boot's pin (SUPPORT_PIN), not probed by this run: the refusals have no log. */
  fromPin?: boolean
}

/** What a probe's result depends on besides the kernel: the boot (the kernel), the objects, bpftool. */
export function supportKey(objectDir: string, bpftool: string, boot: string): string {
  const h = createHash('sha256').update(boot)
  const tool = statSync(bpftool)
  h.update(`\0${bpftool}\0${tool.size}\0${tool.mtimeMs}`)
  for (const file of DATAPATH_OBJECTS) h.update(readFileSync(join(objectDir, file)))
  return h.digest('hex')
}

/** The support as it is pinned: one line per refusal, without the loader's output. */
export const pinnableSupport = (s: DatapathSupport): DatapathSupport => {
  const short = (r: LoadRefusal): LoadRefusal => ({object: r.object, reason: r.reason.slice(0, 300), log: ''})
  return {kernel: s.kernel, intercept: s.intercept && short(s.intercept), fastpath: s.fastpath, refused: s.refused.map(short), readers: s.readers && short(s.readers), readersVariant: s.readersVariant}
}

/** Loads the intercept object and then each fastpath variant into a private bpffs mount, and removes it. */
export async function probeDatapath(runner: Runner, objectDir: string): Promise<DatapathSupport> {
  const mnt = mkdtempSync(join(tmpdir(), 'skfp-probe-'))
  const support: DatapathSupport = {kernel: release(), intercept: null, fastpath: null, refused: []}
  try {
    await runner.run({tool: 'mount', args: ['-t', 'bpf', 'bpf', mnt]})
    try {
      const base = join(mnt, 'intercept')
      // bpftool wants the parent of its pin directories to exist
      for (const dir of ['intercept', ...FASTPATH_VARIANTS.map((v) => v.name)]) mkdirSync(join(mnt, dir))
      const icept = await runner.run(bpftool.loadAll(join(objectDir, INTERCEPT_OBJECT), join(base, 'progs'), join(base, 'maps')), {allowFailure: true, timeoutMs: 120_000})
      if (icept.exitCode !== 0) {
        support.intercept = refusal(INTERCEPT_OBJECT, icept.stderr)
        return support
      }
      const load = (cmd: Cmd) => runner.run(cmd, {allowFailure: true, timeoutMs: 120_000})
      const fp = await firstLoading(FASTPATH_VARIANTS, (v) => load(bpftool.loadAll(join(objectDir, v.file), join(mnt, v.name, 'progs'), join(mnt, v.name, 'maps'), sharedMaps(join(base, 'maps')))))
      support.refused = fp.refused
      if (!fp.taken) return support
      support.fastpath = fp.taken.name
      const fpMaps = join(mnt, fp.taken.name, 'maps')
      const rd = await firstLoading(READERS_VARIANTS, (rv) => load(attachReaders(join(objectDir, rv.file), null, [join(base, 'maps'), fpMaps])))
      support.readersVariant = rd.taken?.name ?? null
      support.readers = rd.taken
        ? null
        : {object: rd.refused.map((r) => r.object).join(', '), reason: oneLine(rd.refused), log: rd.refused.map((r) => r.log).join('\n')}
      return support
    } finally {
      await runner.run({tool: 'umount', args: [mnt]}, {allowFailure: true})
    }
  } finally {
    rmdirSync(mnt)
  }
}

/** The first variant the kernel takes (tried in order), and why it refused those before it. */
async function firstLoading<V extends {file: string}>(variants: readonly V[], tryLoad: (v: V) => Promise<{exitCode: number; stderr: string}>): Promise<{taken: V | null; refused: LoadRefusal[]}> {
  const refused: LoadRefusal[] = []
  for (const v of variants) {
    const r = await tryLoad(v)
    if (r.exitCode === 0) return {taken: v, refused}
    refused.push(refusal(v.file, r.stderr))
  }
  return {taken: null, refused}
}

/** Each variant the kernel refused, with why, in one line. */
const oneLine = (refused: LoadRefusal[]): string => refused.map((r) => `${r.object}: ${r.reason}`).join('; ')
export const refusals = (support: DatapathSupport): string => oneLine(support.refused)

/** skfp-attach: loads the readers object with the instance's maps and pins its links in linkDir
 * (null: --check, attach and detach again). */
export const attachReaders = (object: string, linkDir: string | null, mapDirs: string[]): Cmd => ({
  tool: 'skfp-attach',
  args: linkDir ? [object, linkDir, ...mapDirs] : ['--check', object, ...mapDirs],
})

/** `map name NAME pinned PATH` pairs for bpftool: the intercept object's maps under mapDir. */
export const sharedMaps = (mapDir: string): Record<string, string> => Object.fromEntries(SHARED_MAPS.map((m) => [m, join(mapDir, m)]))

function refusal(object: string, stderr: string): LoadRefusal {
  return {object, reason: loadFailureReason(stderr), log: stderr.trim()}
}

/** The one line that says what the kernel lacks, from libbpf's and the verifier's output. */
export function loadFailureReason(output: string): string {
  // bpftool's notice about libbpf's strict mode says nothing about the failure
  const stderr = output
    .split('\n')
    .filter((l) => !/libbpf strict mode|If it used to work for this object file/.test(l))
    .join('\n')
  const m = (re: RegExp) => stderr.match(re)
  let hit: RegExpMatchArray | null
  if ((hit = m(/extern \(func ksym\) '(\w+)': not found in kernel/) ?? m(/extern (?:kfunc|func|ksym) '(\w+)' not found/) ?? m(/failed to find BTF for extern '(\w+)'/)))
    return `the kernel has no kfunc ${hit[1]}`
  if ((hit = m(/unknown func (bpf_\w+)#\d+/))) return `the kernel does not offer the helper ${hit[1]} to this program type`
  if ((hit = m(/program of this type isn't supported/))) return 'the kernel does not support this program type'
  if ((hit = m(/failed to find kernel BTF type ID of '(\w+)'/) ?? m(/attach_btf_id.*?'btf_trace_(\w+)'/))) return `the kernel has no tracepoint ${hit[1].replace(/^btf_trace_/, '')}`
  if ((hit = m(/prog '(\w+)': relo #\d+: .*?(?:failed|no matching targets)[^\n]*/))) return `a kernel structure skfp reads is not as expected (${hit[1]}: CO-RE relocation failed)`
  if (/kernel BTF is missing|failed to find valid kernel BTF|vmlinux BTF/i.test(stderr)) return 'the kernel has no BTF (/sys/kernel/btf/vmlinux)'
  if ((hit = m(/prog '(\w+)': failed to load: (-?\d+)/))) {
    const verifierLast = stderr
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('libbpf:') && !l.startsWith('Error:') && !/^\d+: \(/.test(l) && !l.startsWith(';'))
      .pop()
    return `the verifier refused ${hit[1]} (${hit[2]}${verifierLast ? `: ${verifierLast}` : ''})`
  }
  return stderr.trim().split('\n').pop() ?? 'unknown reason'
}

/** Whether the running kernel's BTF names a type member or function (for `doctor`'s feature list). */
export function kernelBtfHas(names: string[], btfPath = '/sys/kernel/btf/vmlinux'): Record<string, boolean> {
  let btf: Buffer | undefined
  try {
    btf = readFileSync(btfPath)
  } catch {
    btf = undefined
  }
  return Object.fromEntries(names.map((n) => [n, !!btf && btf.includes(Buffer.from(`\0${n}\0`))]))
}

export interface KernelFeature {
  name: string
  status: 'available' | 'missing' | 'fallback'
  /** What skfp uses it for, and what it does instead when it is missing. */
  detail: string
}

/** What the running kernel offers skfp and what that leaves: the `doctor --json` features and capabilities. */
export interface KernelReport {
  kernel: string
  features: KernelFeature[]
  /** reuseportProxies: bpf_sk_assign takes a socket of a SO_REUSEPORT group (v2ray's, xray's): Linux 6.5+. */
  /** adaptive: the readers variant that attaches (the adaptive fastpath), or null. */
  capabilities: {interception: boolean; fastpath: VariantName | null; guard: 'msg_tot_len' | 'queue-walk' | null; adaptive: ReadersVariantName | null; reuseportProxies: boolean}
}

/** Whether bpf_sk_assign takes SO_REUSEPORT sockets (Linux 6.5+). Read from the kernel's BTF: the
 * series that made it (net: "support SO_REUSEPORT sockets with bpf_sk_assign") also replaced the
 * socket-lookup helpers by inet_lookup_run_sk_lookup, which older kernels lack (checked on Debian's
 * 5.10, 6.1, 6.12 and 7.2 kernels; the kernel matrix checks it against the real refusal). */
export const assignsReuseport = (btfPath = '/sys/kernel/btf/vmlinux') => kernelBtfHas(['inet_lookup_run_sk_lookup'], btfPath).inet_lookup_run_sk_lookup

export const REUSEPORT_NOTE =
  "bpf_sk_assign refuses a proxy socket of a SO_REUSEPORT group on this kernel (v2ray and xray open theirs so): their connections and datagrams get --proxy-down; run a proxy without SO_REUSEPORT (ss-redir without --reuse-port) or Linux 6.5 or later"

export function kernelReport(support: DatapathSupport, btfPath = '/sys/kernel/btf/vmlinux'): KernelReport {
  const has = kernelBtfHas(['sock', 'bpf_rdonly_cast', 'bpf_cast_to_kern_ctx', 'msg_tot_len', 'inet_lookup_run_sk_lookup'], btfPath)
  const btf = has.sock
  const fp = support.fastpath
  const features: KernelFeature[] = [
    {name: 'kernel BTF', status: btf ? 'available' : 'missing', detail: btf ? 'CO-RE: every object is relocated against this kernel' : 'no object loads: a kernel built with CONFIG_DEBUG_INFO_BTF=y is needed'},
    {
      name: 'tc interception (bpf_skc_lookup_tcp, bpf_sk_assign)',
      status: support.intercept ? 'missing' : 'available',
      detail: support.intercept ? `intercept.bpf.o refused: ${support.intercept.reason}` : 'intercept.bpf.o loads: interception works',
    },
    {
      name: 'bpf_sk_assign of SO_REUSEPORT sockets',
      status: has.inet_lookup_run_sk_lookup ? 'available' : 'missing',
      detail: has.inet_lookup_run_sk_lookup ? 'proxies whose listener or UDP socket uses SO_REUSEPORT (v2ray, xray) take intercepted traffic' : REUSEPORT_NOTE,
    },
    {
      name: 'kfuncs bpf_rdonly_cast, bpf_cast_to_kern_ctx',
      status: has.bpf_rdonly_cast && has.bpf_cast_to_kern_ctx ? 'available' : 'fallback',
      detail: has.bpf_rdonly_cast && has.bpf_cast_to_kern_ctx ? 'the fastpath reads kernel sockets with plain loads' : 'the fastpath reads kernel sockets with bpf_probe_read_kernel (variant probe-read)',
    },
    {
      name: 'sk_psock.msg_tot_len',
      status: has.msg_tot_len ? 'available' : 'fallback',
      detail: has.msg_tot_len
        ? "the memory guard reads a receiver's queued bytes in one load"
        : "the memory guard walks the receiver's queue (at most 64 messages; a longer queue counts as over the bound)",
    },
    {
      name: 'fastpath object (sock_ops, sk_msg, sockhash, socket storage, bpf_loop)',
      status: fp ? (fp === FASTPATH_VARIANTS[0].name ? 'available' : 'fallback') : 'missing',
      detail: fp
        ? `variant ${fp} loads${support.refused.length ? ` (${refusals(support)})` : ''}`
        : `no variant loads: ${refusals(support)}`,
    },
    {
      name: 'adaptive fastpath (a tracing program after each recvmsg: tp_btf sock_recv_length, or fexit tcp_bpf_recvmsg)',
      status: !fp || support.readers !== null ? 'missing' : support.readersVariant === READERS_VARIANTS[0].name ? 'available' : 'fallback',
      detail: !fp
        ? 'needs the fastpath object'
        : support.readers === null
          ? `${READERS_VARIANTS.find((v) => v.name === support.readersVariant)?.hook ?? 'attaches'}: a reader gets redirected bytes only once it has read with recv(); --fastpath auto can be on`
          : `refused (${support.readers?.reason ?? 'not probed'}): --fastpath auto stays off; --fastpath all redirects to every reader`,
    },
  ]
  return {
    kernel: support.kernel,
    features,
    capabilities: {interception: !support.intercept, fastpath: fp, guard: fp ? (has.msg_tot_len ? 'msg_tot_len' : 'queue-walk') : null, adaptive: fp && support.readers === null ? (support.readersVariant ?? null) : null, reuseportProxies: has.inet_lookup_run_sk_lookup},
  }
}
