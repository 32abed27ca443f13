/**
 * Pure parser of `ostree admin status` (ostree 2022.7 has no --json). Each deployment is a
 * header line `[*] OSNAME CHECKSUM.SERIAL [(staged|pending|rollback)]` followed by indented
 * `Key: value` lines; ostree lists them in boot order, the default (next boot) first.
 */
export interface AdminStatusEntry {
  osname: string;
  checksum: string;
  serial: number;
  /** ostree's `*`: the deployment this system booted. */
  booted: boolean;
  /** ostree's own marker after the checksum, when it printed one. */
  marker: "staged" | "pending" | "rollback" | null;
  version: string | null;
  refspec: string | null;
  pinned: boolean;
}

const HEADER = /^([* ]) (\S+) ([0-9a-f]{64})\.(\d+)(?: \((staged|pending|rollback)\))?$/;

export function parseAdminStatus(text: string): AdminStatusEntry[] {
  const entries: AdminStatusEntry[] = [];
  for (const line of text.split("\n")) {
    const header = HEADER.exec(line);
    if (header) {
      entries.push({
        osname: header[2]!,
        checksum: header[3]!,
        serial: Number(header[4]),
        booted: header[1] === "*",
        marker: (header[5] as AdminStatusEntry["marker"]) ?? null,
        version: null,
        refspec: null,
        pinned: false,
      });
      continue;
    }
    const current = entries.at(-1);
    const detail = /^\s+(Version|origin refspec|Pinned): (.*)$/.exec(line);
    if (!current || !detail) continue;
    if (detail[1] === "Version") current.version = detail[2]!;
    else if (detail[1] === "origin refspec") current.refspec = detail[2]!;
    else current.pinned = detail[2] === "yes";
  }
  return entries;
}
