import {Parser} from '@oclif/core'
import {describe, expect, it} from 'vitest'
import Template from '../../src/commands/template.js'
import Up from '../../src/commands/up.js'
import type {SkfpError} from '../../src/lib/errors.js'
import {parseUpFlags} from '../../src/lib/settings.js'
import {renderNamedTemplate, renderTemplate, TEMPLATES, type TemplateName} from '../../src/lib/template.js'

const intercept = (addrs?: string[]) =>
  parseUpFlags({instance: 'default', cgroup: '', fastpath: 'off', 'fastpath-queue': '4194304', 'proxy-mark': '255', 'proxy-port': '7893', 'proxy-addr': addrs}).intercept!

describe('proxy templates', () => {
  it('v2ray: a dokodemo-door tproxy inbound per family and a freedom outbound with the mark', () => {
    const c = JSON.parse(renderTemplate('v2ray', intercept(), 255))
    expect(c.inbounds.map((i: {listen: string; port: number}) => [i.listen, i.port])).toEqual([['127.0.0.1', 7893], ['::1', 7893]])
    expect(c.inbounds[0].streamSettings.sockopt.tproxy).toBe('tproxy')
    expect(c.inbounds[0].settings.followRedirect).toBe(true)
    expect(c.outbounds[0].streamSettings.sockopt.mark).toBe(255)
  })

  it('drops the inbound of a family the proxy does not listen on', () => {
    const c = JSON.parse(renderTemplate('sing-box', intercept(['127.0.0.1']), 255))
    expect(c.inbounds.map((i: {tag: string}) => i.tag)).toEqual(['skfp-tproxy-v4'])
    expect(c.outbounds[0].routing_mark).toBe(255)
    const m = renderTemplate('mihomo', intercept(['127.0.0.1']), 255)
    expect(m).toContain('tproxy-port: 7893')
    expect(m).not.toContain('listeners:')
    expect(m).toContain('routing-mark: 255')
  })

  it.each(Object.keys(TEMPLATES))('%s renders with no placeholder left', (name) => {
    expect(renderTemplate(name as TemplateName, intercept(), 255)).not.toMatch(/\{\{/)
  })
})

describe('skfp template <proxy>, from the command line', () => {
  const render = async (argv: string[]) => {
    const {args, flags} = await Parser.parse(argv, {flags: Template.flags, args: Template.args, strict: true})
    return renderNamedTemplate(args.name, flags, Up.flags)
  }
  const lineOf = (argv: string[]) => render(argv).then(() => '', (error: SkfpError) => `${error.kind}: ${error.line}`)

  it("takes up's flags and renders the proxy's snippet", async () => {
    expect(await render(['v2ray', '--proxy-port', '7893', '--proxy-mark', '255'])).toBe(renderTemplate('v2ray', intercept(), 255))
    expect(await render(['mihomo', '--proxy-port', '7893', '--proxy-mark', '255', '--proxy-addr', '127.0.0.1', '--fastpath', 'off'])).toBe(renderTemplate('mihomo', intercept(['127.0.0.1']), 255))
  })

  it('refuses what no proxy template takes', async () => {
    expect(await lineOf(['v2ray', '--proxy-mark', '255'])).toMatch(/^usage: skfp template v2ray needs --proxy-port/)
    expect(await lineOf(['v2ray', '--proxy-port', '7893'])).toMatch(/^usage: interception needs --proxy-mark/)
    expect(await lineOf(['v2ray', '--proxy-port', '7893', '--proxy-mark', '255', '--after', 'x.service'])).toMatch(/^usage: --after is not a flag of skfp template v2ray/)
    expect(await lineOf(['caddy', '--proxy-port', '7893', '--proxy-mark', '255'])).toMatch(/^usage: no template for "caddy"/)
  })
})
