/** sysctl, inside the target netns (net.* values are per namespace). */
import type {Cmd, Runner} from '../exec.js'

const sysctl = (args: string[], netns?: string): Cmd => (netns ? {tool: 'sysctl', args, netns} : {tool: 'sysctl', args})

export const set = (key: string, value: string, netns?: string) => sysctl(['-w', `${key}=${value}`], netns)

export async function get(runner: Runner, key: string, netns?: string): Promise<string | undefined> {
  const r = await runner.run(sysctl(['-n', key], netns), {allowFailure: true})
  return r.exitCode === 0 ? r.stdout.trim() : undefined
}
