/**
 * Base class of every error apt-ostree raises on purpose. `code` is stable (logs, metrics,
 * exit codes); the message names the evidence and, where there is one, the fix.
 */
export class AptOstreeError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Bad command-line usage: the CLI prints usage with it and exits 2. */
export class UsageError extends AptOstreeError {
  constructor(message: string) {
    super("E_USAGE", message);
  }
}

/** The message of an error followed by the messages of its causes, like OSTree's prefixed errors. */
export function errorChain(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && depth < 8; depth++) {
    if (current instanceof Error) {
      if (!parts.includes(current.message)) parts.push(current.message);
      current = current.cause;
    } else {
      parts.push(String(current));
      current = undefined;
    }
  }
  return parts.join(": ");
}
