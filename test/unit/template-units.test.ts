// skfp template systemd | daemonset: the unit and the manifest from up's flags. Pure: files are
// written to a temp folder only; systemd-analyze verify and python3's yaml only read them.
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Parser} from '@oclif/core'
import {afterAll, describe, expect, it} from 'vitest'
import Template from '../../src/commands/template.js'
import Up from '../../src/commands/up.js'
import {PROJECT_ROOT} from '../../src/lib/build.js'
import {SkfpError} from '../../src/lib/errors.js'
import {parseUpFlags} from '../../src/lib/settings.js'
import {daemonSetManifest, daemonSetOptions, renderNamedTemplate, systemdWord, toYaml, type TemplateFlags} from '../../src/lib/template.js'

const parse = async (argv: string[]) => {
  const {args, flags} = await Parser.parse(argv, {flags: Template.flags, args: Template.args, strict: true})
  return {name: args.name as string, flags: flags as TemplateFlags}
}
const render = async (argv: string[]) => {
  const {name, flags} = await parse(argv)
  return renderNamedTemplate(name, flags, Up.flags)
}
const usageLine = async (argv: string[]) => {
  try {
    await render(argv)
  } catch (error) {
    expect(error).toBeInstanceOf(SkfpError)
    expect((error as SkfpError).kind).toBe('usage')
    return (error as SkfpError).line
  }
  throw new Error(`no error for ${argv.join(' ')}`)
}

const dir = mkdtempSync(join(tmpdir(), 'skfp-template-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))

const has = (cmd: string, args: string[]) => spawnSync(cmd, args, {stdio: 'ignore'}).status === 0
const systemdAnalyze = has('systemd-analyze', ['--version'])
const pyyaml = has('python3', ['-c', 'import yaml'])
const parseYaml = (text: string): unknown =>
  JSON.parse(execFileSync('python3', ['-c', 'import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))'], {input: text, encoding: 'utf8'}))

/** key=value lines of a unit, comments left out. */
const settingsOf = (unit: string) =>
  unit
    .split('\n')
    .filter((l) => /^[A-Za-z]+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)])
const valuesOf = (unit: string, key: string) => settingsOf(unit).filter(([k]) => k === key).map(([, v]) => v)

const defaultSkfp = `${systemdWord(process.execPath, true)} ${systemdWord(join(PROJECT_ROOT, 'bin', 'run.js'))}`

