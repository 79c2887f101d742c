import {describe, expect, it} from 'vitest'
import {parseRedisBenchmark, parseWrk} from '../../src/lib/bench/apps.js'
import {checkTargets, renderReport} from '../../src/lib/bench/report.js'
import type {AppScenarioOutcome} from '../../src/lib/bench/types.js'

describe('the application scenarios', () => {
  it("reads redis-benchmark's --csv GET rate", () => {
    const csv = '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"\n"GET","41152.26","0.021","0.008","0.023","0.031","0.039","1.223"\n'
    expect(parseRedisBenchmark(csv)).toBe(41152.26)
    expect(() => parseRedisBenchmark('Could not connect to Redis at 127.0.0.1:6390: Connection refused')).toThrow(/no GET rate/)
  })

  it("reads wrk's rate and counts its socket errors and non-2xx responses", () => {
    const ok = 'Running 5s test @ http://127.0.0.1:8090/small\n  1 threads and 1 connections\n  123456 requests in 5.00s, 40.00MB read\nRequests/sec:  24690.12\nTransfer/sec:      8.00MB\n'
    expect(parseWrk(ok)).toEqual({perSec: 24690.12, errors: 0})
    const bad = `${ok}  Socket errors: connect 0, read 2, write 1, timeout 3\n  Non-2xx or 3xx responses: 4\n`
    expect(parseWrk(bad)).toEqual({perSec: 24690.12, errors: 10})
    expect(() => parseWrk('unable to connect to 127.0.0.1:8090 Connection refused')).toThrow(/no rate/)
  })

  it('holds the defaults to ≥ 1.0× plain for large files and ≥ 1.2× for request/response, and shows the three figures', () => {
    const apps: AppScenarioOutcome[] = [
      {name: 'redis-get', plain: 30000, defaults: 30300, defaultsFastpath: false, fastpathOn: 37000, ratioDefaults: 1.01, ratioOn: 1.23, errors: 0},
      {name: 'nginx-large-c8', plain: 900, defaults: 910, defaultsFastpath: false, fastpathOn: 700, ratioDefaults: 1.01, ratioOn: 0.78, errors: 0},
      {name: 'nginx-small-c1', skipped: 'wrk not found in /usr/sbin:/usr/bin (install it: apt-get install wrk)'},
    ]
    const t = Object.fromEntries(checkTargets([], [], apps).map((x) => [x.what, x]))
    expect(t['requests/s redis-get defaults / plain']).toMatchObject({value: 1.01, goal: '≥ 1.2', met: false})
    expect(t['requests/s nginx-large-c8 defaults / plain']).toMatchObject({value: 1.01, goal: '≥ 1', met: true})
    expect(t['requests/s nginx-small-c1 defaults / plain']).toMatchObject({value: null, met: null})
    expect(t['errors of the application scenarios']).toMatchObject({value: 0, met: true})
    const text = renderReport({machine: {kernel: '6.18', os: 'Debian', arch: 'x64', cpus: 2, cpuModel: 'Xeon', memoryGiB: 24, skfpVersion: '0.1.0', node: 'v20', date: '2026-12-02'}, durationS: 5, runs: 1, scenarios: [], udp: [], apps, targets: [], clean: true})
    expect(text).toMatch(/^redis-get +30000 +30300 +1\.01× +off +37000 +1\.23× +0$/m)
    expect(text).toContain('nginx-small-c1: skipped, wrk not found')
  })
})
