// The text of `skfp status`: the adaptive fastpath's readers, live and since up.
import {describe, expect, it} from 'vitest'
import {renderStatus} from '../../src/lib/render.js'
import type {InstanceStatus} from '../../src/lib/status.js'

const plain = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '')

function up(readers: InstanceStatus['fastpath']['readers']): InstanceStatus {
  return {
    instance: 'lab',
    state: 'up',
    problems: [],
    changingBy: null,
    followedBy: null,
    warnings: [],
    settings: null,
    fastpath: {enabled: true, sockets: 3, variant: 'kfunc', adaptive: readers !== null, readers},
    programs: {sockops: {id: 7, attached: true, cgroup: '/sys/fs/cgroup/lab'}, skMsg: {id: 8}, finHold: {id: 9, attached: true}},
    intercept: null,
    counters: null,
    pinDir: '/sys/fs/bpf/skfp/lab',
  }
}

describe('status text', () => {
  it('shows the live readers by state, then what happened since up', () => {
    const text = plain(
      renderStatus(up({promoted: 5, keptOnTcp: {splice: 1, waitall: 0, blocking: 2, notJoined: 4}, released: 3, barredAfterPromotion: 0, stranded: 0, now: {watched: 1, promoted: 2, barred: 0, released: 1}})),
    )
    const lines = text.split('\n')
    const now = lines.findIndex((l) => l.startsWith('  readers    now: 2 promoted, 1 watched, 0 barred, 1 released'))
    expect(now, text).toBeGreaterThan(0)
    expect(lines[now + 1]).toBe('  since up   5 promoted; kept on TCP: 1 splice, 0 MSG_WAITALL, 2 blocking recv, 4 blocking sockets not joined; 3 left the sockhash')
  })

  it('says nothing of readers when every reader is redirected to (--fastpath all)', () => {
    expect(plain(renderStatus(up(null)))).not.toMatch(/readers|since up/)
  })

  it('an instance up with the fastpath off: not loaded, no sockhash, no programs of it', () => {
    const off = {...up(null), fastpath: {enabled: false, sockets: null, variant: null, adaptive: false, readers: null}, programs: {sockops: null, skMsg: null, finHold: null}}
    const text = plain(renderStatus(off))
    expect(text).toMatch(/^ {2}fastpath {3}off \(not loaded\)$/m)
    expect(text).not.toMatch(/sockhash|fin hold|sock_ops/)
  })

  it('half up while another skfp works on it: who, and to wait; not to run down', () => {
    const busy = {...up(null), state: 'half-up' as const, problems: ['no undo record (up stopped before writing it)'], changingBy: 4242}
    const text = plain(renderStatus(busy))
    expect(text).toContain('  ! being changed by skfp pid 4242 (an up or a down at work) — wait for it')
    expect(text).toContain('  ! no undo record (up stopped before writing it)\n')
    expect(text).not.toMatch(/skfp down/)
    expect(plain(renderStatus({...busy, changingBy: null}))).toContain('no undo record (up stopped before writing it) — run `skfp down --instance lab`')
  })

  it('names the follower (up --follow) of an instance, and nothing when there is none', () => {
    expect(plain(renderStatus({...up(null), followedBy: 4343}))).toContain('\n  followed by skfp pid 4343 (up --follow: it puts the instance right when interfaces or default routes change)\n')
    expect(plain(renderStatus(up(null)))).not.toContain('followed by')
  })

  it('shows the FIN hold beside sock_ops and sk_msg', () => {
    expect(plain(renderStatus(up(null)))).toContain('  fin hold   prog 9, attached (cgroup ingress)')
  })
})
