import {Args, Flags} from '@oclif/core'
import {SkfpCommand} from '../lib/base-command.js'
import {usageError} from '../lib/errors.js'
import {DEFAULT_FASTPATH_QUEUE, parseUpFlags} from '../lib/settings.js'
import {renderTemplate, TEMPLATES, type TemplateName} from '../lib/template.js'

export default class Template extends SkfpCommand {
  static summary = "Print a proxy config snippet (tproxy inbound, outbound routing mark) matching skfp up's flags."
  static examples = ['<%= config.bin %> template v2ray --proxy-port 7893 --proxy-mark 255', '<%= config.bin %> template mihomo --proxy-port 7894 --proxy-mark 6666 --proxy-addr 127.0.0.1']
  static args = {proxy: Args.string({required: true, description: `One of: ${Object.keys(TEMPLATES).join(', ')}.`})}
  static flags = {
    'proxy-port': Flags.string({required: true, description: "Port of the proxy's transparent listener."}),
    'proxy-mark': Flags.string({required: true, description: 'SO_MARK the proxy puts on its outbound sockets.'}),
    'proxy-addr': Flags.string({multiple: true, description: 'Listener address, at most one per family (default: 127.0.0.1 and ::1).'}),
  }

  async run(): Promise<{proxy: string; config: string}> {
    const {args, flags} = await this.parse(Template)
    if (!(args.proxy in TEMPLATES)) throw usageError(`no template for ${JSON.stringify(args.proxy)}`, `use one of ${Object.keys(TEMPLATES).join(', ')}`)
    const settings = parseUpFlags({instance: 'default', cgroup: '', fastpath: 'off', 'fastpath-queue': String(DEFAULT_FASTPATH_QUEUE), ...flags})
    const config = renderTemplate(args.proxy as TemplateName, settings.intercept!, settings.proxyMark)
    if (!this.jsonEnabled()) process.stdout.write(config)
    return {proxy: args.proxy, config}
  }
}
