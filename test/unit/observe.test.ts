// Observations: a tool that fails is an error, never "nothing there"; its JSON is checked, not cast;
// a record written by an older skfp takes the defaults for the settings it did not know.
import {describe, expect, it} from 'vitest'
import {onceEach, type Cmd, type Runner, type RunResult} from '../../src/lib/exec.js'
import {SkfpError} from '../../src/lib/errors.js'
import {diffSettings, withDefaults, type UpSettings} from '../../src/lib/settings.js'
import * as bpftool from '../../src/lib/tools/bpftool.js'
import * as ip from '../../src/lib/tools/ip.js'
import * as tc from '../../src/lib/tools/tc.js'

/** Answers every command with the same result, and remembers the argv. */
class FakeRunner implements Runner {
  readonly seen: string[][] = []
  readonly inputs: (string | undefined)[] = []
  constructor(private readonly result: RunResult) {}
  async run(cmd: Cmd, opts: {allowFailure?: boolean; input?: string} = {}): Promise<RunResult> {
    this.seen.push([cmd.tool, ...(cmd.netns ? ['@' + cmd.netns] : []), ...cmd.args])
    this.inputs.push(opts.input)
    if (this.result.exitCode !== 0 && !opts.allowFailure) throw new SkfpError('tool', `${cmd.tool} failed (exit ${this.result.exitCode})`, this.result.stderr)
    return this.result
  }
}
const answer = (stdout: string, exitCode = 0, stderr = '') => new FakeRunner({stdout, stderr, exitCode})

