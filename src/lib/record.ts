/**
 * The undo record kept in the pinned map skfp_record: the settings an instance runs with and every
 * change it makes to the host outside its own pins. It is written before those changes are applied.
 */
import type {UpSettings} from './settings.js'
import type {VariantName} from './datapath.js'

/** tc programs that sit where their direction alone does not tell (see Change 'tc-filter'). */
export type TcProg = 'uplink-ingress' | 'lan-ingress'

export type Change =
  | {kind: 'msg-verdict'}
  | {kind: 'sockops'; cgroup: string}
  /** The FIN hold (cgroup ingress, bpf/lib/hold.h); an older skfp's record has none. */
  | {kind: 'fin-hold'; cgroup: string}
  | {kind: 'qdisc'; dev: string} // a clsact qdisc skfp created (removed at down when empty)
  /** prog: which program, when the direction does not say (egress: skfp_tc_egress; ingress: skfp_tc_lo_ingress);
   * l3: the device has no link-layer header (tun, WireGuard): the program's *_l3 variant. */
  | {kind: 'tc-filter'; dev: string; direction: 'ingress' | 'egress'; prio: number; handle: number; prog?: TcProg; l3?: true}
  | {kind: 'rule'; family: 4 | 6; fwmark: number; table: number; priority: number}
  | {kind: 'route'; family: 4 | 6; table: number}
  | {kind: 'sysctl'; key: string; old: string; value: string}

export interface InstanceRecord {
  version: 1
  bootId: string
  settings: UpSettings
  /** What `--fastpath auto` resolved to. */
  fastpath: boolean
  /** The fastpath variant loaded (src/lib/datapath.ts); null: none; absent: an older skfp's single object. */
  fastpathVariant?: VariantName | null
  changes: Change[]
}
