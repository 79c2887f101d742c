/** Human renderings of command results (stdout). */
import chalk from 'chalk'
import type {KernelReport} from './datapath.js'
import type {Verdict} from './doctor.js'
import type {InstanceStatus} from './status.js'

const stateColor = {up: chalk.green, 'half-up': chalk.yellow, down: chalk.dim}

/** rates: per-second increase of each counter since the last screen (status --watch). */
export function renderStatus(s: InstanceStatus, rates?: Partial<Record<string, number>>): string {
  const lines = [`instance ${chalk.bold(s.instance)}: ${stateColor[s.state](s.state)}`]
  if (s.followedBy) lines.push(`  followed by skfp pid ${s.followedBy} (up --follow: it puts the instance right when interfaces or default routes change)`)
  // while another skfp works on it, what is missing is its work in progress, not a crash's leftover
  if (s.changingBy) lines.push(`  ${chalk.yellow('!')} being changed by skfp pid ${s.changingBy} (an up or a down at work) — wait for it`)
  for (const p of s.problems) lines.push(`  ${chalk.yellow('!')} ${p}${s.changingBy ? '' : ` — run \`skfp down --instance ${s.instance}\``}`)
  for (const w of s.warnings ?? []) lines.push(`  ${chalk.yellow('!')} ${w}`)
  if (s.state === 'down') return lines.join('\n')
  if (s.settings) lines.push(`  cgroup     ${s.settings.cgroup}${s.settings.netns ? `\n  netns      ${s.settings.netns}` : ''}`)
  const mode = s.fastpath.enabled ? (s.fastpath.adaptive ? 'on, adaptive' : 'on, every reader') : 'off'
  lines.push(`  fastpath   ${s.fastpath.variant ? `${mode} (variant ${s.fastpath.variant}), ${s.fastpath.sockets ?? '?'} sockets in the sockhash` : `${mode} (not loaded)`}`)
  const r = s.fastpath.readers
  if (r) {
    const k = r.keptOnTcp
    if (r.now) lines.push(`  readers    now: ${r.now.promoted} promoted, ${r.now.watched} watched, ${r.now.barred} barred, ${r.now.released} released`)
    lines.push(`  ${r.now ? 'since up' : 'readers '}   ${r.promoted} promoted; kept on TCP: ${k.splice} splice, ${k.waitall} MSG_WAITALL, ${k.blocking} blocking recv, ${k.notJoined} blocking sockets not joined; ${r.released} left the sockhash`)
    if (r.barredAfterPromotion) lines.push(`             ${r.barredAfterPromotion} barred after promotion${r.stranded ? chalk.yellow(`, ${r.stranded} with redirected bytes waiting for a recv()`) : ''}`)
  }
  const p = s.programs
  if (s.fastpath.variant || p.sockops || p.skMsg) {
    lines.push(`  sock_ops   ${p.sockops ? `prog ${p.sockops.id}, ${p.sockops.attached ? 'attached' : 'NOT attached'}` : 'not loaded'}`)
    lines.push(`  sk_msg     ${p.skMsg ? `prog ${p.skMsg.id}` : 'not loaded'}`)
  }
  if (p.finHold) lines.push(`  fin hold   prog ${p.finHold.id}, ${p.finHold.attached ? 'attached' : 'NOT attached'} (cgroup ingress)`)
  const i = s.intercept
  if (i) {
    const yes = (v: boolean | null) => (v === null ? '-' : v ? 'yes' : chalk.yellow('NO'))
    lines.push(`  intercept  ${i.uplinks.map((u) => `${u.dev}${u.l3 ? ' (L3)' : ''} ${u.attached ? 'attached' : chalk.yellow('NOT attached')}`).join(', ')}; lo ${i.loAttached ? 'attached' : chalk.yellow('NOT attached')}`)
    if (i.lan.length) lines.push(`  lan        ${i.lan.map((u) => `${u.dev} ${u.attached ? 'attached' : chalk.yellow('NOT attached')}`).join(', ')}`)
    lines.push(`  routing    rules v4 ${yes(i.rules.v4)} v6 ${yes(i.rules.v6)}, local routes v4 ${yes(i.routes.v4)} v6 ${yes(i.routes.v6)}`)
    if (i.vpnMarks.length) lines.push(`  vpn        its own packets (marked ${i.vpnMarks.join(', ')}) go direct`)
    lines.push(`  proxy      port ${i.proxy.port} on ${[i.proxy.addr4, i.proxy.addr6].filter(Boolean).join(' and ')}: listening v4 ${yes(i.proxy.listening.v4)} v6 ${yes(i.proxy.listening.v6)}; when down: ${i.proxyDown}`)
    lines.push(`  udp        ${i.udp.enabled ? `intercepted: proxy socket v4 ${yes(i.udp.listening.v4)} v6 ${yes(i.udp.listening.v6)}` : 'not intercepted (--no-udp)'}`)
  }
  if (s.counters)
    for (const [name, value] of Object.entries(s.counters)) {
      if (!value) continue
      const rate = rates?.[name]
      lines.push(`  ${name.padEnd(24)} ${value.toLocaleString('en-US')}${rate === undefined ? '' : `  (${Math.round(rate).toLocaleString('en-US')}/s)`}`)
    }
  return lines.join('\n')
}

/** One argv for humans: a long run of trailing "00" hex bytes is shortened (--json keeps it exact). */
export function renderArgv(argv: string[]): string {
  let end = argv.length
  while (end > 0 && argv[end - 1] === '00') end--
  const zeros = argv.length - end
  return zeros > 8 ? `${argv.slice(0, end).join(' ')} 00 … (${zeros} zero bytes in all)` : argv.join(' ')
}

export function renderPlan(plan: {title: string; argv: string[][]}[]): string {
  return plan.map((s) => `# ${s.title}\n${s.argv.map(renderArgv).join('\n')}`).join('\n')
}