describe('skfp template systemd', () => {
  it('runs up at boot and down at stop, as a oneshot that stays active (the fastpath alone)', async () => {
    const unit = await render(['systemd'])
    expect(valuesOf(unit, 'ExecStart')).toEqual([`${defaultSkfp} up --instance=default`])
    expect(valuesOf(unit, 'ExecStop')).toEqual([`${defaultSkfp} down --instance=default`])
    // reload: up again with the same settings (puts back what a re-created interface lost)
    expect(valuesOf(unit, 'ExecReload')).toEqual(valuesOf(unit, 'ExecStart'))
    expect(valuesOf(unit, 'Type')).toEqual(['oneshot'])
    expect(valuesOf(unit, 'RemainAfterExit')).toEqual(['yes'])
    expect(valuesOf(unit, 'After')).toEqual(['network-online.target'])
    expect(valuesOf(unit, 'Wants')).toEqual(['network-online.target'])
    expect(valuesOf(unit, 'WantedBy')).toEqual(['multi-user.target'])
  })

  it("passes up's flags that differ from their defaults, orders itself after the proxy's units, and with interception follows links and routes", async () => {
    const unit = await render([
      'systemd', '--instance', 'lab', '--proxy-port', '7894', '--proxy-mark', '6666', '--after', 'mihomo.service', '--after', 'sing-box.service',
      '--bypass', '192.0.2.0/24', '--bypass', '198.51.100.0/24', '--no-bypass-private', '--fastpath', 'off', '--fastpath-queue', '4194304', '--skfp', '/usr/local/bin/skfp',
    ])
    const up = '/usr/local/bin/skfp up --instance=lab --proxy-mark=6666 --fastpath=off --proxy-port=7894 --bypass=192.0.2.0/24 --bypass=198.51.100.0/24 --no-bypass-private'
    // with interception: up, then the same up following links and routes as the main process
    expect(valuesOf(unit, 'Type')).toEqual(['exec'])
    expect(valuesOf(unit, 'ExecStartPre')).toEqual([up])
    expect(valuesOf(unit, 'ExecStart')).toEqual([`${up} --follow`])
    expect(valuesOf(unit, 'ExecReload')).toEqual([up])
    expect(valuesOf(unit, 'ExecStop')).toEqual([])
    expect(valuesOf(unit, 'ExecStopPost')).toEqual(['/usr/local/bin/skfp down --instance=lab'])
    expect(valuesOf(unit, 'Restart')).toEqual(['on-failure'])
    expect(valuesOf(unit, 'RemainAfterExit')).toEqual([])
    expect(valuesOf(unit, 'After')).toEqual(['network-online.target', 'mihomo.service sing-box.service'])
    expect(valuesOf(unit, 'Description')).toEqual(['skfp eBPF datapath, instance lab'])
  })

  it('a relative --cgroup is made absolute from here (the unit runs from /)', async () => {
    const unit = await render(['systemd', '--cgroup', 'rel/cg'])
    expect(valuesOf(unit, 'ExecStart')[0]).toContain(` --cgroup=${join(process.cwd(), 'rel/cg')}`)
  })

  it.each([
    ['plain', 'plain'],
    ['/sys/fs/cgroup/system.slice', '/sys/fs/cgroup/system.slice'],
    ['--cgroup=/a b', '"--cgroup=/a b"'],
    ['50%', '50%%'],
    ['$HOME', '$$HOME'],
    ['a\\x2db', '"a\\\\x2db"'],
    ['say "hi"', '"say \\"hi\\""'],
    [';', '";"'],
    ['', '""'],
    ['tab\there', '"tab\\x09here"'],
  ])('systemd quoting: %j → %s', (word, quoted) => {
    expect(systemdWord(word)).toBe(quoted)
  })

  it("the program's path is never a variable: its $ stays single", () => {
    expect(systemdWord('/opt/a $b/node', true)).toBe('"/opt/a $b/node"')
  })

  it('is hardened, and keeps the host mount namespace that mounts and pins need', async () => {
    const unit = await render(['systemd'])
    const keys = settingsOf(unit).map(([k]) => k)
    for (const k of ['ProtectSystem', 'ProtectHome', 'PrivateTmp', 'PrivateDevices', 'ReadWritePaths', 'ProtectKernelModules', 'ProtectKernelLogs', 'ProtectProc', 'ProtectHostname', 'PrivateMounts',
      'ProtectKernelTunables', 'ProtectControlGroups', 'MemoryDenyWriteExecute', 'PrivateNetwork', 'PrivateUsers', 'IPAddressDeny'])
      expect(keys, k).not.toContain(k)
    expect(valuesOf(unit, 'CapabilityBoundingSet')).toEqual(['CAP_BPF CAP_PERFMON CAP_NET_ADMIN CAP_SYS_ADMIN CAP_DAC_OVERRIDE'])
    expect(valuesOf(unit, 'NoNewPrivileges')).toEqual(['yes'])
    expect(valuesOf(unit, 'RestrictAddressFamilies')).toEqual(['AF_UNIX AF_INET AF_INET6 AF_NETLINK'])
    expect(valuesOf(unit, 'RestrictNamespaces')).toEqual(['net'])
    expect(valuesOf(unit, 'LimitMEMLOCK')).toEqual(['infinity'])
    expect(valuesOf(unit, 'SystemCallFilter')[0]).not.toMatch(/@mount|@privileged|@resources|@system-service/)
  })

  it('passes systemd-analyze verify, odd paths included', async () => {
    expect(systemdAnalyze, 'systemd-analyze is missing: npm test installs Debian\'s systemd').toBe(true)
    // a program path with a space, % and $, and an argument with a backslash, quote, space, % and $
    const odd = join(dir, 'a b%$c')
    mkdirSync(odd)
    symlinkSync(process.execPath, join(odd, 'node'))
    const units = {
      'skfp-default.service': await render(['systemd', '--proxy-port', '7894', '--proxy-mark', '6666', '--after', 'mihomo.service']),
      'skfp-odd.service': await render(['systemd', '--instance', 'odd', '--skfp', join(odd, 'node'), '--cgroup', '/sys/fs/cgroup/system.slice/x\\x2dy "z" 5%$.slice']),
    }
    for (const [file, text] of Object.entries(units)) {
      writeFileSync(join(dir, file), text)
      const r = spawnSync('systemd-analyze', ['verify', join(dir, file)], {encoding: 'utf8'})
      expect(`${r.stdout}${r.stderr}`.split('\n').filter((l) => l.includes(file)), file).toEqual([])
      expect(r.status, file).toBe(0)
    }
    // the same, with a program that is not there: verify reads the path exactly as quoted
    writeFileSync(join(dir, 'skfp-missing.service'), await render(['systemd', '--skfp', join(odd, 'nodeX')]))
    const r = spawnSync('systemd-analyze', ['verify', join(dir, 'skfp-missing.service')], {encoding: 'utf8'})
    expect(r.stderr).toContain(`Command ${join(odd, 'nodeX')} is not executable`)
  })

  it("refuses bad input with up's one-line usage errors", async () => {
    expect(await usageLine(['systemd', '--proxy-port', '0', '--proxy-mark', '1'])).toBe(
      (() => {
        try {
          parseUpFlags({instance: 'default', cgroup: '', 'proxy-mark': '1', fastpath: 'auto', 'fastpath-queue': '4194304', 'proxy-port': '0'})
        } catch (error) {
          return (error as SkfpError).line
        }
      })(),
    )
    expect(await usageLine(['systemd', '--proxy-port', '7894'])).toMatch(/^interception needs --proxy-mark/)
    expect(await usageLine(['systemd', '--instance', 'Lab'])).toMatch(/^bad instance name "Lab"/)
    expect(await usageLine(['systemd', '--after', 'mihomo'])).toMatch(/^--after "mihomo" is not a unit name/)
    expect(await usageLine(['systemd', '--after', 'a%i.service'])).toMatch(/is not a unit name/)
    expect(await usageLine(['systemd', '--skfp', 'bin/run.js'])).toMatch(/^--skfp "bin\/run.js" is not an absolute path/)
    expect(await usageLine(['systemd', '--image', 'x'])).toMatch(/^--image is not a flag of skfp template systemd/)
    await expect(parse(['systemd', '--dry-run'])).rejects.toThrow(/Nonexistent flag: --dry-run/)
  })
})

