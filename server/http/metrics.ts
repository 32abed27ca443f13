/**
 * Counters and gauges rendered in Prometheus' text format (metric names `aptostree_<area>_<thing>`),
 * and, for a server process, prom-client's standard process and Node.js figures beside them
 * (resident memory, heap, event-loop lag, open handles: what operators of several instances expect).
 */
import { Registry, collectDefaultMetrics } from "prom-client";

type Labels = Record<string, string>;

interface Series {
  help: string;
  type: "counter" | "gauge";
  values: Map<string, { labels: Labels; value: number }>;
}

export class Metrics {
  private readonly series = new Map<string, Series>();
  private process: Registry | null = null;

  /** Adds the process and runtime figures (prom-client's defaults) to what renderAll() answers. */
  collectProcessMetrics(): void {
    if (this.process) return;
    this.process = new Registry();
    collectDefaultMetrics({ register: this.process });
  }

  /** Everything: apt-ostree's figures, then the process's (when collected). */
  async renderAll(): Promise<string> {
    return this.process ? `${this.render()}${withoutFamilies(await this.process.metrics(), MISNAMED_DEFAULTS)}` : this.render();
  }

  counter(name: string, help: string): (amount?: number, labels?: Labels) => void {
    const series = this.define(name, help, "counter");
    return (amount = 1, labels = {}) => {
      const key = labelKey(labels);
      const entry = series.values.get(key) ?? { labels, value: 0 };
      entry.value += amount;
      series.values.set(key, entry);
    };
  }

  gauge(name: string, help: string): (value: number, labels?: Labels) => void {
    const series = this.define(name, help, "gauge");
    return (value, labels = {}) => series.values.set(labelKey(labels), { labels, value });
  }

  render(): string {
    const lines: string[] = [];
    for (const [name, series] of this.series) {
      lines.push(`# HELP ${name} ${series.help}`, `# TYPE ${name} ${series.type}`);
      if (series.values.size === 0 && series.type === "counter") lines.push(`${name} 0`);
      for (const { labels, value } of series.values.values()) lines.push(`${name}${renderLabels(labels)} ${value}`);
    }
    return `${lines.join("\n")}\n`;
  }

  private define(name: string, help: string, type: Series["type"]): Series {
    const existing = this.series.get(name);
    if (existing) return existing;
    const series: Series = { help, type, values: new Map() };
    this.series.set(name, series);
    return series;
  }
}

/**
 * prom-client's gauges that end in `_total`, which `promtool check metrics` refuses (only counters
 * may): the same figures are there by type without the suffix (`nodejs_active_handles{type=…}`).
 */
const MISNAMED_DEFAULTS = new Set(["nodejs_active_resources_total", "nodejs_active_handles_total", "nodejs_active_requests_total"]);

/** The exposition text without the families named in `names` (their HELP, TYPE and samples). */
function withoutFamilies(text: string, names: ReadonlySet<string>): string {
  const nameOf = (line: string) => (line.startsWith("# ") ? line.split(" ")[2] : /^[A-Za-z_:][\w:]*/.exec(line)?.[0]);
  return text
    .split("\n")
    .filter((line) => !names.has(nameOf(line) ?? ""))
    .join("\n");
}

function labelKey(labels: Labels): string {
  return Object.keys(labels).sort().map((k) => `${k}=${labels[k]}`).join(",");
}

function renderLabels(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return "";
  return `{${keys.map((k) => `${k}="${labels[k]!.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`).join(",")}}`;
}