describe('tool observations', () => {
  it('bpftool: the live readers by the state word of each reader entry (a demoted reader counts as barred)', async () => {
    const hex = (n: number, bytes: number) => Array.from({length: bytes}, (_, i) => ((BigInt(n) >> BigInt(8 * i)) & 0xffn).toString(16).padStart(2, '0'))
    const entry = (state: number) => ({key: hex(0, 56), value: [...hex(0xffff888012345678, 8), ...hex(42, 8), ...hex(2, 4), ...hex(7, 4), ...hex(state, 8)]})
    const dump = JSON.stringify([0, 1, 1, 2, 3, 4, 4, 9].map(entry))
    expect(await bpftool.read(answer(dump), bpftool.readerStates('/sys/fs/bpf/skfp/x/readers'))).toEqual({watched: 1, promoted: 2, barred: 3, released: 1})
  })

  it('tc: a failing `filter show` is an error; a device that is gone has no filters', async () => {
    await expect(tc.filters(answer('', 2, 'RTNETLINK answers: Operation not permitted'), 'eth0', 'egress')).rejects.toThrow(/tc filter show dev eth0 failed \(exit 2\)/)
    expect(await tc.filters(answer('', 1, 'Cannot find device "eth9"'), 'eth9', 'egress')).toEqual([])
    expect(await tc.filters(answer('[{"protocol":"all","pref":1487,"kind":"bpf"}]'), 'eth0', 'egress')).toEqual([{protocol: 'all', pref: 1487, kind: 'bpf'}])
    await expect(tc.qdiscs(answer('[{"handle":"ffff:"}]'), 'eth0')).rejects.toThrow(/printed JSON of an unexpected shape/)
  })

  it('bpftool: a failing query throws; its JSON is checked; an empty cgroup has no attachments', async () => {
    await expect(bpftool.read(answer('', 255, 'Error: bpf obj get: Permission denied'), bpftool.progShowPinned('/sys/fs/bpf/x'))).rejects.toBeInstanceOf(SkfpError)
    await expect(bpftool.read(answer('{"id":"7"}'), bpftool.progShowPinned('/sys/fs/bpf/x'))).rejects.toThrow(/unexpected shape/)
    await expect(bpftool.read(answer('not json'), bpftool.progShowPinned('/sys/fs/bpf/x'))).rejects.toThrow(/printed no valid JSON/)
    expect(await bpftool.read(answer('{"id":7,"name":"skfp_sk_msg","type":"sk_msg"}'), bpftool.progShowPinned('/p'))).toMatchObject({id: 7})
    expect(await bpftool.cgroupShow(answer(''), '/sys/fs/cgroup/x')).toEqual([])
    await expect(bpftool.cgroupShow(answer('', 255, 'Error: can\'t open cgroup'), '/sys/fs/cgroup/x')).rejects.toBeInstanceOf(SkfpError)
  })

  it('bpftool: per-CPU counters from a BTF-formatted dump and from a raw one (a map without BTF, 5.10)', async () => {
    const formatted = '[{"key":[],"values":[],"formatted":{"key":2,"values":[{"cpu":0,"value":3},{"cpu":1,"value":4}]}}]'
    expect((await bpftool.read(answer(formatted), bpftool.perCpuSums('/m')))[2]).toBe(7n)
    const raw = '[{"key":["0x02","0x00","0x00","0x00"],"values":[{"cpu":0,"value":["0x01","0x01","0x00","0x00","0x00","0x00","0x00","0x00"]},{"cpu":1,"value":["0xff","0x00","0x00","0x00","0x00","0x00","0x00","0x01"]}]}]'
    expect((await bpftool.read(answer(raw), bpftool.perCpuSums('/m')))[2]).toBe(257n + 255n + (1n << 56n))
    await expect(bpftool.read(answer('[{"key":2}]'), bpftool.perCpuSums('/m'))).rejects.toThrow(/unexpected shape/)
  })

  it('bpftool: several pin reads run in one bpftool batch, each result parsed by its query; one failing read fails them all, named', async () => {
    const out = JSON.stringify([
      {command: ['prog', 'show', 'pinned', '/p'], output: {id: 7, name: 'skfp_sk_msg', type: 'sk_msg'}},
      {command: ['map', 'dump', 'pinned', '/m'], output: []},
    ])
    const r = answer(out)
    expect(await bpftool.readAll(r, [bpftool.progShowPinned('/p'), bpftool.mapEntryCount('/m')])).toEqual([{id: 7, name: 'skfp_sk_msg', type: 'sk_msg'}, 0])
    expect(r.seen).toEqual([['bpftool', '-j', 'batch', 'file', '-']])
    expect(r.inputs).toEqual(['prog show pinned /p\nmap dump pinned /m\n'])
    const failed = JSON.stringify([{command: ['prog', 'show', 'pinned', '/p'], output: {error: 'bpf obj get (/p): No such file or directory'}}])
    await expect(bpftool.readAll(answer(failed, 255), [bpftool.progShowPinned('/p'), bpftool.mapEntryCount('/m')])).rejects.toThrow(/^bpftool prog show pinned failed/)
    await expect(bpftool.readAll(answer(JSON.stringify([{command: ['prog'], output: {id: '7'}}, {command: ['map'], output: []}])), [bpftool.progShowPinned('/p'), bpftool.mapEntryCount('/m')])).rejects.toThrow(/unexpected shape/)
    // a path bpftool's batch would split or cut at '#' is read on its own
    const odd = answer('{"id":7,"name":"x","type":"sk_msg"}')
    await bpftool.readAll(odd, [bpftool.progShowPinned('/a b'), bpftool.progShowPinned('/c#d')])
    expect(odd.seen).toEqual([['bpftool', '-j', 'prog', 'show', 'pinned', '/a b'], ['bpftool', '-j', 'prog', 'show', 'pinned', '/c#d']])
  })

  it('inside a netns ip, tc and ss use their own netns option (one program); a tc filter naming a pin goes through nsenter', async () => {
    const r = answer('[]')
    await ip.rules(r, 6, 'lab')
    await tc.filters(r, 'lo', 'ingress', 'lab')
    await ip.listeners(r, 'lab')
    expect(r.seen).toEqual([['ip', '-n', 'lab', '-j', '-6', 'rule', 'show'], ['tc', '-n', 'lab', '-j', 'filter', 'show', 'dev', 'lo', 'ingress'], ['ss', '-N', 'lab', '-Hlntu']])
    expect(tc.filterAdd('lo', 'ingress', '/sys/fs/bpf/skfp/x/progs/p', 'lab').netns).toBe('lab') // it names a pin
    expect(ip.ruleAdd(4, 1, 2, 3, 'lab')).toEqual({tool: 'ip', args: ['-n', 'lab', '-4', 'rule', 'add', 'fwmark', '0x1', 'lookup', '2', 'priority', '3']})
  })

  it('ss: TCP listeners and UDP sockets from one `ss -Hlntu`', async () => {
    const out = ['tcp   LISTEN 0      4096       127.0.0.1:7893      0.0.0.0:*', 'udp   UNCONN 0      0              [::1]:7893         [::]:*', 'tcp   LISTEN 0      511             [::]:80           [::]:*', ''].join('\n')
    expect(await ip.listeners(answer(out))).toEqual({tcp: ['127.0.0.1:7893', '[::]:80'], udp: ['[::1]:7893']})
  })

  it('one observation runs each distinct read once', async () => {
    const r = answer('[]')
    const reads = onceEach(r)
    await Promise.all([tc.filters(reads, 'lo', 'ingress'), tc.filters(reads, 'lo', 'ingress'), tc.filters(reads, 'lo', 'egress')])
    expect(r.seen).toHaveLength(2)
  })

  it('ip: entries without the fields skfp reads are refused', async () => {
    await expect(ip.links(answer('[{"name":"eth0"}]'))).rejects.toThrow(/ip -j link show printed JSON of an unexpected shape/)
    expect(await ip.rules(answer('[{"priority":0,"table":"local"}]'), 4)).toEqual([{priority: 0, table: 'local'}])
  })
})

