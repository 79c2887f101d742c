/** Where an instance's state lives in bpffs: the only source of truth for status and down. */
import {usageError} from './errors.js'

export const BPFFS = '/sys/fs/bpf'
export const PIN_ROOT = `${BPFFS}/skfp`
/** The kernel self-test's verdict of this boot (skfp doctor). */
export const VERDICT_PIN = `${PIN_ROOT}/doctor-verdict`
/** What the kernel loads of the datapath, remembered beside the verdict (same lifetime). */
export const SUPPORT_PIN = `${PIN_ROOT}/datapath-support`
export const INSTANCE_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/

export function validateInstance(name: string): string {
  if (!INSTANCE_NAME.test(name))
    throw usageError(`bad instance name ${JSON.stringify(name)}`, 'use 1 to 32 characters of a-z, 0-9 and -, starting with a letter or digit')
  return name
}

export interface InstancePins {
  dir: string
  progs: string
  maps: string
  /** The fastpath object's own maps (and second pins of the maps it shares). */
  fastpathMaps: string
  /** The links of the readers object's tracing programs (pinned: unlinking detaches them). */
  links: string
  prog: {sockops: string; skMsg: string; finHold: string; tcEgress: string; tcLoIngress: string; tcUplinkIngress: string; tcLanIngress: string}
  map: {config: string; record: string; counters: string; socks: string; readers: string; bypass4: string; bypass6: string; bypassPorts: string; cgroups: string}
}

export function instancePins(instance: string, root = PIN_ROOT): InstancePins {
  const dir = `${root}/${validateInstance(instance)}`
  const progs = `${dir}/progs`
  const maps = `${dir}/maps`
  const fastpathMaps = `${dir}/fastpath-maps`
  return {
    dir,
    progs,
    maps,
    fastpathMaps,
    links: `${dir}/links`,
    prog: {
      sockops: `${progs}/skfp_sockops`,
      skMsg: `${progs}/skfp_sk_msg`,
      finHold: `${progs}/skfp_fin_hold`,
      tcEgress: `${progs}/skfp_tc_egress`,
      tcLoIngress: `${progs}/skfp_tc_lo_ingress`,
      tcUplinkIngress: `${progs}/skfp_tc_uplink_ingress`,
      tcLanIngress: `${progs}/skfp_tc_lan_ingress`,
    },
    map: {
      config: `${maps}/skfp_config`,
      record: `${maps}/skfp_record`,
      counters: `${maps}/skfp_counters`,
      socks: `${fastpathMaps}/skfp_socks`,
      readers: `${fastpathMaps}/skfp_readers`,
      bypass4: `${maps}/skfp_bypass4`,
      bypass6: `${maps}/skfp_bypass6`,
      bypassPorts: `${maps}/skfp_bypass_ports`,
      cgroups: `${maps}/skfp_cgroups`,
    },
  }
}
