import {describe, expect, it} from 'vitest'
import {SkfpError} from '../../src/lib/errors.js'
import {validateInstance} from '../../src/lib/pins.js'
import {movedRouting, routingMovedText} from '../../src/lib/intercept.js'
import {diffSettings, parseUpFlags, withDefaults, type RawUpFlags, type UpSettings} from '../../src/lib/settings.js'

const base: RawUpFlags = {instance: 'default', cgroup: '', 'proxy-mark': '0', fastpath: 'auto', 'fastpath-queue': '4194304'}

function usage(fn: () => unknown): SkfpError {
  try {
    fn()
  } catch (e) {
    expect(e).toBeInstanceOf(SkfpError)
    expect((e as SkfpError).kind).toBe('usage')
    expect((e as SkfpError).line).not.toContain('\n')
    return e as SkfpError
  }
  throw new Error('no error')
}

describe('up flags', () => {
  it('parses marks in decimal and hex', () => {
    expect(parseUpFlags({...base, 'proxy-mark': '0xff'}).proxyMark).toBe(255)
    expect(parseUpFlags({...base, 'proxy-mark': '4294967295'}).proxyMark).toBe(0xffffffff)
  })

  it.each(['-1', 'abc', '4294967296', '1e3', '0x', ' ', '1.5'])('refuses the mark %j', (mark) => {
    expect(usage(() => parseUpFlags({...base, 'proxy-mark': mark})).line).toMatch(/--proxy-mark .* out of range: give a whole number/)
  })

  it('refuses an unknown fastpath mode and a tiny queue', () => {
    expect(usage(() => parseUpFlags({...base, fastpath: 'yes'})).line).toMatch(/use auto, on, all or off/)
    usage(() => parseUpFlags({...base, 'fastpath-queue': '100'}))
  })


  it.each(['', 'A', 'a/b', '..', '-x', 'a b', 'x'.repeat(33), 'a;b', '$(id)'])('refuses the instance name %j', (name) => {
    expect(usage(() => validateInstance(name)).line).toMatch(/a-z, 0-9 and -/)
  })

  it('accepts good instance names', () => {
    expect(validateInstance('default')).toBe('default')
    expect(validateInstance('x'.repeat(32))).toHaveLength(32)
  })
})

describe('settings differences', () => {
  it('lists what changes', () => {
    const a = parseUpFlags(base)
    const b = {...a, proxyMark: 7}
    expect(diffSettings(a, b)).toEqual(['proxyMark: 0 → 7'])
    expect(diffSettings(a, a)).toEqual([])
  })

  it('compares by value whatever the order of the keys, and names the interception setting that differs', () => {
    const a = parseUpFlags({...base, 'proxy-port': '7893', 'proxy-mark': '255', uplink: ['eth0']})
    // a record's settings come back through withDefaults, which orders the keys its own way
    const recorded = withDefaults(JSON.parse(JSON.stringify(a)))
    expect(JSON.stringify(recorded.intercept)).not.toBe(JSON.stringify(a.intercept))
    expect(diffSettings(recorded, a)).toEqual([])
    expect(diffSettings(recorded, {...a, intercept: {...a.intercept!, proxyPort: 7894}})).toEqual(['intercept.proxyPort: 7893 → 7894'])
    expect(diffSettings({...a, intercept: null}, a)).toEqual([`intercept: null → ${JSON.stringify(a.intercept)}`])
  })
})

describe('uplinks that follow the default routes', () => {
  const intercept = {...base, 'proxy-port': '7893', 'proxy-mark': '255'}
  const withUplinks = (s: UpSettings, uplinks: string[]): UpSettings => ({...s, intercept: {...s.intercept!, uplinks}})
  const wanted = parseUpFlags(intercept) // no --uplink
  const recorded = withDefaults(JSON.parse(JSON.stringify(withUplinks(wanted, ['wlan0']))))

  it('move with the routes when no --uplink was given and nothing else differs', () => {
    expect(movedRouting(recorded, wanted, withUplinks(wanted, ['eth0']))).toEqual({uplinks: {from: ['wlan0'], to: ['eth0']}})
    expect(movedRouting(recorded, wanted, withUplinks(wanted, ['eth0', 'wlan0']))).toEqual({uplinks: {from: ['wlan0'], to: ['eth0', 'wlan0']}})
    // a fastpath mode asked at the same time comes with the replace
    expect(movedRouting(recorded, {...wanted, fastpath: 'off'}, withUplinks({...wanted, fastpath: 'off'}, ['eth0']))).toEqual({uplinks: {from: ['wlan0'], to: ['eth0']}})
  })

  it('stay when the routes did not move, the uplinks were given, something else differs, or nothing is recorded', () => {
    expect(movedRouting(recorded, wanted, withUplinks(wanted, ['wlan0']))).toBeUndefined()
    const given = parseUpFlags({...intercept, uplink: ['eth0']})
    expect(movedRouting(recorded, given, given)).toBeUndefined()
    const other = parseUpFlags({...intercept, 'bypass-port': ['22']})
    expect(movedRouting(recorded, other, withUplinks(other, ['eth0']))).toBeUndefined()
    expect(movedRouting(undefined, wanted, withUplinks(wanted, ['eth0']))).toBeUndefined()
    const plain = parseUpFlags(base)
    expect(movedRouting(plain, plain, plain)).toBeUndefined()
  })

  it('a VPN coming up or going down changes the VPN marks: followed with given uplinks too, and said in words', () => {
    const withMarks = (s: UpSettings, vpnMarks: string[]): UpSettings => ({...s, intercept: {...s.intercept!, vpnMarks}})
    const given = parseUpFlags({...intercept, uplink: ['eth0']})
    expect(movedRouting(given, given, withMarks(given, ['0xca6c']))).toEqual({vpnMarks: {from: [], to: ['0xca6c']}})
    const both = movedRouting(recorded, wanted, withMarks(withUplinks(wanted, ['wg0', 'wlan0']), ['0xca6c']))
    expect(both).toEqual({uplinks: {from: ['wlan0'], to: ['wg0', 'wlan0']}, vpnMarks: {from: [], to: ['0xca6c']}})
    expect(routingMovedText(both!)).toBe('uplinks wlan0 → wg0, wlan0 (the default routes moved), VPN marks none → 0xca6c (the policy rules changed)')
    // a record of an older skfp has no VPN marks: read as none
    const old = withDefaults(JSON.parse(JSON.stringify({...given, intercept: {...given.intercept!, vpnMarks: undefined}})))
    expect(movedRouting(old, given, given)).toBeUndefined()
  })
})
