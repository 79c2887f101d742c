/** `skfp template`: proxy configuration snippets from templates/, filled in from the same flags as up. */
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {PROJECT_ROOT} from './build.js'
import type {InterceptSettings} from './settings.js'

export const TEMPLATES = {v2ray: 'v2ray.json', xray: 'xray.json', mihomo: 'mihomo.yaml', 'sing-box': 'sing-box.json'} as const
export type TemplateName = keyof typeof TEMPLATES

export function renderTemplate(name: TemplateName, i: InterceptSettings, proxyMark: number): string {
  const file = TEMPLATES[name]
  const text = readFileSync(join(PROJECT_ROOT, 'templates', file), 'utf8')
    .replaceAll('{{proxyPort}}', String(i.proxyPort))
    .replaceAll('{{proxyMark}}', String(proxyMark))
    .replaceAll('{{proxyAddr4}}', i.proxyAddr4 ?? '')
    .replaceAll('{{proxyAddr6}}', i.proxyAddr6 ?? '')
  if (file.endsWith('.json')) {
    // an inbound per family the proxy listens on
    const config = JSON.parse(text) as {inbounds: {tag: string}[]}
    config.inbounds = config.inbounds.filter((ib) => (ib.tag.endsWith('-v4') ? i.proxyAddr4 : i.proxyAddr6))
    return `${JSON.stringify(config, null, 2)}\n`
  }
  // mihomo: tproxy-port is the IPv4 listener; the listeners: block is the IPv6 one
  return i.proxyAddr6 ? text : text.replace(/^listeners:\n(?:\s+.*\n)+/m, '')
}
