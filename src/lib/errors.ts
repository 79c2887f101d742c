/** Error kinds with fixed exit codes (documented in the README) and a hint that says what to do. */
export const EXIT_CODES = {
  usage: 2, // bad flag or value: fix the command line
  environment: 3, // missing tool, kernel feature, privilege: fix the host
  conflict: 4, // something on the host is in the way (running instance, colliding mark/rule, lock)
  tool: 5, // an external program failed unexpectedly
  partial: 6, // a change failed and its rollback failed too: run `skfp down`
  bug: 70, // skfp itself is wrong
  interrupted: 130, // SIGINT (Ctrl-C): what was applied is undone
  terminated: 143, // SIGTERM: likewise
} as const

export type ErrorKind = keyof typeof EXIT_CODES

export class SkfpError extends Error {
  readonly kind: ErrorKind
  readonly hint: string
  readonly argv?: string[]
  readonly stderrTail?: string

  constructor(kind: ErrorKind, message: string, hint: string, detail: {argv?: string[]; stderrTail?: string} = {}) {
    super(message)
    this.name = 'SkfpError'
    this.kind = kind
    this.hint = hint
    this.argv = detail.argv
    this.stderrTail = detail.stderrTail
  }

  get exitCode(): number {
    return EXIT_CODES[this.kind]
  }

  /** The one line a user sees. */
  get line(): string {
    return this.hint ? `${this.message}: ${this.hint}` : this.message
  }
}

export const usageError = (message: string, hint: string) => new SkfpError('usage', message, hint)
export const environmentError = (message: string, hint: string, detail: {argv?: string[]; stderrTail?: string} = {}) => new SkfpError('environment', message, hint, detail)
export const conflictError = (message: string, hint: string) => new SkfpError('conflict', message, hint)

/** The last lines of a program's stderr, for error details. */
export function tail(text: string, lines = 5): string {
  return text.trim().split('\n').slice(-lines).join('\n')
}
