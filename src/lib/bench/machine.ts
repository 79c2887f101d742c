/** What the figures were measured on: they compare as ratios within a run, absolutes only on one machine. */
import {readFileSync} from 'node:fs'
import {arch, cpus, release, totalmem} from 'node:os'
import {join} from 'node:path'
import {PROJECT_ROOT} from '../build.js'
import type {Machine} from './types.js'

function osName(): string {
  try {
    return /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? 'unknown'
  } catch {
    return 'unknown'
  }
}

export function describeMachine(now = new Date()): Machine {
  const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as {version: string}
  return {
    kernel: release(),
    os: osName(),
    arch: arch(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    skfpVersion: pkg.version,
    node: process.version,
    date: now.toISOString(),
  }
}