describe('a record of an older skfp', () => {
  const current: UpSettings = {instance: 'lab', cgroup: '/sys/fs/cgroup/lab', proxyMark: 255, fastpath: 'on', fastpathQueue: 4194304, intercept: null}

  it('settings it did not know take their defaults, so the same flags differ in nothing', () => {
    const old = {instance: 'lab', cgroup: '/sys/fs/cgroup/lab', proxyMark: 255, fastpath: 'on' as const}
    expect(diffSettings(old as UpSettings, current)).toEqual(['fastpathQueue: unset → 4194304', 'intercept: unset → null'])
    expect(diffSettings(withDefaults(old), current)).toEqual([])
    // a setting an older skfp recorded that no longer exists (the hand-off wait's) is dropped
    expect(diffSettings(withDefaults({...old, fastpathQueue: 4194304, fastpathSpinUs: 20} as unknown as UpSettings), current)).toEqual([])
  })

  it('interception settings it did not know take theirs too; what it recorded wins', () => {
    const old = {...current, intercept: {uplinks: ['eth0'], proxyPort: 7893, proxyAddr4: '127.0.0.1', proxyAddr6: '::1', fwmark: 0x77, table: 1487}}
    expect(withDefaults(old as never).intercept).toEqual({...old.intercept, bypass: [], bypassPorts: [], bypassPrivate: true, proxyDown: 'fail-fast', udp: false, lan: [], interceptCgroups: [], bypassCgroups: [], vpnMarks: []}) // an older skfp did not intercept UDP, nor know VPN marks
  })
})

describe('the environment of programs skfp runs', () => {
  it('is LC_ALL=C and the trusted PATH, nothing of the caller', async () => {
    const {runProgram} = await import('../../src/lib/exec.js')
    process.env.SKFP_TEST_LEAK = 'leaked'
    const r = await runProgram(['/usr/bin/env'])
    expect(r.stdout.split('\n').sort()).toEqual(['LC_ALL=C', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin:/usr/local/bin'])
  })
})
