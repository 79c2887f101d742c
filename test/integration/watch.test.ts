// `skfp status --watch`: screens of counters with their rates while traffic moves, until Ctrl-C.
import {execa} from 'execa'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {PROJECT_ROOT, programPath} from '../../src/lib/build.js'
import {skfp, upArgs, withSandbox} from './helpers.js'

describe('status --watch', () => {
  it('shows each refresh with per-second rates while bytes are redirected, and ends on Ctrl-C with exit 0', async () => {
    await withSandbox('sw', async (sb) => {
      const ns = await sb.addNetns('a')
      expect((await skfp(upArgs(sb, ns))).exitCode).toBe(0)
      // a steady ping-pong through the fastpath while the screens are taken
      const server = sb.start(ns, [programPath('skfp-pingpong'), 'server', '--listen', '127.0.0.1:7400'])
      await new Promise<void>((resolve) => server.stdout!.once('data', () => resolve()))
      sb.start(ns, [programPath('skfp-pingpong'), 'rtt', '--connect', '127.0.0.1:7400', '--count', '100000000', '--size', '1024', '--timeout-ms', '60000'])
      const two = await skfp(['status', '--instance', sb.name, '--watch', '--interval', '1', '--count', '2'])
      expect(two.exitCode, two.stderr).toBe(0)
      const screens = two.stdout.split(/^\d{4}-\d\d-\d\dT.*Ctrl-C to stop$/m).filter((s) => s.trim())
      expect(screens).toHaveLength(2)
      expect(screens[0]).not.toMatch(/\/s\)/)
      expect(screens[1]).toMatch(/messagesRedirected\s+[\d,]+\s+\([\d,]+\/s\)/)
      expect(Number(screens[1].match(/messagesRedirected\s+[\d,]+\s+\(([\d,]+)\/s\)/)![1].replaceAll(',', ''))).toBeGreaterThan(0)

      const argv = [process.execPath, join(PROJECT_ROOT, 'bin', 'run.js'), 'status', '--instance', sb.name, '--watch', '--interval', '1']
      const child = execa(argv[0], argv.slice(1), {reject: false, timeout: 60_000})
      await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()))
      child.kill('SIGINT')
      const r = await child
      expect(r.exitCode, String(r.stderr)).toBe(0)
    })
  })

  it('--watch with --json is refused: it is for a terminal', async () => {
    const r = await skfp(['status', '--watch', '--json'])
    expect(r.exitCode).toBe(2)
    expect(r.json.error.message).toBe('--watch is for a terminal')
  })
})
