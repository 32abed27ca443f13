/**
 * Puts every farm device in one group, as an operator would (groups are the operator's to
 * assign, never taken from reports), so one rollout selects them all: a body naming 10k device
 * ids would pass the API's 64 KiB limit. Setup, not measured.
 */
export async function assignGroup(call: (path: string, body: unknown) => Promise<{ status: number }>, ids: string[], group: string, concurrency = 16): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++]!;
      const { status } = await call(`devices/${id}/groups`, { groups: [group] });
      if (status !== 200) throw new Error(`assigning ${id} to group ${group}: HTTP ${status}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}