describe('skfp template daemonset', () => {
  const manifestOf = async (argv: string[]) => {
    const {flags} = await parse(['daemonset', ...argv])
    return JSON.parse(JSON.stringify(daemonSetManifest(daemonSetOptions(flags, Up.flags))))
  }
  const image = ['--image', 'registry.example/skfp:0.1.0']

  it('runs on every node in the host network, privileged, with the host bpffs and cgroup tree', async () => {
    const m = await manifestOf([...image, '--proxy-port', '7893', '--proxy-mark', '255', '--fastpath', 'off', '--instance', 'edge'])
    expect([m.apiVersion, m.kind, m.metadata.name, m.metadata.namespace]).toEqual(['apps/v1', 'DaemonSet', 'skfp-edge', 'kube-system'])
    const labels = {'app.kubernetes.io/name': 'skfp', 'app.kubernetes.io/instance': 'edge'}
    expect(m.metadata.labels).toEqual(labels)
    expect(m.spec.selector.matchLabels).toEqual(labels)
    expect(m.spec.template.metadata.labels).toEqual(labels)
    expect(m.spec.updateStrategy).toEqual({type: 'RollingUpdate', rollingUpdate: {maxUnavailable: 1, maxSurge: 0}})
    const pod = m.spec.template.spec
    expect([pod.hostNetwork, pod.hostPID, pod.automountServiceAccountToken]).toEqual([true, false, false])
    expect(pod.tolerations).toEqual([{operator: 'Exists'}])
    expect(pod.terminationGracePeriodSeconds).toBe(30)
    expect(pod.volumes).toEqual([
      {name: 'bpffs', hostPath: {path: '/sys/fs/bpf', type: 'DirectoryOrCreate'}},
      {name: 'cgroup', hostPath: {path: '/sys/fs/cgroup', type: 'Directory'}},
    ])
    const all = [...pod.initContainers, ...pod.containers]
    expect(all.map((c: {name: string}) => c.name)).toEqual(['skfp-down', 'skfp-up', 'skfp'])
    for (const c of all) {
      expect(c.image).toBe('registry.example/skfp:0.1.0')
      expect(c.securityContext).toEqual({privileged: true, runAsUser: 0})
      expect(c.volumeMounts).toEqual([
        {name: 'bpffs', mountPath: '/sys/fs/bpf', mountPropagation: 'Bidirectional'},
        {name: 'cgroup', mountPath: '/sys/fs/cgroup', mountPropagation: 'HostToContainer'},
      ])
    }
    expect(pod.initContainers[0].command).toEqual(['skfp', 'down', '--instance=edge'])
    expect(pod.initContainers[1].command).toEqual(['skfp', 'up', '--instance=edge', '--cgroup=/sys/fs/cgroup', '--proxy-mark=255', '--fastpath=off', '--proxy-port=7893'])
    const main = pod.containers[0]
    // interception: the pod's process is the same up, following links and routes
    expect(main.command).toEqual([...pod.initContainers[1].command, '--follow'])
    expect(main.lifecycle).toEqual({preStop: {exec: {command: ['skfp', 'down', '--instance=edge']}}})
    expect(main.readinessProbe.exec.command.slice(0, 2)).toEqual(['node', '-e'])
  })

  it("--fastpath auto: up enters the host's cgroup namespace for the self-test, so the pod shares the host's PIDs", async () => {
    const pod = (await manifestOf([...image, '--cgroup', '/sys/fs/cgroup/kubepods.slice', '--skfp', '/opt/skfp/bin/run.js'])).spec.template.spec
    expect(pod.hostPID).toBe(true)
    expect(pod.initContainers[1].command).toEqual(['nsenter', '--cgroup=/proc/1/ns/cgroup', '--', '/opt/skfp/bin/run.js', 'up', '--instance=default', '--cgroup=/sys/fs/cgroup/kubepods.slice'])
    // the fastpath alone: nothing to follow, the pod waits
    expect(pod.containers[0].command.slice(0, 2)).toEqual(['node', '-e'])
  })

  it("--netns: the host's named namespaces are mounted in", async () => {
    const pod = (await manifestOf([...image, '--netns', 'lab', '--fastpath', 'on'])).spec.template.spec
    expect(pod.volumes).toContainEqual({name: 'netns', hostPath: {path: '/run/netns', type: 'Directory'}})
    for (const c of [...pod.initContainers, ...pod.containers]) expect(c.volumeMounts).toContainEqual({name: 'netns', mountPath: '/run/netns', mountPropagation: 'HostToContainer'})
    expect(pod.initContainers[1].command).toContain('--netns=lab')
  })

  it('its YAML parses back to the manifest', async () => {
    expect(pyyaml, 'python3-yaml is missing: npm test installs it').toBe(true)
    for (const argv of [[...image, '--proxy-port', '7893', '--proxy-mark', '0x5cf1', '--proxy-down', 'pass'], [...image, '--netns', 'lab', '--instance', 'on']]) {
      const {flags} = await parse(['daemonset', ...argv])
      expect(parseYaml(await render(['daemonset', ...argv]))).toEqual(JSON.parse(JSON.stringify(daemonSetManifest(daemonSetOptions(flags, Up.flags)))))
    }
  })

  it('YAML: strings stay strings, comments stay comments', () => {
    expect(pyyaml, 'python3-yaml is missing: npm test installs it').toBe(true)
    const value = {a: ['on', 'yes', 'null', '10m', '0x5cf0', '1487', '--x=y', 'a: b', '# no', 'multi\nline', 'q"uote\\', ''], n: 0, t: true, e: [], o: {}, nested: [{k: 'v', l: [1]}]}
    expect(parseYaml(toYaml(value))).toEqual(value)
  })

  it('the readiness probe succeeds only while the instance is up', async () => {
    const pod = (await manifestOf([...image, '--instance', 'edge'])).spec.template.spec
    const [node, flag, script] = pod.containers[0].readinessProbe.exec.command
    const bin = join(dir, 'bin')
    mkdirSync(bin, {recursive: true})
    // a stand-in skfp on PATH: `status --instance=edge --json` prints the state it is given
    writeFileSync(
      join(bin, 'skfp'),
      `#!${process.execPath}\nif (process.argv.slice(2).join(' ') !== 'status --instance=edge --json') process.exit(9)\nconsole.log(JSON.stringify({instances: [{instance: 'edge', state: process.env.STATE}], selfTest: null}, null, 2))\n`,
    )
    chmodSync(join(bin, 'skfp'), 0o755)
    const probe = (state: string) => spawnSync(node === 'node' ? process.execPath : node, [flag, script], {env: {PATH: `${bin}:${process.env.PATH}`, STATE: state}, stdio: 'ignore'}).status
    expect([probe('up'), probe('half-up'), probe('down')]).toEqual([0, 1, 1])
  })

  it('the waiting container ends at once on SIGTERM', async () => {
    const [, flag, script] = (await manifestOf(image)).spec.template.spec.containers[0].command
    const child = spawn(process.execPath, [flag, script], {stdio: 'ignore'})
    await new Promise((r) => setTimeout(r, 300))
    child.kill('SIGTERM')
    expect(await new Promise((r) => child.on('exit', (code) => r(code)))).toBe(0)
  })

  it('refuses bad input with one-line usage errors', async () => {
    expect(await usageLine(['daemonset'])).toMatch(/^skfp template daemonset needs --image/)
    expect(await usageLine(['daemonset', ...image, '--cgroup', '/run/cg'])).toMatch(/^--cgroup \/run\/cg is not under \/sys\/fs\/cgroup/)
    expect(await usageLine(['daemonset', ...image, '--after', 'mihomo.service'])).toMatch(/^--after is not a flag of skfp template daemonset/)
    expect(await usageLine(['daemonset', ...image, '--fastpath', 'maybe'])).toMatch(/^--fastpath "maybe" is not a mode/)
    expect(await usageLine(['daemonset', ...image, '--skfp', '--x'])).toMatch(/is not a command/)
  })
})
