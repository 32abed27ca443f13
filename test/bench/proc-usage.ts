/** What /proc says a process uses: resident memory (all, private, file-backed) and CPU ticks. */
import { readFile } from "node:fs/promises";

export interface ProcUsage {
  rss: number;
  anon: number;
  file: number;
  /** User plus system time, in clock ticks (1/100 s here). */
  ticks: number;
}

export async function procUsage(pid: number): Promise<ProcUsage> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const bytes = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)![1]) * 1024;
  const stat = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
  return { rss: bytes("VmRSS"), anon: bytes("RssAnon"), file: bytes("RssFile"), ticks: Number(stat[11]) + Number(stat[12]) };
}
