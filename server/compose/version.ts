/** Pure: the version a new commit gets when none is given, from the previous one on the ref. */
export function nextVersion(previous: string | null): string {
  if (previous === null) return "1";
  const match = /^(.*?)(\d+)$/.exec(previous);
  if (!match) return `${previous}.1`;
  const digits = match[2]!;
  return `${match[1]}${(BigInt(digits) + 1n).toString().padStart(digits.length, "0")}`;
}
