import {describe, expect, it} from 'vitest'
import {CONFIG_SIZE, decodeConfig, decodeCounters, decodeRecord, encodeConfig, encodeRecord, ipv6Bytes, ipv6Text, RECORD_SIZE} from '../../src/lib/config.js'

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')

describe('struct skfp_config encoding', () => {
  it('matches the C layout byte for byte (offsets from bpf/skfp.h)', () => {
    const bytes = encodeConfig({
      flags: 1,
      proxyMark: 0xff,
      fwmark: 0x1f00,
      loIfindex: 1,
      proxyAddr4: '127.0.0.1',
      proxyAddr6: '::1',
      proxyPort: 7893,
      proxyDown: 'pass',
      fastpathQueue: 4194304n,
      vpnMarks: [{mark: 0xca6c, mask: 0xffffffff}, {mark: 0x80000, mask: 0xff0000}],
    })
    expect(bytes.length).toBe(CONFIG_SIZE)
    expect(hex(bytes)).toBe(
      [
        '19000000', // flags: FASTPATH | HAS_PROXY_V4 | HAS_PROXY_V6 (little endian)
        'ff000000', // proxy_mark
        '001f0000', // fwmark
        '01000000', // lo_ifindex
        '7f000001', // proxy_addr4, network order
        '00000000000000000000000000000001', // proxy_addr6, network order
        'd51e', // proxy_port 7893 = 0x1ed5, host order
        '02', // proxy_down = pass
        '00', // _pad0
        '0000400000000000', // fastpath_queue
        '00000000', // _unused0 (the hand-off wait's, retired)
        '00000000', // _pad1
        '6cca0000' + '00000800' + '00000000' + '00000000', // vpn_mark[4]
        'ffffffff' + '0000ff00' + '00000000' + '00000000', // vpn_mask[4]: 0 = unused
      ].join(''),
    )
  })

  it('reads and writes the 48-byte struct of an instance an older skfp loaded', () => {
    const c = {flags: 1, proxyMark: 0, fwmark: 0, loIfindex: 0, proxyPort: 0, proxyDown: 'fail-fast' as const, fastpathQueue: 4194304n}
    const old = encodeConfig(c, 48)
    expect(old.length).toBe(48)
    expect(hex(old)).toBe(hex(encodeConfig(c)).slice(0, 96))
    expect(decodeConfig(old)).toEqual({...c, vpnMarks: []})
  })

  it('ignores the spin time a record of an older skfp wrote at byte 48', () => {
    const c = {flags: 1, proxyMark: 0, fwmark: 0, loIfindex: 0, proxyPort: 0, proxyDown: 'fail-fast' as const, fastpathQueue: 4194304n}
    const bytes = encodeConfig(c)
    new DataView(bytes.buffer).setUint32(48, 20000, true)
    expect(decodeConfig(bytes)).toEqual({...c, vpnMarks: []})
  })

  it('round-trips', () => {
    const c = {flags: 3, proxyMark: 0xdeadbeef, fwmark: 7, loIfindex: 9, proxyAddr4: '198.18.0.1', proxyAddr6: 'fd00::1', proxyPort: 65535, proxyDown: 'fail-closed' as const, fastpathQueue: 65536n, vpnMarks: [{mark: 1, mask: 1}]}
    const back = decodeConfig(encodeConfig(c))
    expect(back).toEqual({...c, flags: 3 | 8 | 16})
  })
})

describe('the undo record', () => {
  it('is version, length, then JSON, zero-padded to the map value size', () => {
    const bytes = encodeRecord({a: 1})
    expect(bytes.length).toBe(RECORD_SIZE)
    expect(hex(bytes.subarray(0, 15))).toBe('01000000' + '07000000' + Buffer.from('{"a":1}').toString('hex'))
    expect(bytes.subarray(15).every((b) => b === 0)).toBe(true)
    expect(decodeRecord(bytes)).toEqual({a: 1})
  })

  it('reads an unwritten entry as absent and refuses what does not fit', () => {
    expect(decodeRecord(new Uint8Array(RECORD_SIZE))).toBeUndefined()
    expect(() => encodeRecord({big: 'x'.repeat(5000)})).toThrow(/too large/)
  })
})

describe('addresses', () => {
  it.each([
    ['::1', '00000000000000000000000000000001'],
    ['fd00:18::2', 'fd000018000000000000000000000002'],
    ['::ffff:127.0.0.1', '00000000000000000000ffff7f000001'],
    ['2001:2::', '20010002000000000000000000000000'],
  ])('%s', (text, bytes) => {
    expect(hex(ipv6Bytes(text))).toBe(bytes)
  })

  it('prints IPv6 compressed like inet_ntop', () => {
    expect(ipv6Text(ipv6Bytes('fd00:0:0:0:0:0:0:1'))).toBe('fd00::1')
    expect(ipv6Text(ipv6Bytes('1:0:2:0:0:3:0:4'))).toBe('1:0:2::3:0:4')
  })

  it('rejects garbage', () => {
    expect(() => ipv6Bytes('1::2::3')).toThrow()
    expect(() => ipv6Bytes('fg::1')).toThrow()
  })
})

describe('counters', () => {
  it('names the per-CPU sums in enum order', () => {
    const c = decodeCounters([4n, 0n, 0n, 10n, 1000n])
    expect(c.socketsAdded).toBe(4)
    expect(c.messagesRedirected).toBe(10)
    expect(c.bytesRedirected).toBe(1000)
    expect(c.tcNoListener).toBe(0)
  })
})
