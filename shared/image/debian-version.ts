/**
 * Debian version ordering, as `dpkg --compare-versions` (deb-version(7)): epoch, then upstream
 * version and revision compared by alternating non-digit and digit runs, where `~` sorts
 * before anything, even the end of the string, and letters sort before other characters.
 */
export function compareDebianVersions(a: string, b: string): number {
  const left = split(a);
  const right = split(b);
  if (left.epoch !== right.epoch) return left.epoch < right.epoch ? -1 : 1;
  return compareFragment(left.upstream, right.upstream) || compareFragment(left.revision, right.revision);
}

function split(version: string): { epoch: number; upstream: string; revision: string } {
  const colon = version.indexOf(":");
  const epoch = colon >= 0 ? Number(version.slice(0, colon)) : 0;
  const rest = colon >= 0 ? version.slice(colon + 1) : version;
  const dash = rest.lastIndexOf("-");
  return { epoch, upstream: dash >= 0 ? rest.slice(0, dash) : rest, revision: dash >= 0 ? rest.slice(dash + 1) : "0" };
}

function order(char: string | undefined): number {
  if (char === undefined) return 0;
  if (char === "~") return -1;
  if (/[A-Za-z]/.test(char)) return char.charCodeAt(0);
  return char.charCodeAt(0) + 256;
}

function compareFragment(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    while ((i < a.length && !/\d/.test(a[i]!)) || (j < b.length && !/\d/.test(b[j]!))) {
      const x = i < a.length && !/\d/.test(a[i]!) ? order(a[i]) : 0;
      const y = j < b.length && !/\d/.test(b[j]!) ? order(b[j]) : 0;
      if (x !== y) return x < y ? -1 : 1;
      i++;
      j++;
    }
    let x = "";
    let y = "";
    while (i < a.length && /\d/.test(a[i]!)) x += a[i++];
    while (j < b.length && /\d/.test(b[j]!)) y += b[j++];
    const diff = BigInt(x || "0") - BigInt(y || "0");
    if (diff !== 0n) return diff < 0n ? -1 : 1;
  }
  return 0;
}
