/** The soak's human summary, and --out DIR: soak.json and an SVG of memory and sockets over time. */
import {writeOut} from './index.js'
import {MiB, type SoakFigures, type SoakResult, type SoakSample} from './soak.js'

/** Human summary. */
export function renderSoak(r: SoakResult): string {
  const row = (what: string, k: keyof SoakFigures, fmt: (n: number) => string = String) => `  ${what.padEnd(28)} ${fmt(r.start[k]).padStart(10)} ${fmt(r.peak[k]).padStart(10)} ${fmt(r.end[k]).padStart(10)}`
  return [
    `soak: ${r.minutes} min, ${r.samples.length} samples; ${r.load.connections} short connections (${r.load.proxyConnections} through the proxy, ${r.load.loopbackConnections} over loopback), ${r.load.bulkRuns} bulk runs (${(r.load.bulkBytes / 2 ** 30).toFixed(1)} GiB), ${r.load.loopbackRoundTrips} loopback round trips`,
    `  ${''.padEnd(28)} ${'start'.padStart(10)} ${'peak'.padStart(10)} ${'end'.padStart(10)}`,
    row('TCP memory (host)', 'tcpMemBytes', MiB),
    row('sockets used (host)', 'socketsUsed'),
    row('TCP sockets (sandbox)', 'tcpInUse'),
    row('sockhash entries', 'sockhashEntries'),
    row('BPF memory (instance)', 'bpfMemBytes', MiB),
    `errors: ${r.errors}${r.errorDetails.length ? ` (${r.errorDetails.join('; ')})` : ''}`,
    `leak: ${r.leak ? `YES: ${r.leaks.join('; ')}` : 'no'}`,
  ].join('\n')
}

/** --out DIR: soak.json (the --json document) and soak.svg. */
export const saveSoak = (dir: string, result: SoakResult): string[] => writeOut(dir, 'soak', result, renderSoakChart(result))

const W = 640
const H = 160
const LEFT = 70
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;')

/** One panel: a line per series over the soak's time, scaled to the largest value of the panel. */
function linePanel(title: string, samples: SoakSample[], series: {label: string; color: string; value: (s: SoakSample) => number}[], unit: (n: number) => string, top: number): string {
  const tMax = Math.max(...samples.map((s) => s.tSec), 1e-9)
  const vMax = Math.max(...samples.flatMap((s) => series.map((l) => l.value(s))), 1e-9)
  const x = (t: number) => LEFT + (t / tMax) * W
  const y = (v: number) => top + 28 + H - (v / vMax) * H
  const lines = series.map((l, i) => {
    const points = samples.map((s) => `${x(s.tSec).toFixed(1)},${y(l.value(s)).toFixed(1)}`).join(' ')
    return `<polyline fill="none" stroke="${l.color}" stroke-width="2" points="${points}"/><text x="${LEFT + 8 + i * 200}" y="${top + 28 + H + 30}" fill="${l.color}">${esc(l.label)}</text>`
  })
  return [
    `<text x="16" y="${top + 16}" font-weight="bold">${esc(title)}</text>`,
    `<line x1="${LEFT}" y1="${top + 28 + H}" x2="${LEFT + W}" y2="${top + 28 + H}" stroke="#999"/>`,
    `<text x="${LEFT - 6}" y="${top + 32}" text-anchor="end">${esc(unit(vMax))}</text>`,
    `<text x="${LEFT - 6}" y="${top + 28 + H}" text-anchor="end">0</text>`,
    `<text x="${LEFT + W}" y="${top + 28 + H + 14}" text-anchor="end">${(tMax / 60).toFixed(1)} min</text>`,
    ...lines,
  ].join('\n')
}

export function renderSoakChart(r: SoakResult): string {
  const panelH = H + 70
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${LEFT + W + 40}" height="${40 + 2 * panelH}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="16" y="20" fill="#555">skfp bench --soak ${r.minutes}: ${r.load.connections} connections, ${r.errors} errors, leak: ${r.leak ? 'yes' : 'no'}</text>`,
    linePanel('Memory', r.samples, [{label: 'TCP memory (host)', color: '#3b7dd8', value: (s) => s.tcpMemBytes}, {label: 'BPF memory (instance)', color: '#e07b39', value: (s) => s.bpfMemBytes}], mib, 32),
    linePanel('Sockets', r.samples, [{label: 'sockhash entries', color: '#3b7dd8', value: (s) => s.sockhashEntries}, {label: 'TCP sockets (sandbox)', color: '#e07b39', value: (s) => s.tcpInUse}], String, 32 + panelH),
    '</svg>',
    '',
  ].join('\n')
}
