// The fastpath under change: kill switch flipped mid-transfer, down with live connections.
import {describe, expect, it} from 'vitest'
import {expectedSha} from '../fixtures/transfer.mjs'
import {FIXTURE, skfp, status, upArgs, withSandbox} from './helpers.js'

const MiB = 1024 * 1024
const BYTES = 1024 * MiB

async function duringTransfer(what: string, change: (sb: any, ns: string) => Promise<void>) {
  return withSandbox(what, async (sb) => {
    const ns = await sb.addNetns('a')
    expect((await skfp(upArgs(sb, ns))).exitCode).toBe(0)
    const child = sb.start(ns, [process.execPath, FIXTURE, 'pair', '--addr', '127.0.0.1', '--port', '0', '--bytes', String(BYTES), '--seed', what])
    // wait until the fastpath carries data, then change things under the live connection
    for (let i = 0; i < 250 && (await status(sb.name)).counters.bytesRedirected === 0; i++) await new Promise((r) => setTimeout(r, 20))
    expect((await status(sb.name)).counters.bytesRedirected, 'the fastpath carried bytes before the change').toBeGreaterThan(0)
    // the change starts while the transfer runs; whether it is still running when the change is done
    // is a race with the machine's speed (the kill switch's case proves it went on: 8 MiB more by TCP)
    expect(child.exitCode, 'the transfer is still running when the change starts').toBeNull()
    await change(sb, ns)
    const r = JSON.parse(String((await child).stdout).trim().split('\n').pop()!)
    expect(r.serverReceived).toBe(BYTES)
    expect(r.serverReceivedSha).toBe(expectedSha(`${what}-up`, BYTES))
    expect(r.clientReceivedSha).toBe(expectedSha(`${what}-down`, BYTES))
    return sb
  })
}

describe('live connections', () => {
  it('kill switch mid-transfer: data intact, new messages go over TCP', async () => {
    let before = 0
    let after = 0
    await duringTransfer('ks', async (sb, ns) => {
      const off = await skfp(upArgs(sb, ns).map((a) => (a === 'all' ? 'off' : a)))
      expect(off.exitCode, off.stderr).toBe(0)
      expect(off.json.action).toBe('switched')
      const c0 = (await status(sb.name)).counters
      before = c0.bytesRedirected
      // the transfer goes on over plain TCP: wait until another 8 MiB went that way
      let c = c0
      for (let i = 0; i < 250 && c.bytesFallback < c0.bytesFallback + 8 * MiB; i++) {
        await new Promise((r) => setTimeout(r, 20))
        c = (await status(sb.name)).counters
      }
      expect(c.bytesFallback, 'the transfer went on over TCP').toBeGreaterThanOrEqual(c0.bytesFallback + 8 * MiB)
      after = c.bytesRedirected
      expect((await status(sb.name)).fastpath.enabled).toBe(false)
    })
    expect(after).toBe(before) // nothing redirected once the switch is off
  })

  it('down with a live fastpath connection: it keeps working until it closes, nothing lost', async () => {
    await duringTransfer('dl', async (sb) => {
      const down = await skfp(['down', '--instance', sb.name])
      expect(down.exitCode, down.stderr).toBe(0)
      expect((await status(sb.name)).state).toBe('down')
    })
  })
})
