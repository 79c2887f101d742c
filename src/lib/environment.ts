/** Host checks of `skfp doctor`: what the datapath needs, each with the fix when missing. */
import {existsSync} from 'node:fs'
import {resolveTool, TOOLS, type Tool} from './exec.js'
import {bpffsMounted, cgroup2Mount} from './host.js'

export interface EnvironmentCheck {
  name: string
  ok: boolean
  hint: string
}

export function checkEnvironment(): EnvironmentCheck[] {
  const checks: EnvironmentCheck[] = [
    {name: 'root', ok: process.getuid?.() === 0, hint: 'run skfp as root'},
    {name: 'kernel BTF (/sys/kernel/btf/vmlinux)', ok: existsSync('/sys/kernel/btf/vmlinux'), hint: 'a kernel built with CONFIG_DEBUG_INFO_BTF=y'},
    {name: 'cgroup v2 mounted', ok: !!cgroup2Mount(), hint: '`skfp up` mounts it at /sys/fs/cgroup/unified'},
    {name: 'bpffs mounted at /sys/fs/bpf', ok: bpffsMounted(), hint: '`skfp up` mounts it'},
  ]
  for (const tool of ['bpftool', 'tc', 'ip', 'nsenter', 'clang'] as Tool[]) {
    let ok = true
    try {
      resolveTool(tool)
    } catch {
      ok = false
    }
    checks.push({name: `${tool} installed`, ok, hint: `apt-get install ${TOOLS[tool]}`})
  }
  return checks
}
