/** clang: argv for BPF objects and for the small C programs skfp runs (probes, relay). */
import type {Cmd} from '../exec.js'

export type BpfTarget = 'bpfel' | 'bpfeb'

/** Debian keeps asm/types.h under the multiarch include directory. */
export function multiarchInclude(arch: string = process.arch): string {
  const triplet: Record<string, string> = {x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu', arm: 'arm-linux-gnueabihf', ppc64: 'powerpc64le-linux-gnu', s390x: 's390x-linux-gnu', riscv64: 'riscv64-linux-gnu'}
  return `/usr/include/${triplet[arch] ?? `${arch}-linux-gnu`}`
}

export const compileBpf = (source: string, object: string, target: BpfTarget, debug: boolean, defines: string[] = []): Cmd => ({
  tool: 'clang',
  args: ['-O2', '-g', '-Wall', '-Werror', '-target', target, `-I${multiarchInclude()}`, ...(debug ? ['-DSKFP_DEBUG'] : []), ...defines, '-c', source, '-o', object],
})

export const compileProgram = (source: string, binary: string, libs: string[] = []): Cmd => ({
  tool: 'clang',
  args: ['-O2', '-Wall', '-Wextra', '-Werror', '-pthread', '-o', binary, source, ...libs],
})
