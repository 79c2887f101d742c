// The CLI's own surface: help with examples for every command, shell completion, and a command line
// it cannot parse (before any command runs: nothing on the host can change) refused in one line.
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {skfp} from './helpers.js'

const COMMANDS = ['build', 'up', 'status', 'down', 'doctor', 'bench', 'demo', 'template']

describe('the CLI', () => {
  it.each(COMMANDS)('skfp %s --help shows examples', async (cmd) => {
    const r = await skfp([cmd, '--help'])
    expect(r.exitCode, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^EXAMPLES\n\s+\$ skfp /m)
  })

  it.each([
    [['bogus', 'up'], /^skfp: unknown command "bogus": use one of bench, build, demo, doctor, down, status, template, up: see `skfp --help`$/],
    [['help', 'toString'], /^skfp: unknown command "toString": use one of .+: see `skfp --help`$/],
    [['--bogus', 'up'], /^skfp: unknown flag --bogus before the command: use one of .+: see `skfp --help`$/],
    [['template'], /^skfp: missing NAME \(one of: v2ray, xray, mihomo, sing-box, ss-redir, systemd, daemonset\): see `skfp template --help`$/],
    [['template', 'v2ray', 'extra'], /^skfp: Unexpected argument: extra: see `skfp template --help`$/],
  ])('skfp %j is refused in one line with exit 2', async (argv, line) => {
    const r = await skfp(argv)
    expect(r.exitCode, r.stderr).toBe(2)
    expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1)
    expect(r.stderr.trimEnd()).toMatch(line)
    expect(r.stdout).toBe('')
  })

  it('skfp help [COMMAND] is skfp [COMMAND] --help', async () => {
    for (const [argv, same] of [[['help'], ['--help']], [['help', 'up'], ['up', '--help']]]) {
      const r = await skfp(argv)
      expect(r.exitCode, r.stderr).toBe(0)
      expect(r.stdout).toBe((await skfp(same)).stdout)
    }
  })

  it('skfp autocomplete: bash and zsh completion of the commands and their flags', async () => {
    const home = mkdtempSync(join(tmpdir(), 'skfp-tt-home-'))
    try {
      const r = await skfp(['autocomplete', 'script', 'bash'], {HOME: home})
      expect(r.exitCode, r.stderr).toBe(0)
      expect(r.stdout).toContain(`${home}/.cache/skfp/autocomplete/bash_setup`)
      const zsh = await skfp(['autocomplete', 'zsh'], {HOME: home}) // builds the completion cache
      expect(zsh.exitCode, zsh.stderr).toBe(0)
      const functions = readFileSync(join(home, '.cache', 'skfp', 'autocomplete', 'functions', 'zsh', '_skfp'), 'utf8')
      for (const word of ['up', 'down', 'status', 'doctor', '--proxy-port', '--fastpath']) expect(functions).toContain(word.replace(/^--/, ''))
    } finally {
      rmSync(home, {recursive: true, force: true})
    }
  })
})
