/**
 * `skfp down`: observed pins → steps that remove everything the instance added. Pure. It stops the
 * fastpath first through the config flag (ordering-safe), never deletes sockhash entries (that drops
 * queued data), and undoes only what is still there, so it also finishes a half-done up or down.
 */
import {CFG_FASTPATH, encodeConfig, KEY_ZERO} from './config.js'
import {changeActions, stepId, toUndo} from './changes.js'
import type {ObservedInstance} from './observe.js'
import {PIN_ROOT} from './pins.js'
import type {Step} from './plan.js'
import * as bpftool from './tools/bpftool.js'
import {markPath} from './holder.js'

/** hold: this run's mark (holder.ts), made first so that another skfp sees who is working; the
 * last step removes it with the rest. */
export function planDown(o: ObservedInstance, hold: string, pinRoot = PIN_ROOT): Step[] {
  if (!o.exists) return []
  const {pins} = o
  // tolerant: a down that ran beside it may have removed the directory already
  const steps: Step[] = [{id: 'hold', title: 'Mark the instance as being changed', apply: [{fs: 'mkdir', path: markPath(pins.dir, hold)}], undo: [], tolerant: true}]
  if (o.config && o.config.flags & CFG_FASTPATH)
    steps.push({
      id: 'kill-switch',
      title: 'Stop redirecting (the fastpath kill switch)',
      apply: [bpftool.mapUpdate(pins.map.config, KEY_ZERO, encodeConfig({...o.config, flags: o.config.flags & ~CFG_FASTPATH}, o.configSize))],
      undo: [],
    })
  const changes = [...(o.record?.changes ?? [])].reverse()
  for (const change of changes) {
    if (!toUndo(change, o)) continue
    const a = changeActions(change, pins, o.record?.settings.netns)
    steps.push({id: `undo-${stepId(change)}`, title: a.undoTitle, apply: a.undo, undo: [], tolerant: a.tolerant})
  }
  steps.push({id: 'unpin', title: `Remove the pins under ${pins.dir}`, apply: [{fs: 'rm', path: pins.dir}, {fs: 'rmdir-if-empty', path: pinRoot}], undo: []})
  return steps
}
