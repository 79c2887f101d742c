/** Parsing tools' JSON output: checked against the shape skfp relies on, never just cast. */
import {SkfpError} from '../errors.js'

export type Check = (value: unknown) => boolean

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
/** An object whose listed fields have these typeof's. */
export const hasFields =
  (fields: Record<string, 'number' | 'string' | 'boolean' | 'object'>): Check =>
  (v) =>
    isObject(v) && Object.entries(fields).every(([k, t]) => typeof v[k] === t)
export const arrayOf =
  (item: Check): Check =>
  (v) =>
    Array.isArray(v) && v.every(item)

/** JSON text from `what` (the command), checked; a tool error naming the command otherwise. */
export function parseChecked<T>(text: string, check: Check, what: string): T {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new SkfpError('tool', `${what} printed no valid JSON (${(error as Error).message})`, 'check the tool version: skfp reads its -j output')
  }
  if (!check(value)) throw new SkfpError('tool', `${what} printed JSON of an unexpected shape`, 'check the tool version: skfp reads its -j output', {stderrTail: text.slice(0, 400)})
  return value as T
}
