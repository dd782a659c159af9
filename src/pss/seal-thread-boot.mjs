// A worker starts without the main thread's TypeScript loader: register it, then run the thread.
import { register } from 'tsx/esm/api';

register();
await import('./seal-thread.ts');
