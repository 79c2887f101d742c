/** Addresses, CIDRs and interface names as skfp accepts them (validated before anything changes). */
import {ipv4Bytes, ipv6Bytes, ipv6Text} from './config.js'
import {usageError} from './errors.js'

export interface Cidr {
  family: 4 | 6
  /** Network address bytes (host bits cleared), network order. */
  addr: Uint8Array
  prefix: number
  text: string
}

export function parseAddress(text: string): {family: 4 | 6; bytes: Uint8Array} | undefined {
  try {
    return text.includes(':') ? {family: 6, bytes: ipv6Bytes(text)} : {family: 4, bytes: ipv4Bytes(text)}
  } catch {
    return undefined
  }
}

export function parseCidr(text: string, flag = 'bypass'): Cidr {
  const [addrText, prefixText, ...rest] = text.split('/')
  const addr = parseAddress(addrText)
  const max = addr?.family === 6 ? 128 : 32
  const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : Number.NaN
  if (!addr || rest.length > 0 || !(prefix >= 0 && prefix <= max))
    throw usageError(`--${flag} ${JSON.stringify(text)} is not a CIDR`, 'give an address with an optional prefix length, e.g. 198.18.0.0/15 or fd00::/8')
  const bytes = Uint8Array.from(addr.bytes)
  for (let bit = prefix; bit < max; bit++) bytes[bit >> 3] &= ~(0x80 >> (bit & 7))
  const shown = addr.family === 4 ? [...bytes].join('.') : ipv6Text(bytes)
  return {family: addr.family, addr: bytes, prefix, text: `${shown}/${prefix}`}
}

/** Linux interface names: 1-15 bytes, no '/', no whitespace; skfp also refuses a leading '-'. */
export function validateInterface(name: string): string {
  if (!/^[A-Za-z0-9_.:@+=][A-Za-z0-9_.:@+=-]{0,14}$/.test(name))
    throw usageError(`bad interface name ${JSON.stringify(name)}`, 'use a name shown by `ip link` (at most 15 characters, no spaces or /)')
  return name
}
