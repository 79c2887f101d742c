import {SkfpError} from '../../src/lib/errors.js'

/** The one line a user would see for the error fn throws. */
export function lineOf(fn: () => unknown): string {
  try {
    fn()
  } catch (e) {
    if (e instanceof SkfpError) return e.line
    throw e
  }
  throw new Error('expected an SkfpError')
}
