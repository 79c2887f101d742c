/** An SVG chart of a run, no dependency: throughput and pinned round-trip p50, one bar per scenario. */
import {isMeasured, type BenchResult, type ScenarioResult} from './types.js'

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

const LABEL_W = 230
const BAR_W = 360
const ROW_H = 24
const PANEL_GAP = 48

/** One panel: a title and a horizontal bar per scenario, scaled to the largest value. */
function panel(title: string, rows: ScenarioResult[], value: (r: ScenarioResult) => number, unit: string, top: number, color: string): string {
  const max = Math.max(...rows.map(value), 1e-9)
  const bars = rows.map((r, i) => {
    const y = top + 28 + i * ROW_H
    const w = Math.max(1, (value(r) / max) * BAR_W)
    return [
      `<text x="${LABEL_W - 8}" y="${y + 15}" text-anchor="end">${esc(r.name)}</text>`,
      `<rect x="${LABEL_W}" y="${y + 3}" width="${w.toFixed(1)}" height="${ROW_H - 6}" fill="${color}"/>`,
      `<text x="${LABEL_W + w + 6}" y="${y + 15}">${value(r).toFixed(2)} ${unit}</text>`,
    ].join('')
  })
  return `<text x="16" y="${top + 16}" font-weight="bold">${esc(title)}</text>${bars.join('\n')}`
}

export function renderChart(result: BenchResult): string {
  const rows = result.scenarios.filter((s) => isMeasured<ScenarioResult>(s))
  const panelH = 28 + rows.length * ROW_H
  const m = result.machine
  const caption = `${m.os}, kernel ${m.kernel}, ${m.cpus} × ${m.cpuModel}; ${result.durationS} s per run, median of ${result.runs}; ${m.date}`
  const height = 40 + 2 * panelH + PANEL_GAP + 16
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${LABEL_W + BAR_W + 120}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="16" y="20" fill="#555">${esc(caption)}</text>`,
    panel('Throughput (iperf3), Gbit/s — higher is better', rows, (r) => r.throughputGbps, 'Gbit/s', 32, '#3b7dd8'),
    panel('Round trip p50, both ends on one CPU, µs — lower is better', rows, (r) => r.rttP50PinnedUs, 'µs', 32 + panelH + PANEL_GAP, '#e07b39'),
    '</svg>',
    '',
  ].join('\n')
}
