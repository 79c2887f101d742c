#!/usr/bin/env node
// dist/cli.js: the CLI bundled by `npm run build:ts` (scripts/bundle.mjs)
import {execute} from '../dist/cli.js'

await execute({dir: import.meta.url})
