// skfp template <proxy>: the snippets from up's flags. Pure: python3's yaml only reads mihomo's.
import {execFileSync} from 'node:child_process'
import {Parser} from '@oclif/core'
import {describe, expect, it} from 'vitest'
import Template from '../../src/commands/template.js'
import Up from '../../src/commands/up.js'
import type {SkfpError} from '../../src/lib/errors.js'
import {parseUpFlags, type RawUpFlags} from '../../src/lib/settings.js'
import {renderNamedTemplate, renderSsRedir, renderTemplate, SS_REDIR_FLAGS, TEMPLATES, type TemplateFlags, type TemplateName} from '../../src/lib/template.js'

const UP = {instance: 'default', cgroup: '', fastpath: 'off', 'fastpath-queue': '4194304', 'proxy-mark': '255', 'proxy-port': '7893'}
const intercept = (addrs?: string[], more: Partial<RawUpFlags> = {}) => parseUpFlags({...UP, 'proxy-addr': addrs, ...more}).intercept!
const parseYaml = (text: string): unknown =>
  JSON.parse(execFileSync('python3', ['-c', 'import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))'], {input: text, encoding: 'utf8'}))

interface Inbound {
  tag: string
  type?: string
  listen: string
  port?: number
  listen_port?: number
  network?: string
  settings?: {network: string; followRedirect: boolean}
  streamSettings?: {sockopt: {tproxy: string}}
}
const inbounds = (name: TemplateName, i = intercept()) => (JSON.parse(renderTemplate(name, i, 255)) as {inbounds: Inbound[]}).inbounds
interface MihomoListener {
  name: string
  type: string
  listen: string
  port: number
  udp: boolean
}
const mihomo = (i = intercept()) => parseYaml(renderTemplate('mihomo', i, 255)) as {listeners: MihomoListener[]; 'routing-mark': number}

