/**
 * `skfp down`: observed pins → steps that remove everything the instance added. Pure. It stops the
 * fastpath first through the config flag (ordering-safe), never deletes sockhash entries (that drops
 * queued data), and undoes only what is still there, so it also finishes a half-done up or down.
 */
import {CFG_FASTPATH, encodeConfig, KEY_ZERO} from './config.js'
import {changeActions} from './changes.js'
import type {ObservedInstance} from './observe.js'
import {PIN_ROOT} from './pins.js'
import type {Step} from './plan.js'
import type {Change} from './record.js'
import * as bpftool from './tools/bpftool.js'
import {stepId} from './up.js'
import {hookKey} from './intercept.js'

/** Whether a recorded change is still in place, as far as the pins and observations tell. */
function stillPresent(change: Change, o: ObservedInstance): boolean {
  const i = o.intercept
  switch (change.kind) {
    case 'sockops':
      return o.sockopsAttached
    case 'msg-verdict':
      return !!o.progs.skMsg
    case 'tc-filter':
      return !!i?.filters[hookKey(change.dev, change.direction)]
    case 'qdisc': // skfp created it; it goes only when nobody else's filter is on it
      return !!i?.qdiscs[change.dev] && i.qdiscForeignFilters[change.dev] === 0
    case 'rule':
      return !!i?.rules[change.family]
    case 'route':
      return !!i?.routes[change.family]
    case 'sysctl': // restored unless someone changed it since
      return i?.sysctl[change.key] === change.value && change.old !== change.value
  }
}

export function planDown(o: ObservedInstance, pinRoot = PIN_ROOT): Step[] {
  if (!o.exists) return []
  const {pins} = o
  const steps: Step[] = []
  if (o.config && o.config.flags & CFG_FASTPATH)
    steps.push({
      id: 'kill-switch',
      title: 'Stop redirecting (the fastpath kill switch)',
      apply: [bpftool.mapUpdate(pins.map.config, KEY_ZERO, encodeConfig({...o.config, flags: o.config.flags & ~CFG_FASTPATH}, o.configSize))],
      undo: [],
    })
  const changes = [...(o.record?.changes ?? [])].reverse()
  for (const change of changes) {
    if (!stillPresent(change, o)) continue
    const a = changeActions(change, pins, o.record?.settings.netns)
    // msg_verdict has no observable attachment: its detach may find it gone already
    steps.push({id: `undo-${stepId(change)}`, title: a.undoTitle, apply: a.undo, undo: [], tolerant: change.kind === 'msg-verdict'})
  }
  steps.push({id: 'unpin', title: `Remove the pins under ${pins.dir}`, apply: [{fs: 'rm', path: pins.dir}, {fs: 'rmdir-if-empty', path: pinRoot}], undo: []})
  return steps
}
