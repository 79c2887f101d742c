import {Args, Flags} from '@oclif/core'
import {SkfpCommand} from '../lib/base-command.js'
import {renderNamedTemplate, SS_REDIR_FLAGS, TEMPLATE_NAMES, type TemplateResult} from '../lib/template.js'
import Up from './up.js'

// up's own flags, so a template takes exactly what up takes; a unit that changes nothing is no use
const {'dry-run': _dryRun, ...upFlags} = Up.flags

export default class Template extends SkfpCommand {
  static summary = "Print a proxy config snippet, a systemd unit or a Kubernetes DaemonSet matching skfp up's flags."
  static description =
    'Proxy templates (v2ray, xray, mihomo, sing-box, ss-redir) need --proxy-port and --proxy-mark; ss-redir also its server (--ss-server, --ss-password), which skfp up must --bypass. systemd: a unit that runs skfp up with the flags given at boot and skfp down at stop. daemonset: skfp up on every node, skfp down when its pod goes.'
  static examples = [
    '<%= config.bin %> template v2ray --proxy-port 7893 --proxy-mark 255',
    '<%= config.bin %> template mihomo --proxy-port 7894 --proxy-mark 6666 --proxy-addr 127.0.0.1',
    '<%= config.bin %> template ss-redir --proxy-port 1080 --proxy-mark 1 --proxy-addr 127.0.0.1 --ss-server 203.0.113.9:8388 --ss-password secret --bypass 203.0.113.9/32',
    '<%= config.bin %> template systemd --proxy-port 7894 --proxy-mark 6666 --after mihomo.service > /etc/systemd/system/skfp-default.service',
    '<%= config.bin %> template daemonset --image registry.example/skfp:0.1.0 --fastpath off > skfp-daemonset.yaml',
  ]
  static args = {name: Args.string({required: true, description: `One of: ${TEMPLATE_NAMES.join(', ')}.`})}
  static flags = {
    ...upFlags,
    after: Flags.string({multiple: true, description: "systemd: the proxy's unit (e.g. mihomo.service), started before skfp and stopped after it (repeatable).", helpGroup: 'TEMPLATE'}),
    skfp: Flags.string({description: "systemd: skfp's absolute path (default: this node running this bin/run.js); daemonset: skfp in the image (default: skfp on its PATH).", helpGroup: 'TEMPLATE'}),
    image: Flags.string({description: 'daemonset: the container image holding skfp, node and the tools skfp runs.', helpGroup: 'TEMPLATE'}),
    ...SS_REDIR_FLAGS,
  }

  async run(): Promise<TemplateResult> {
    const {args, flags} = await this.parse(Template)
    const config = renderNamedTemplate(args.name, flags, upFlags)
    if (!this.jsonEnabled()) process.stdout.write(config)
    return {template: args.name, config}
  }
}
