#!/usr/bin/env node
// The TypeScript sources run as they are, through tsx's loader: no build step stands between
// `npm ci` and a working `vtpmd`.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