describe('proxy templates', () => {
  it.each(['v2ray', 'xray'] as const)('%s: a dokodemo-door tproxy inbound per family, TCP and UDP, and a freedom outbound with the mark', (name) => {
    const c = JSON.parse(renderTemplate(name, intercept(), 255))
    expect(c.inbounds.map((i: Inbound) => [i.listen, i.port, i.settings!.network])).toEqual([['127.0.0.1', 7893, 'tcp,udp'], ['::1', 7893, 'tcp,udp']])
    expect(c.inbounds[0].streamSettings.sockopt.tproxy).toBe('tproxy')
    expect(c.inbounds[0].settings.followRedirect).toBe(true)
    expect(c.outbounds[0].streamSettings.sockopt.mark).toBe(255)
  })

  it('sing-box: a tproxy inbound per family taking both networks (no network field), a direct outbound with the mark', () => {
    const c = JSON.parse(renderTemplate('sing-box', intercept(), 255))
    expect(c.inbounds.map((i: Inbound) => [i.type, i.listen, i.listen_port, i.network])).toEqual([['tproxy', '127.0.0.1', 7893, undefined], ['tproxy', '::1', 7893, undefined]])
    expect(c.outbounds[0].routing_mark).toBe(255)
  })

  it('mihomo: a tproxy listener per family with udp: true, and the routing mark', () => {
    expect(mihomo()).toEqual({
      listeners: [
        {name: 'skfp-tproxy-v4', type: 'tproxy', listen: '127.0.0.1', port: 7893, udp: true},
        {name: 'skfp-tproxy-v6', type: 'tproxy', listen: '::1', port: 7893, udp: true},
      ],
      'routing-mark': 255,
    })
  })

  it('--no-udp: every inbound takes TCP alone', () => {
    const tcp = intercept(undefined, {udp: false})
    for (const name of ['v2ray', 'xray'] as const) expect(inbounds(name, tcp).map((i) => i.settings!.network), name).toEqual(['tcp', 'tcp'])
    expect(inbounds('sing-box', tcp).map((i) => i.network)).toEqual(['tcp', 'tcp'])
    expect(mihomo(tcp).listeners.map((l) => l.udp)).toEqual([false, false])
  })

  it('drops the inbound of a family the proxy does not listen on', () => {
    for (const name of ['v2ray', 'xray', 'sing-box'] as const) {
      expect(inbounds(name, intercept(['127.0.0.1'])).map((i) => [i.tag, i.listen]), name).toEqual([['skfp-tproxy-v4', '127.0.0.1']])
      expect(inbounds(name, intercept(['::1'])).map((i) => [i.tag, i.listen]), name).toEqual([['skfp-tproxy-v6', '::1']])
    }
    expect(mihomo(intercept(['127.0.0.1'])).listeners.map((l) => l.listen)).toEqual(['127.0.0.1'])
    expect(mihomo(intercept(['::1'], {udp: false})).listeners).toEqual([{name: 'skfp-tproxy-v6', type: 'tproxy', listen: '::1', port: 7893, udp: false}])
    expect(mihomo(intercept(['10.0.0.2'])).listeners.map((l) => l.listen)).toEqual(['10.0.0.2'])
  })

  it.each(Object.keys(TEMPLATES))('%s: --lan changes nothing (no listener looks at the client address); mihomo keeps allow-lan as it is', (name) => {
    const lan = intercept(undefined, {lan: ['br-lan', 'docker0']})
    expect(renderTemplate(name as TemplateName, lan, 255)).toBe(renderTemplate(name as TemplateName, intercept(), 255))
    if (name === 'mihomo') expect(renderTemplate('mihomo', lan, 255)).not.toMatch(/^allow-lan:/m)
  })

  it.each(Object.keys(TEMPLATES))('%s renders with no placeholder left', (name) => {
    expect(renderTemplate(name as TemplateName, intercept(), 255)).not.toMatch(/\{\{/)
  })
})

describe('skfp template <proxy>, from the command line', () => {
  // SS_REDIR_FLAGS are lib/template.ts's own; the command spreads them into its flags
  const flags = {...Template.flags, ...SS_REDIR_FLAGS}
  const render = async (argv: string[]) => {
    const {args, flags: values} = await Parser.parse(argv, {flags, args: Template.args, strict: true})
    return renderNamedTemplate(args.name, values as TemplateFlags, Up.flags)
  }
  const lineOf = (argv: string[]) => render(argv).then(() => '', (error: SkfpError) => `${error.kind}: ${error.line}`)

  it("takes up's flags and renders the proxy's snippet", async () => {
    expect(await render(['v2ray', '--proxy-port', '7893', '--proxy-mark', '255'])).toBe(renderTemplate('v2ray', intercept(), 255))
    expect(await render(['mihomo', '--proxy-port', '7893', '--proxy-mark', '255', '--proxy-addr', '127.0.0.1', '--fastpath', 'off'])).toBe(renderTemplate('mihomo', intercept(['127.0.0.1']), 255))
    expect(await render(['sing-box', '--proxy-port', '7893', '--proxy-mark', '255', '--no-udp', '--lan', 'br-lan'])).toBe(renderTemplate('sing-box', intercept(undefined, {udp: false}), 255))
  })

  it('refuses what no proxy template takes', async () => {
    expect(await lineOf(['v2ray', '--proxy-mark', '255'])).toMatch(/^usage: skfp template v2ray needs --proxy-port/)
    expect(await lineOf(['v2ray', '--proxy-port', '7893'])).toMatch(/^usage: interception needs --proxy-mark/)
    expect(await lineOf(['v2ray', '--proxy-port', '7893', '--proxy-mark', '255', '--after', 'x.service'])).toMatch(/^usage: --after is not a flag of skfp template v2ray/)
    expect(await lineOf(['v2ray', '--proxy-port', '7893', '--proxy-mark', '255', '--ss-server', '192.0.2.9:8388'])).toBe(
      'usage: --ss-server is not a flag of skfp template v2ray: it is for skfp template ss-redir',
    )
    expect(await lineOf(['caddy', '--proxy-port', '7893', '--proxy-mark', '255'])).toMatch(/^usage: no template for "caddy"/)
  })

  describe('ss-redir', () => {
    const BASE = ['ss-redir', '--proxy-port', '7893', '--proxy-mark', '255', '--proxy-addr', '127.0.0.1']
    const SS = [...BASE, '--ss-server', '203.0.113.9:8388', '--ss-password', 'pw', '--bypass', '203.0.113.9/32']
    const ssRedir = async (argv: string[]) => JSON.parse(await render(argv)) as Record<string, unknown>

    it("one tproxy listener (TCP and UDP) and the server, with what skfp up needs in _comment (JSON has no comments)", async () => {
      expect(await ssRedir(SS)).toEqual({
        _comment:
          'skfp: run ss-redir -c FILE as root (tcp_tproxy and the UDP relay need CAP_NET_ADMIN). ss-redir marks none of its sockets, so skfp up needs --bypass 203.0.113.9/32: its connections to the server go direct',
        server: '203.0.113.9',
        server_port: 8388,
        password: 'pw',
        method: 'chacha20-ietf-poly1305',
        local_address: '127.0.0.1',
        local_port: 7893,
        mode: 'tcp_and_udp',
        tcp_tproxy: true,
      })
    })

    it('--no-udp: tcp_only; --ss-method; an IPv6 listener and server; a password that needs escaping', async () => {
      expect((await ssRedir([...SS, '--no-udp'])).mode).toBe('tcp_only')
      expect((await ssRedir([...SS, '--ss-method', 'aes-256-gcm'])).method).toBe('aes-256-gcm')
      const v6 = await ssRedir(['ss-redir', '--proxy-port', '7893', '--proxy-mark', '255', '--proxy-addr', '::1', '--ss-server', '[2001:db8::9]:8388', '--ss-password', 'a"b\\c{{proxyPort}}', '--bypass', '2001:db8::/32'])
      expect([v6.local_address, v6.server, v6.password]).toEqual(['::1', '2001:db8::9', 'a"b\\c{{proxyPort}}'])
      expect(v6._comment).toContain('--bypass 2001:db8::9/128')
    })

    it('--lan changes nothing: ss-redir relays whatever source reaches its listener', async () => {
      expect(await render([...SS, '--lan', 'br-lan'])).toBe(await render(SS))
    })

    it('a --bypass range that holds the server will do', async () => {
      expect((await ssRedir([...SS.slice(0, -2), '--bypass', '203.0.113.0/24'])).server).toBe('203.0.113.9')
    })

    it.each([
      [['--ss-server', '203.0.113.9:8388'], /^usage: skfp template ss-redir needs --ss-password: /],
      [['--ss-password', 'pw'], /^usage: skfp template ss-redir needs --ss-server: /],
      [['--ss-server', '203.0.113.9:8388', '--ss-password', ''], /^usage: skfp template ss-redir needs --ss-password: /],
    ])('requires the server and its password: %j', async (ss, line) => {
      expect(await lineOf([...BASE, '--bypass', '203.0.113.9/32', ...ss])).toMatch(line)
    })

    it.each(['ss.example.com:8388', '203.0.113.9', '203.0.113.9:0', '203.0.113.9:65536', '2001:db8::9:8388', '[203.0.113.9]:8388', '[2001:db8::9]', '203.0.113.9:83a'])(
      'refuses --ss-server %s',
      async (server) => {
        expect(await lineOf([...BASE, '--ss-server', server, '--ss-password', 'pw', '--bypass', '203.0.113.9/32'])).toBe(
          `usage: --ss-server ${JSON.stringify(server)} is not IP:PORT: give the server's IP address and port, e.g. 203.0.113.9:8388 or [2001:db8::9]:8388 (not a name: --bypass needs its address)`,
        )
      },
    )

    it('refuses a cipher ss-redir lacks', async () => {
      expect(await lineOf([...SS, '--ss-method', 'aes-256-ocb'])).toBe(
        'usage: --ss-method "aes-256-ocb" is not a cipher of ss-redir: give the server\'s: chacha20-ietf-poly1305, xchacha20-ietf-poly1305, aes-128-gcm, aes-192-gcm, aes-256-gcm, or an older one from ss-redir --help',
      )
    })

    it('refuses two listening addresses (the default): ss-redir binds one', async () => {
      const both = SS.filter((a, n) => a !== '--proxy-addr' && SS[n - 1] !== '--proxy-addr')
      expect(await lineOf(both)).toBe(
        'usage: ss-redir listens on one address and --proxy-addr gives two (127.0.0.1 and ::1 when not given): give --proxy-addr once; for the other family run a second ss-redir from skfp template ss-redir --proxy-addr ::1, and give skfp up both',
      )
    })

    it('refuses a server that skfp would intercept (ss-redir has no SO_MARK)', async () => {
      const fix = 'ss-redir marks none of its sockets, so skfp would hand its connections to the server back to it'
      expect(await lineOf(SS.slice(0, -2))).toBe(`usage: --ss-server 203.0.113.9 is in no --bypass range: ${fix}: add --bypass 203.0.113.9/32 here and to skfp up`)
      expect(await lineOf([...SS.slice(0, -2), '--bypass', '203.0.114.0/24', '--bypass', '2001:db8::/32'])).toMatch(/^usage: --ss-server 203.0.113.9 is in no --bypass range/)
      // a private server too: --bypass-private may be turned off later
      expect(await lineOf([...BASE, '--ss-server', '192.168.1.2:8388', '--ss-password', 'pw'])).toBe(
        `usage: --ss-server 192.168.1.2 is in no --bypass range: ${fix}: add --bypass 192.168.1.2/32 here and to skfp up`,
      )
    })

    it('renderSsRedir fills every placeholder', () => {
      expect(renderSsRedir(intercept(['127.0.0.1']), {address: '203.0.113.9', port: 8388, password: 'pw', method: 'aes-128-gcm'})).not.toMatch(/\{\{/)
    })
  })
})
