// The error contract: every failure is one SkfpError with its kind, exit code and one line.
import {describe, expect, it} from 'vitest'
import {asSkfpError} from '../../src/lib/base-command.js'
import {EXIT_CODES, SkfpError} from '../../src/lib/errors.js'

describe('asSkfpError', () => {
  it('an unexpected Error is a bug: exit 70, its message kept, its stack for --verbose', () => {
    const e = asSkfpError(new RangeError('record too large: 5000 > 4088 bytes'), undefined)
    expect([e.kind, e.exitCode]).toEqual(['bug', 70])
    expect(e.line).toBe('internal error: record too large: 5000 > 4088 bytes: this is a bug in skfp: report it with the output of --verbose')
    expect(e.stderrTail).toContain('RangeError')
  })

  it('something thrown that is not an Error is a bug too', () => {
    expect(asSkfpError('boom', undefined)).toMatchObject({kind: 'bug', message: 'internal error: boom'})
  })

  it('oclif parse errors are usage errors naming the command', () => {
    const parse = Object.assign(new Error('Nonexistent flag: --x\nSee more help with --help'), {oclif: {exit: 2}})
    expect(asSkfpError(parse, undefined, 'up').line).toBe('Nonexistent flag: --x: see `skfp up --help`')
  })

  it('after SIGINT or SIGTERM any failure is the interruption, exit 130 / 143; a partial rollback keeps exit 6', () => {
    const tool = new SkfpError('tool', 'bpftool failed (exit 1)', 'see --verbose')
    expect(asSkfpError(tool, 'SIGINT').exitCode).toBe(130)
    expect(asSkfpError(new Error('x'), 'SIGTERM').exitCode).toBe(143)
    expect(asSkfpError(new SkfpError('partial', 'p', 'run skfp down'), 'SIGINT').exitCode).toBe(6)
  })

  it('an SkfpError passes through', () => {
    const e = new SkfpError('conflict', 'instance lab is half up', 'run `skfp down` first')
    expect(asSkfpError(e, undefined)).toBe(e)
  })

  it('the documented exit codes', () => {
    expect(EXIT_CODES).toEqual({usage: 2, environment: 3, conflict: 4, tool: 5, partial: 6, bug: 70, interrupted: 130, terminated: 143})
  })
})
