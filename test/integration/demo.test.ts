// `skfp demo`: the whole product in its sandbox (under a test name), its --json figures, and Ctrl-C in
// the middle leaving nothing behind.
import {existsSync, readdirSync} from 'node:fs'
import {execa} from 'execa'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {PROJECT_ROOT} from '../../src/lib/build.js'
import {cgroup2Mount} from '../../src/lib/host.js'
import {PIN_ROOT} from '../../src/lib/pins.js'
import * as ip from '../../src/lib/tools/ip.js'
import {requireRoot, runner, sandboxName, skfp} from './helpers.js'

async function leftoversOf(name: string): Promise<string[]> {
  const left = (await ip.netnsList(runner)).filter((n) => n.startsWith(name))
  const root = cgroup2Mount()
  if (root) left.push(...readdirSync(root).filter((n) => n.startsWith(name)).map((n) => `cgroup ${n}`))
  if (existsSync(PIN_ROOT)) left.push(...readdirSync(PIN_ROOT).filter((n) => n.startsWith(name)).map((n) => `pins ${n}`))
  return left
}

describe('skfp demo', () => {
  it('shows the fastpath and interception through v2ray, with the figures and the proxy log line in --json, and removes its sandbox', async () => {
    requireRoot()
    const name = sandboxName('demo')
    const r = await skfp(['demo', '--name', name, '--duration', '1', '--json'])
    expect(r.exitCode, r.stderr).toBe(0)
    const d = r.json
    expect(d.plainGbps).toBeGreaterThan(0)
    expect(d.fastpathGbps).toBeGreaterThan(0)
    expect(d.status.counters.bytesRedirected).toBeGreaterThan(0)
    expect(d.intercept).toMatchObject({proxy: 'v2ray', originalDestination: '198.18.0.2:8080', requests: 3})
    expect(d.intercept.logLine).toMatch(/198\.18\.0\.1:\d+ accepted tcp:198\.18\.0\.2:8080/)
    expect(d.intercept.plainGbps).toBeGreaterThan(0)
    // v2ray relays with splice(): the fastpath through it only where the self-test passes every probe
    if (d.intercept.fastpathGbps === null) expect(d.intercept.fastpathSkipped).toMatch(/self-test/)
    else expect(d.intercept.fastpathGbps).toBeGreaterThan(0)
    expect(d.intercept.upLine).toMatch(/^skfp template v2ray .* skfp up --proxy-port 7070 --proxy-mark 256$/)
    expect(d.clean).toBe(true)
    expect(await leftoversOf(name)).toEqual([])
  })

  it('Ctrl-C in the middle: exits 130 and leaves nothing behind', async () => {
    requireRoot()
    const name = sandboxName('demo')
    const child = execa(process.execPath, [join(PROJECT_ROOT, 'bin', 'run.js'), 'demo', '--name', name, '--duration', '2'], {reject: false, all: true})
    // interrupted once interception is up, while the requests and transfers run
    await new Promise<void>((resolve, reject) => {
      let seen = ''
      const timer = setTimeout(() => reject(new Error(`the demo never reached interception: ${seen}`)), 60_000)
      child.all!.on('data', (d) => {
        seen += String(d)
        if (/Interception: v2ray/.test(seen)) {
          clearTimeout(timer)
          resolve()
        }
      })
    })
    child.kill('SIGINT')
    const r = await child
    expect(r.exitCode, r.all).toBe(130)
    expect(await leftoversOf(name)).toEqual([])
  })
})
