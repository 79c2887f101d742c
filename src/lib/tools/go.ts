/** go: argv for the small Go programs of probes/ (standard library only: no module, no download). */
import type {Cmd} from '../exec.js'

/** Builds the one-file program source into binary; cacheDir holds the compiler's cache. */
export const goBuild = (source: string, binary: string, cacheDir: string): Cmd => ({
  tool: 'go',
  args: ['build', '-trimpath', '-o', binary, source],
  // GOPATH mode (no go.mod): a standard-library program needs nothing else, and nothing is fetched
  env: {GO111MODULE: 'off', GOPROXY: 'off', CGO_ENABLED: '0', GOCACHE: cacheDir, GOPATH: `${cacheDir}/gopath`, HOME: cacheDir},
})