export function renderKernelReport(k: KernelReport): string {
  const mark = {available: chalk.green('ok      '), fallback: chalk.yellow('fallback'), missing: chalk.red('missing ')}
  const c = k.capabilities
  return [
    `kernel ${k.kernel}:`,
    ...k.features.map((f) => `  ${mark[f.status]}  ${f.name}: ${f.detail}`),
    `  interception ${c.interception ? 'works' : 'cannot load'}; fastpath ${c.fastpath ? `loads (variant ${c.fastpath}, memory guard by ${c.guard}, ${c.adaptive ? `adaptive by ${c.adaptive}` : 'not adaptive: --fastpath all only'})` : 'cannot load'}`,
  ].join('\n')
}

export function renderVerdict(v: Verdict): string {
  const mode = v.mode === 'adaptive' ? 'adaptive fastpath' : 'fastpath for every reader (--fastpath all)'
  const lines = [`kernel self-test on ${v.kernel} (${v.testedAt}): ${mode} ${v.fastpathSafe ? chalk.green('safe') : chalk.yellow('has hazards')}`]
  for (const p of v.probes) lines.push(`  ${p.ok ? chalk.green('pass') : chalk.red('FAIL')}  ${p.probe.padEnd(15)}${p.plainOk ? '' : chalk.dim(' (fails over plain TCP too)')}${p.ok ? '' : `  ${p.detail}`}`)
  for (const p of v.limits ?? []) lines.push(`  ${p.ok ? chalk.green('pass') : chalk.yellow('limit')} ${p.probe.padEnd(15)}${p.ok ? '' : `  ${p.detail}`}`)
  if (v.limits?.some((p) => !p.ok)) lines.push('limit: what no kernel path makes safe, reported but never a reason to keep the fastpath off (README: fastpath safety)')
  if (!v.fastpathSafe) lines.push(`--fastpath auto keeps the fastpath off on this kernel. ${v.hazards.length} hazard(s): ${v.hazards.join('; ')}.`, 'Force it with `skfp up --fastpath on --cgroup <cgroup of the applications>` (adaptive) or `--fastpath all` (every reader) for applications that use neither splice() nor MSG_WAITALL.')
  return lines.join('\n')
}
