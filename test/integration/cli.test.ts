// The CLI's own surface: help with examples for every command, shell completion.
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
