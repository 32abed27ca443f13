/**
 * Coalesces calls to an idempotent task (the rollout tick): at most one run at a time and at
 * most one waiting, whatever the number of callers. A call while nothing runs starts a run; a
 * call while one runs gets the run queued after it (which starts later, so it sees what the
 * caller changed); a call while one is queued shares that one.
 */
export function coalesce(task: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | null = null;
  let queued: Promise<void> | null = null;
  const start = (): Promise<void> => {
    const run: Promise<void> = Promise.resolve()
      .then(task)
      .finally(() => {
        if (running === run) running = null;
      });
    running = run;
    return run;
  };
  return () => {
    if (queued) return queued;
    if (!running) return start();
    queued = running.then(
      () => undefined,
      () => undefined,
    ).then(() => {
      queued = null;
      return start();
    });
    return queued;
  };
}
