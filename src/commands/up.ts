import {Flags} from '@oclif/core'
import {SkfpCommand} from '../lib/base-command.js'
import {renderPlan} from '../lib/render.js'
import {usageError} from '../lib/errors.js'
import {followInstance, refuseSecondFollower} from '../lib/follow.js'
import {routingMovedText} from '../lib/intercept.js'
import {changesPutBack, upInstance, type UpResult} from '../lib/lifecycle.js'
import {DEFAULT_FASTPATH_QUEUE, parseUpFlags} from '../lib/settings.js'

export default class Up extends SkfpCommand {
  static summary = 'Load, pin and attach the datapath for an instance.'
  static description = 'A plan of steps, each with its undo: any failure rolls back what was applied. On a running instance with the same settings it does nothing (half up with only tc filters gone, as when an interface was created again, it puts them back); with other settings it refuses; --replace takes it down and up again with these settings.'
  static examples = [
    '<%= config.bin %> up',
    '<%= config.bin %> up --instance lab --netns lab --cgroup /sys/fs/cgroup/unified/lab --fastpath on',
    '<%= config.bin %> up --dry-run',
  ]
  static flags = {
    instance: Flags.string({default: 'default', description: 'Instance name: [a-z0-9-], at most 32 characters.'}),
    cgroup: Flags.string({description: 'cgroup v2 directory whose sockets get the fastpath (default: the cgroup v2 root).'}),
    netns: Flags.string({description: 'Named network namespace (/run/netns/NAME) for interface work.'}),
    'proxy-mark': Flags.string({default: '0', description: "SO_MARK of the proxy's own upstream sockets: never accelerated nor intercepted (0 = none)."}),
    fastpath: Flags.string({default: 'auto', description: 'on, off, or auto: on where the kernel takes the adaptive fastpath (a reader gets redirected bytes once it has shown it reads with recv) and its self-test passes.'}),
    'fastpath-queue': Flags.string({default: String(DEFAULT_FASTPATH_QUEUE), description: 'Bytes a slow reader may have queued on the fastpath before the sender is held back.'}),
    uplink: Flags.string({multiple: true, description: 'Interface whose outgoing TCP is intercepted (repeatable; default: the interfaces of the default routes).'}),
    'proxy-port': Flags.string({description: "Port of the proxy's transparent (IP_TRANSPARENT) listener: interception is on when given."}),
    'proxy-addr': Flags.string({multiple: true, description: 'Address of that listener, at most one per family (default: 127.0.0.1 and ::1).'}),
    fwmark: Flags.string({description: 'Mark put on intercepted packets for the routing rule (default 0x5cf0).'}),
    table: Flags.string({description: 'Routing table that delivers marked packets locally (default 1487).'}),
    bypass: Flags.string({multiple: true, description: 'Destination CIDR that goes direct (repeatable). Loopback, link-local and multicast always do.'}),
    'bypass-port': Flags.string({multiple: true, description: 'Destination port that goes direct (repeatable).'}),
    'bypass-private': Flags.boolean({default: true, allowNo: true, description: 'Private ranges (10/8, 172.16/12, 192.168/16, fc00::/7) go direct; --no-bypass-private intercepts them.'}),
    udp: Flags.boolean({allowNo: true, description: "Intercept UDP too, to the proxy's UDP socket on the same port (default with --proxy-port; --no-udp: TCP only)."}),
    lan: Flags.string({multiple: true, description: 'Interface whose incoming traffic (LAN clients, containers on a bridge) is intercepted too, TCP and UDP (repeatable).'}),
    'intercept-cgroup': Flags.string({multiple: true, description: 'cgroup v2 directory whose sockets (and its descendants\') are intercepted; given: only those are (repeatable).'}),
    'bypass-cgroup': Flags.string({multiple: true, description: 'cgroup v2 directory whose sockets (and its descendants\') are never intercepted (repeatable). The deepest listed cgroup of a socket decides.'}),
    'proxy-down': Flags.string({description: 'With no proxy listener: fail-fast (reset at once, default), fail-closed (drop), pass (go direct).'}),
    replace: Flags.boolean({default: false, description: 'Take a running or half-up instance down and up again with these settings (whether they differ or not).'}),
    'dry-run': Flags.boolean({default: false, description: 'Print every command it would run; change nothing.'}),
    debug: Flags.boolean({default: false, description: 'Load the tracing build (skfp build --debug).'}),
    follow: Flags.boolean({default: false, description: 'Stay in the foreground after up: when an interface comes back or the default routes move, put the instance right as up with the same flags would; Ctrl-C or SIGTERM stop following and leave the instance up; a down ends it.'}),
  }

  async run(): Promise<UpResult> {
    const {flags} = await this.parse(Up)
    const settings = parseUpFlags({...flags, cgroup: flags.cgroup ?? ''})
    if (flags.follow && (flags['dry-run'] || this.jsonEnabled())) throw usageError(`--follow does not go with --${flags['dry-run'] ? 'dry-run' : 'json'}`, 'it stays in the foreground and says what it does in lines of text (run it from a terminal or a service)')
    if (flags.follow && !settings.intercept) throw usageError('--follow needs --proxy-port', 'an instance without interception has no interfaces or routes to follow')
    if (flags.follow) refuseSecondFollower(settings.instance)
    const runner = this.runner()
    const opts = {...this.planOptions(flags['dry-run']), debugObject: flags.debug}
    const result = await upInstance(settings, {...opts, replace: flags.replace}, runner)
    if (result.dryRun) this.say(renderPlan(result.plan))
    else if (result.action === 'unchanged') this.say(`instance ${result.instance} is already up with these settings`)
    else if (result.action === 'switched') this.say(`instance ${result.instance}: fastpath switched ${result.fastpath ? 'on' : 'off'}`)
    else if (result.routingMoved) this.say(`instance ${result.instance} follows the routing: ${routingMovedText(result.routingMoved)} (taken down and up again)`)
    else if (result.action === 'repaired') this.say(`instance ${result.instance} is up again: ${changesPutBack(result)} missing change(s) put back`)
    else this.say(`instance ${result.instance} is up (fastpath ${result.fastpath ? 'on' : 'off'})`)
    if (flags.follow) {
      this.say(`following the links and routes of ${settings.netns ? `netns ${settings.netns}` : 'the host'}: Ctrl-C stops (the instance stays up)`)
      const end = await followInstance(settings, opts, runner, (line) => this.say(line))
      this.say(end === 'down' ? `instance ${result.instance} was taken down: no longer following` : `stopped following: instance ${result.instance} stays up (skfp down takes it down)`)
    }
    return result
  }
}
