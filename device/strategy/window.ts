import type { RebootStrategy } from "./index.ts";

const minutesOf = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

/** Reboot only inside a daily local-time window like `02:00-04:00` (it may cross midnight). */
export function windowStrategy(window: string): RebootStrategy {
  const [start, end] = window.split("-").map(minutesOf) as [number, number];
  const inside = (now: Date) => {
    const minute = now.getHours() * 60 + now.getMinutes();
    return start <= end ? minute >= start && minute < end : minute >= start || minute < end;
  };
  return {
    label: "window",
    canRebootNow: inside,
    retryInMs: (now) => {
      if (inside(now)) return 0;
      const minute = now.getHours() * 60 + now.getMinutes();
      const wait = (start - minute + 1440) % 1440 || 1440;
      return wait * 60_000 - now.getSeconds() * 1000 - now.getMilliseconds();
    },
  };
}
